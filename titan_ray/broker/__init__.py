"""Real brokers beside the virtual ledger: paper cross-validation of one model's orders.

The internal ledger stays the truth for the arena. ``crossval`` turns the model's target weights
into orders and compares the broker's fills with the ledger's simulated ones; ``alpaca_paper``
talks to an Alpaca paper account through alpaca-py; ``actor`` is the thin Ray wrapper.
"""
