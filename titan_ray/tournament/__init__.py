"""Tournaments: many arenas (markets, seeds, walk-forward windows, model variants) and one verdict."""
