"""Explanations of learned models: gradient attributions over input windows (``gradients``)."""
