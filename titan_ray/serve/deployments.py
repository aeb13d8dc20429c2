"""The Serve deployments behind the ingress: one per served model version, one router per experiment.

``ModelServer`` (deployed as ``model-NAME``) holds one ``Predictor``, loaded once per replica
(from the registry, trained first if the registry lacks it). ``predict_json`` takes the raw
request body and answers (HTTP status, JSON bytes): the replica parses, validates, predicts and
encodes, and the ingress only forwards bytes, so the work of a request scales with the model's
replicas and nothing is parsed or encoded twice. Bad input is a 422 body, never an exception.

``ExperimentRouter`` (deployed as ``experiment-NAME``) holds a handle per arm and the experiment's
``ExperimentState``. Its weights live in ``user_config`` (``{"weights": {arm: w}}``): Serve calls
``reconfigure`` on the running replica when a deploy changes them, so the split changes live
without a restart; ``set_weights`` (the ingress's authenticated PUT) does the same until the next
deploy. A router keeps the experiment's counts, so it runs one replica; scale the arms instead.
Shadow arms get a copy of the request in a background task after the answer is chosen: their
answers are compared with the answered arm's and logged (``titan_ray.serve.shadow``), never returned.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from typing import Any

from ray import serve

from titan_ray.serve.experiments import ExperimentState
from titan_ray.serve.predictor import example_request
from titan_ray.serve.settings import ExperimentSpec, ServedModel

shadow_log = logging.getLogger("titan_ray.serve.shadow")


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.25})
class ModelServer:
    def __init__(self, spec: dict[str, Any], registry_root: str | None, seed: int = 7) -> None:
        from titan_ray.serve.loading import load_predictor

        self._spec = ServedModel.model_validate(spec)
        self._predictor = load_predictor(self._spec, registry_root=registry_root, seed=seed)
        self._example = example_request(self._predictor, seed=seed)
        self._replica = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def predict_json(self, raw: bytes, extra: dict[str, Any] | None = None) -> tuple[int, bytes]:
        return self._predictor.answer_json(raw, extra)

    def info(self) -> dict[str, Any]:
        return {**self._predictor.info.to_dict(), "replica": self._replica}

    def example(self) -> dict[str, Any]:
        return self._example


@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.05})
class ExperimentRouter:
    def __init__(self, spec: dict[str, Any], arms: dict[str, Any]) -> None:
        self._spec = ExperimentSpec.model_validate(spec)
        self._state = ExperimentState(self._spec)
        self._arms = arms  # arm name -> DeploymentHandle of its model
        self._models = {a.name: a.model for a in self._spec.arms}
        self._replica = {"id": uuid.uuid4().hex[:12], "pid": os.getpid(), "started_at": time.time()}
        self._reconfigures = 0
        self._background: set[asyncio.Task] = set()

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

    def arm_models(self) -> dict[str, str]:
        return dict(self._models)
