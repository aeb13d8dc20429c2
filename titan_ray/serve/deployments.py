"""The deployments that answer predictions: one Serve application per served model version, one
per experiment, each a FastAPI ingress at its own route prefix.

    model-NAME        at /v1/predict/NAME                     ModelServer: one model version
    experiment-NAME   at /v1/experiments/NAME/predict         ExperimentRouter: its arms' models

Each is the ingress of its own application, so a prediction takes one hop inside the cluster: the
HTTP proxy (HAProxy in front of the replicas' own HTTP servers in Ray's throughput-optimized
mode, or Serve's Python proxy) hands the request straight to the replica that answers it. A
model replica parses, validates, predicts and encodes in one call (``Predictor.answer_json``). The
main ingress (``titan_ray.serve.app``) reaches both through handles for everything else (model
info, example requests, experiment reports and weights), and documents their routes.

``ModelServer`` holds one ``Predictor``, loaded once per replica (from the registry, trained first
if the registry lacks it). Bad input is a 422 body, never an exception.

``ExperimentRouter`` holds a handle per arm and the experiment's ``ExperimentState``. Its weights
live in ``user_config`` (``{"weights": {arm: w}}``): Serve calls ``reconfigure`` on the running
replica when a deploy changes them, so the split changes live without a restart; ``set_weights``
(the main ingress's authenticated PUT) does the same until the next deploy. A router keeps the
experiment's counts, so it runs one replica; scale the arms instead. Shadow arms get a copy of the
request in a background task after the answer is chosen: their answers are compared with the
answered arm's and logged (``titan_ray.serve.shadow``), never returned.

No ``from __future__ import annotations`` here: FastAPI must see the route methods' real types.
"""

import asyncio
import json
import logging
import os
import time
import uuid
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import Response
from ray import serve

from titan_ray.observability import ReplicaMetrics
from titan_ray.serve.experiments import ExperimentState
from titan_ray.serve.http import prefixed_app
from titan_ray.serve.loading import load_predictor
from titan_ray.serve.predictor import example_request
from titan_ray.serve.settings import (
    ARENA_NAMESPACE,
    ExperimentSpec,
    ModelAppSettings,
    experiment_route,
    model_app,
    model_route,
)

shadow_log = logging.getLogger("titan_ray.serve.shadow")

PREDICT_ROUTE = model_route("{model}")
EXPERIMENT_ROUTE = experiment_route("{name}")

model_api = prefixed_app(PREDICT_ROUTE, "TitanRay model")
experiment_api = prefixed_app(EXPERIMENT_ROUTE, "TitanRay experiment")


def app_handle(app: str) -> Any:
    """A handle to the one deployment of a model's or experiment's application (named like it).
    Not checked against the controller: an app deployed later is reached once it runs."""
    return serve.get_deployment_handle(app, app_name=app, _check_exists=False)


def model_handle(name: str) -> Any:
    return app_handle(model_app(name))


def _json(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(model_api)
class ModelServer:
    def __init__(self, settings: dict[str, Any]) -> None:
        self._spec = ModelAppSettings.model_validate(settings)
        self._predictor = load_predictor(self._spec, registry_root=self._spec.registry, seed=self._spec.seed)
        self._example = example_request(self._predictor, seed=self._spec.seed)
        self._replica = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        model_api.state.metrics = ReplicaMetrics(ARENA_NAMESPACE)

    @model_api.post("/")
    async def predict(self, request: Request) -> Response:
        """``POST /v1/predict/NAME``: parse, validate, predict, explain and encode, in this replica."""
        return _json(*self._predictor.answer_json(await request.body()))

    def predict_json(self, raw: bytes, extra: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """The same answer for a handle call (an experiment's arm): (HTTP status, JSON body)."""
        return self._predictor.answer_json(raw, extra)

    def info(self) -> dict[str, Any]:
        return {**self._predictor.info.to_dict(), "replica": self._replica,
                "arena_model": self._spec.arena_model or self._spec.name}

    def example(self) -> dict[str, Any]:
        return self._example


@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.05})
@serve.ingress(experiment_api)
class ExperimentRouter:
    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = ExperimentSpec.model_validate(spec)
        self._state = ExperimentState(self._spec)
        self._arms = {a.name: model_handle(a.model) for a in self._spec.arms}
        self._replica = {"id": uuid.uuid4().hex[:12], "pid": os.getpid(), "started_at": time.time()}
        self._reconfigures = 0
        self._background: set[asyncio.Task] = set()
        experiment_api.state.metrics = ReplicaMetrics(ARENA_NAMESPACE)

    def reconfigure(self, config: dict[str, Any]) -> None:
        weights = (config or {}).get("weights")
        if weights:
            self._state.set_weights(dict(weights), "user_config")
        self._reconfigures += 1

    def set_weights(self, weights: dict[str, float]) -> dict[str, Any]:
        try:
            self._state.set_weights(weights, "api")
        except ValueError as err:
            return {"error": 422, "detail": str(err)}
        return self.describe()

    @experiment_api.post("/")
    async def predict(
        self, request: Request, x_client_key: Annotated[str | None, Header(max_length=256)] = None,
    ) -> Response:
        """``POST /v1/experiments/NAME/predict``: routed to an arm by weight (sticky by X-Client-Key)."""
        status, body, arm = await self.predict_json(await request.body(), x_client_key)
        request.state.arm = arm
        return _json(status, body)

    async def predict_json(self, raw: bytes, client_key: str | None) -> tuple[int, bytes, str]:
        """(HTTP status, JSON body, arm): the chosen arm's answer, with ``experiment`` and ``arm`` in it."""
        st = self._state
        arm = st.choose(client_key)
        start = time.perf_counter()
        try:
            status, body = await self._arms[arm].predict_json.remote(
                raw, {"experiment": self._spec.name, "arm": arm})
        except Exception as err:  # noqa: BLE001 - a dead arm is counted, and answered as 503
            status, body = 503, json.dumps({"detail": f"arm {arm!r} failed: {type(err).__name__}: {err}"}).encode()
        st.record(arm, time.perf_counter() - start, status < 500)
        for shadow in st.shadows():
            task = asyncio.create_task(self._shadow(shadow, arm, raw, body if status == 200 else None))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return status, body, arm

    async def _shadow(self, arm: str, answered_by: str, raw: bytes, answered: bytes | None) -> None:
        start = time.perf_counter()
        try:
            status, body = await self._arms[arm].predict_json.remote(raw)
        except Exception:  # noqa: BLE001 - a failing shadow is counted, never answered
            status, body = 503, b"{}"
        self._state.record(arm, time.perf_counter() - start, status < 500)
        entry = self._state.record_shadow(arm, answered_by, json.loads(body) if status == 200 else None,
                                          json.loads(answered) if answered is not None else None)
        shadow_log.info("experiment %s shadow %s vs %s: %s", self._spec.name, arm, answered_by,
                        {k: v for k, v in entry.items() if k in ("compared", "same_weights", "max_weight_difference")})

    def describe(self) -> dict[str, Any]:
        return {**self._state.describe(), "replica": dict(self._replica), "reconfigures": self._reconfigures}

