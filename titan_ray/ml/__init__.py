"""The shared ML toolkit: what the learned models and the training drivers both use.

- ``labels``: forward returns and triple-barrier labels (never known before they happen);
- ``validation``: walk-forward and purged k-fold splits, rank correlation;
- ``backtest``: an arena in one process (models and the real ledger, no Ray);
- ``env``: the RL environment whose P&L is the ledger's, and the action map the ``ppo`` model shares.

The drivers that run training on Ray (Tune sweeps, RLlib PPO) live in ``titan_ray.train``.
"""
