"""Training tools shared by the learned models: labels and validation splits (no look-ahead)."""
