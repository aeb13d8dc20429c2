"""What every TitanRay FastAPI app in Serve shares: request metrics, 422 bodies, prefix roots.

The main ingress (``titan_ray.serve.app``), each model's app and each experiment's app
(``titan_ray.serve.deployments``) are FastAPI apps of their own; ``install`` gives each the same
behaviour:

- ``Guard`` (``titan_ray.serve.security``): credentials, scopes, rate limits, the audit trail,
  body size, security headers, CORS, with the ``Security`` each replica sets as ``state.security``.
- ``RequestMetrics`` counts every HTTP answer by route template, arm and status code into the
  app's ``state.metrics`` (a ``titan_ray.observability.ReplicaMetrics``). An app mounted at a
  route prefix names its one route with ``route_label`` (``/v1/predict/{model}``), so the labels
  are the same whichever app answers.
- Bad bodies and parameters answer 422 with the field named (``validation_body``).
- ``PrefixRoot``: an app at ``route_prefix: /v1/predict/lgbm`` answers ``POST /v1/predict/lgbm``
  itself, where Starlette would redirect to the path with a trailing slash.

No ``from __future__ import annotations`` here: FastAPI must see the handlers' real types.
"""

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from titan_ray.serve.predictor import validation_body
from titan_ray.serve.security import Guard


class RequestMetrics:
    """ASGI middleware: counts every HTTP answer by route template, arm and status code."""

    def __init__(self, inner: Any, route_label: str | None = None) -> None:
        self.app = inner
        self.route_label = route_label

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
            if metrics is not None:
                route = getattr(scope.get("route"), "path", None)
                if route is None:  # refused before routing (401, 429, ...): the guard's name of it
                    route = (scope.get("state") or {}).get("route") or "unmatched"
                elif self.route_label is not None:
                    route = self.route_label
                arm = (scope.get("state") or {}).get("arm")
                metrics.observe_request(route, arm, status, time.perf_counter() - start)


class PrefixRoot:
    """ASGI middleware: the bare route prefix (``/v1/predict/lgbm``) is the app's ``/``."""

    def __init__(self, inner: Any) -> None:
        self.app = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        root = scope.get("root_path") or ""
        if scope["type"] == "http" and root and scope["path"] == root:
            scope = {**scope, "path": root + "/", "raw_path": root.encode() + b"/"}
        await self.app(scope, receive, send)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    body = validation_body([dict(e) for e in exc.errors()])
    return JSONResponse(status_code=422, content=jsonable_encoder(body, custom_encoder={Exception: str}))


def install(app: FastAPI, *, route_label: str | None = None) -> FastAPI:
    """The guard, metrics, 422 bodies and the prefix root on ``app`` (the ``security`` and ``metrics``
    objects of its state are set per replica)."""
    app.add_middleware(Guard)
    app.add_middleware(RequestMetrics, route_label=route_label)
    if route_label is not None:
        app.add_middleware(PrefixRoot)
    app.add_exception_handler(RequestValidationError, _invalid)
    return app


def prefixed_app(route_label: str, summary: str) -> FastAPI:
    """The FastAPI app of a deployment served at its own route prefix: one route, documented in
    the main app's OpenAPI (this one publishes none)."""
    return install(FastAPI(title=summary, openapi_url=None, docs_url=None, redoc_url=None), route_label=route_label)
