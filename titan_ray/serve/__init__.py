"""TitanRay on Ray Serve: predictions, A/B experiments and the live arena over HTTP.

``app`` (the FastAPI ingress and ``build_app``), ``deployments`` (model servers, experiment
routers), ``predictor`` (requests and answers of one model, no Ray), ``experiments`` (arm choice
and statistics, no Ray), ``arena_service`` (the live arena actor), ``settings`` (the app's args).
"""
