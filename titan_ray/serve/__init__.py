"""TitanRay on Ray Serve: predictions, A/B experiments and the live arena over HTTP.

``app`` (the main FastAPI ingress and the app builders: ``build_app``, ``build_model_app``,
``build_experiment_app``), ``deployments`` (a model's and an experiment's app: their FastAPI
ingress), ``http`` (what every FastAPI app shares: request metrics, 422 bodies, prefix roots),
``predictor`` (requests and answers of one model, no Ray), ``experiments`` (arm choice and
statistics, no Ray), ``arena_service`` (the live arena actor), ``settings`` (the apps' args, how
they fit together, the HAProxy mode's environment).
"""
