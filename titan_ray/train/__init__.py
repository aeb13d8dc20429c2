"""Training drivers on Ray: Tune sweeps of the learned models and RLlib PPO, registered for the arena.

The toolkit they share with the models (labels, splits, the RL env) is ``titan_ray.ml``.
"""
