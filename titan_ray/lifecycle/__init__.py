"""The model lifecycle: aliases, drift, champion/challenger, retraining."""
