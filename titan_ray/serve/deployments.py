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
if the registry lacks it), and the shortest window it answers (``min_rows``, its example). Bad
input is a 422 body, never an exception.

``ExperimentRouter`` holds the experiment's ``ExperimentState`` and, once loaded, each live arm's
model version itself: it asks the arm's model app what it serves (``ModelServer.source``: a
registered model pinned to its version) and builds the same ``Predictor``, so an experiment's
answer takes the same one hop as a model's (no call from the router to another replica), and the
router follows a model app's new version within ``ARM_REFRESH_S``. Until an arm is loaded, or
where the registry cannot be read from the router's node, the arm's app answers through its handle.
Its weights live in ``user_config`` (``{"weights": {arm: w}}``): Serve calls ``reconfigure`` on the
running replica when a deploy changes them, so the split changes live without a restart;
``set_weights`` (the main ingress's authenticated PUT) does the same until the next deploy. A
router keeps the experiment's counts, so it runs one replica. Shadow arms get a copy of each
request after the answer is chosen: the copies go to the shadow's model app in batches (one call
per arm every ``SHADOW_BATCH_S``), their answers are compared with the answered arm's and logged
(``titan_ray.serve.shadow``), never returned; when a shadow falls ``SHADOW_QUEUE`` copies behind,
further copies are dropped and counted (``dropped``).

No ``from __future__ import annotations`` here: FastAPI must see the route methods' real types.
"""

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, NamedTuple

from fastapi import Header, Request
from fastapi.responses import Response
from ray import serve

from titan_ray.lifecycle.controller import start_controller
from titan_ray.observability import ReplicaMetrics
from titan_ray.registry import ModelRegistry, parse_ref
from titan_ray.serve.experiments import ExperimentState, ShadowTally
from titan_ray.serve.http import prefixed_app
from titan_ray.serve.loading import load_predictor
from titan_ray.serve.predictor import Predictor, shortest_window, synthetic_window
from titan_ray.serve.security import Security
from titan_ray.serve.settings import (
    ARENA_NAMESPACE,
    ExperimentSpec,
    ModelAppSettings,
    experiment_route,
    model_app,
    model_route,
)

log = logging.getLogger("titan_ray.serve")
shadow_log = logging.getLogger("titan_ray.serve.shadow")

ARM_REFRESH_S = 5.0  # how often a router asks its arms' model apps which version they serve
SHADOW_BATCH_S = 0.05  # shadow copies are shipped at most this often, in one call per shadow arm
SHADOW_QUEUE = 10_000  # copies a shadow may fall behind before further ones are dropped (and counted)

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


class Serving(NamedTuple):
    """One model version as a replica answers it: the predictor, its shortest window, its example."""

    predictor: Predictor
    min_rows: int
    example: dict[str, Any]


def _serving(spec: ModelAppSettings, artifact: str | None) -> Serving:
    """The version ``artifact`` names (for a rule model: its kind), loaded and warmed: its first
    explanation loads its explainer, so that no request pays for that."""
    predictor = load_predictor(spec.model_copy(update={"artifact": artifact}) if artifact else spec,
                               registry_root=spec.registry, seed=spec.seed)
    min_rows = shortest_window(predictor, seed=spec.seed)
    return Serving(predictor, min_rows, synthetic_window(min_rows, seed=spec.seed))


def _in_background(tasks: set[asyncio.Task], *works: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Start ``works`` as tasks of the running loop (a replica's), kept in ``tasks`` while they run.
    RuntimeError when no loop runs here (a replica constructed off its loop: the first request starts them)."""
    loop = asyncio.get_running_loop()
    for work in works:
        task = loop.create_task(work())
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def _answer_batch(predictor: Predictor, raws: list[bytes]) -> list[tuple[int, bytes, float]]:
    out = []
    for raw in raws:
        start = time.perf_counter()
        status, body = predictor.answer_json(raw)
        out.append((status, body, time.perf_counter() - start))
    return out


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(model_api)
class ModelServer:
    def __init__(self, settings: dict[str, Any]) -> None:
        self._spec = ModelAppSettings.model_validate(settings)
        self._serving = _serving(self._spec, self._spec.artifact)
        self._replica = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._alias = self._spec.alias()
        # The version the shadow alias names, loaded here: a copy of each request after its answer.
        self._shadow: Serving | None = None
        self._shadow_stats = ShadowTally()
        self._shadow_queue: list[tuple[bytes, int, bytes]] = []
        self._shadow_ready = asyncio.Event()
        self._follow_error: str | None = None
        self._switches = 0
        self._background: set[asyncio.Task] = set()
        model_api.state.metrics = ReplicaMetrics(ARENA_NAMESPACE)
        model_api.state.security = Security(self._spec.auth, app="model")
        lifecycle = self._spec.lifecycle_settings()
        if lifecycle is not None:
            start_controller(lifecycle, ARENA_NAMESPACE)
        try:
            self._start_background()  # the constructor runs on the replica's event loop
        except RuntimeError:
            pass  # no loop here: started by the first request

    def _start_background(self) -> None:
        if not self._background and self._alias is not None:
            _in_background(self._background, self._follow_aliases, self._ship_shadow_copies)

    @property
    def _predictor(self) -> Predictor:
        return self._serving.predictor

    @model_api.post("/")
    async def predict(self, request: Request) -> Response:
        """``POST /v1/predict/NAME``: parse, validate, predict, explain and encode, in this replica."""
        return _json(*self.predict_json(await request.body()))

    def predict_json(self, raw: bytes, extra: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """The same answer for a handle call (an experiment's arm): (HTTP status, JSON body)."""
        serving = self._serving  # one version answers the whole request, even if a switch lands meanwhile
        status, body = serving.predictor.answer_json(raw, extra)
        if self._shadow is not None:
            self._queue_shadow(raw, status, body)
        return status, body

    def predict_batch(self, raws: list[bytes]) -> list[tuple[int, bytes, float]]:
        """Answers to many request bodies in one call (an experiment's shadow copies): (HTTP status,
        JSON body, seconds this replica took) each."""
        return _answer_batch(self._predictor, raws)

    def info(self) -> dict[str, Any]:
        out = {**self._predictor.info.to_dict(), "replica": self._replica, "alias": self._alias,
               "arena_model": self._spec.arena_model or self._spec.name, "min_rows": self._serving.min_rows}
        if self._alias is not None:
            shadow = self._shadow
            out["follow"] = {"every_s": self._spec.follow_s, "switches": self._switches, "error": self._follow_error}
            out["shadow"] = None if shadow is None else {
                "alias": self._spec.shadow, "version": shadow.predictor.info.version,
                "artifact": shadow.predictor.info.artifact, **self._shadow_stats.summary()}
        return out

    def example(self) -> dict[str, Any]:
        return self._serving.example

    def source(self) -> dict[str, Any]:
        """The settings that build this replica's model version elsewhere (an experiment's router):
        a registered model pinned to the version served here, never trained again."""
        pinned = {"artifact": self._predictor.info.artifact, "train": None} if self._spec.artifact else {}
        return self._spec.model_copy(update={**pinned, "lifecycle": None}).model_dump(mode="json")

    # --- following the aliases ---------------------------------------------------------------------

    async def _follow_aliases(self) -> None:
        """Every ``follow_s``: the versions the alias and the shadow alias name now; a new one is loaded
        and warmed beside the one answering, then swapped in (requests never wait for a load)."""
        registry = ModelRegistry(self._spec.registry)
        name = parse_ref(self._spec.artifact or "")[0]
        while True:
            await asyncio.sleep(self._spec.follow_s)
            try:
                aliases = await asyncio.to_thread(registry.aliases, name)
                want = aliases.get(self._alias or "")
                if want is not None and want != self._predictor.info.version:
                    self._serving = await asyncio.to_thread(_serving, self._spec, f"{name}@{want}")
                    self._switches += 1
                    log.warning("model %s: %s@%s is now version %s", self._spec.name, name, self._alias, want)
                shadow = aliases.get(self._spec.shadow) if self._spec.shadow else None
                if shadow == want:
                    shadow = None  # the shadow alias names the version answering: nothing to compare
                current = self._shadow.predictor.info.version if self._shadow is not None else None
                if shadow != current:
                    self._shadow = None if shadow is None else await asyncio.to_thread(
                        _serving, self._spec, f"{name}@{shadow}")
                    self._shadow_stats = ShadowTally()
                self._follow_error = None
            except Exception as err:  # noqa: BLE001 - the version answering keeps answering; said in info()
                why = f"{type(err).__name__}: {err}"
                if why != self._follow_error:
                    log.warning("model %s: cannot follow %s: %s", self._spec.name, self._spec.artifact, why)
                self._follow_error = why

    def _queue_shadow(self, raw: bytes, status: int, body: bytes) -> None:
        if len(self._shadow_queue) >= SHADOW_QUEUE:
            self._shadow_stats.stats.dropped += 1  # the shadow falls behind: counted, never waited for
            return
        self._shadow_queue.append((raw, status, body))
        self._shadow_ready.set()

    async def _ship_shadow_copies(self) -> None:
        """Every ``SHADOW_BATCH_S``, the queued copies are answered by the shadow version on a thread,
        compared with the answers given, and counted (``info()["shadow"]``)."""
        while True:
            await self._shadow_ready.wait()
            await asyncio.sleep(SHADOW_BATCH_S)
            self._shadow_ready.clear()
            copies, self._shadow_queue = self._shadow_queue, []
            shadow, tally = self._shadow, self._shadow_stats
            if shadow is None or not copies:
                continue
            answers = await asyncio.to_thread(_answer_batch, shadow.predictor, [c[0] for c in copies])
            for (_raw, status, body), (s_status, s_body, seconds) in zip(copies, answers, strict=True):
                tally.record(seconds, s_status < 500, json.loads(s_body) if s_status == 200 else None,
                             json.loads(body) if status == 200 else None)


# Serve pickles an ingress class where it is decorated: what its methods call is defined above it.


def _load_arm(source: dict[str, Any]) -> Predictor:
    """A served model version built from its app's ``source``, warmed up."""
    return _serving(ModelAppSettings.model_validate(source), None).predictor


class LocalArm(NamedTuple):
    """A live arm's model version loaded in the experiment's router (``ModelServer.source``)."""

    source: dict[str, Any]
    predictor: Predictor


class ShadowCopy(NamedTuple):
    arm: str  # the shadow arm
    answered_by: str
    raw: bytes
    answered: bytes | None  # the answered arm's body when it answered 200


@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(experiment_api)
class ExperimentRouter:
    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = ExperimentSpec.model_validate(spec)
        self._state = ExperimentState(self._spec)
        self._arms = {a.name: a.model for a in self._spec.arms}
        self._handles = {a.model: model_handle(a.model) for a in self._spec.arms}
        self._live_models = sorted({a.model for a in self._spec.arms if not a.shadow})
        self._local: dict[str, LocalArm] = {}  # model name -> its version, loaded here
        self._load_errors: dict[str, str] = {}  # model name -> why it is not loaded here (logged once)
        self._replica = {"id": uuid.uuid4().hex[:12], "pid": os.getpid(), "started_at": time.time()}
        self._reconfigures = 0
        self._shadow_queue: list[ShadowCopy] = []
        self._shadow_ready = asyncio.Event()
        self._background: set[asyncio.Task] = set()
        experiment_api.state.metrics = ReplicaMetrics(ARENA_NAMESPACE)
        experiment_api.state.security = Security(self._spec.auth, app="experiment")
        try:
            self._start_background()  # the constructor runs on the replica's event loop
        except RuntimeError:
            pass  # no loop here: started by the first request

    def _start_background(self) -> None:
        if not self._background:
            _in_background(self._background, self._keep_arms_loaded, self._ship_shadow_copies)

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

    # --- answering ------------------------------------------------------------------------------

    @experiment_api.post("/")
    async def predict(
        self, request: Request, x_client_key: Annotated[str | None, Header(max_length=256)] = None,
    ) -> Response:
        """``POST /v1/experiments/NAME/predict``: routed to an arm by weight (sticky by X-Client-Key)."""
        status, body, arm = await self.predict_json(await request.body(), x_client_key)
        request.state.arm = arm
        return _json(status, body)

    async def predict_json(self, raw: bytes, client_key: str | None) -> tuple[int, bytes, str]:
        """(HTTP status, JSON body, arm): the chosen arm's answer, with ``experiment`` and ``arm`` in it.

        The arm's model version is loaded in this replica (``_keep_arms_loaded``), so the answer is
        computed here, as a model's own app computes it: no call to another replica. Until it is
        loaded (the first seconds after a start), the arm's model app answers through its handle.
        """
        self._start_background()
        st = self._state
        arm = st.choose(client_key)
        extra = {"experiment": self._spec.name, "arm": arm}
        start = time.perf_counter()
        local = self._local.get(self._arms[arm])
        if local is not None:
            status, body = local.predictor.answer_json(raw, extra)
        else:
            try:
                status, body = await self._handles[self._arms[arm]].predict_json.remote(raw, extra)
            except Exception as err:  # noqa: BLE001 - a dead arm is counted, and answered as 503
                status, body = 503, json.dumps({"detail": f"arm {arm!r} failed: {type(err).__name__}: {err}"}).encode()
        st.record(arm, time.perf_counter() - start, status < 500)
        for shadow in st.shadows():
            self._queue_shadow(ShadowCopy(shadow, arm, raw, body if status == 200 else None))
        return status, body, arm

    # --- the live arms' models, loaded here -------------------------------------------------------

    async def _keep_arms_loaded(self) -> None:
        """Load each live arm's model version from what its model app serves (``ModelServer.source``),
        and again whenever that changes (a new version rolled out); checked every ``ARM_REFRESH_S``."""
        while True:
            for model in self._live_models:
                try:
                    source = await asyncio.wait_for(self._handles[model].source.remote(), ARM_REFRESH_S * 4)
                except Exception as err:  # noqa: BLE001 - its app is not up yet (or gone): asked again soon
                    log.debug("experiment %s: model %s does not answer yet: %r", self._spec.name, model, err)
                    continue
                loaded = self._local.get(model)
                if loaded is not None and loaded.source == source:
                    continue
                try:
                    self._local[model] = LocalArm(source, await asyncio.to_thread(_load_arm, source))
                    log.info("experiment %s: model %s (%s) answers in the router", self._spec.name, model,
                             source.get("artifact") or source.get("kind"))
                except Exception as err:  # noqa: BLE001 - e.g. a registry this node cannot read: its app answers
                    why = f"{type(err).__name__}: {err}"
                    if self._load_errors.get(model) != why:  # once per reason, not every second
                        self._load_errors[model] = why
                        log.warning("experiment %s: model %s answers through its app: it could not be loaded "
                                    "in the router: %s", self._spec.name, model, why)
            await asyncio.sleep(ARM_REFRESH_S if len(self._local) == len(self._live_models) else 1.0)

    # --- shadow arms: copies shipped in batches, after the answers ------------------------------------

    def _queue_shadow(self, copy: ShadowCopy) -> None:
        if len(self._shadow_queue) >= SHADOW_QUEUE:
            self._state.drop_shadow(copy.arm)  # the shadow falls behind: counted, never waited for
            return
        self._shadow_queue.append(copy)
        self._shadow_ready.set()

    async def _ship_shadow_copies(self) -> None:
        """Every ``SHADOW_BATCH_S``, the queued copies go to each shadow arm's model app in one call per
        arm (``ModelServer.predict_batch``); their answers are compared with the answered arms' and logged."""
        while True:
            await self._shadow_ready.wait()
            await asyncio.sleep(SHADOW_BATCH_S)
            self._shadow_ready.clear()
            copies, self._shadow_queue = self._shadow_queue, []
            by_arm: dict[str, list[ShadowCopy]] = {}
            for c in copies:
                by_arm.setdefault(c.arm, []).append(c)
            await asyncio.gather(*(self._shadow_batch(arm, batch) for arm, batch in by_arm.items()))

    async def _shadow_batch(self, arm: str, batch: list[ShadowCopy]) -> None:
        try:
            answers = await self._handles[self._arms[arm]].predict_batch.remote([c.raw for c in batch])
        except Exception:  # noqa: BLE001 - a failing shadow is counted, never answered
            answers = [(503, b"{}", 0.0)] * len(batch)
        for c, (status, body, seconds) in zip(batch, answers, strict=True):
            self._state.record(arm, seconds, status < 500)
            entry = self._state.record_shadow(arm, c.answered_by, json.loads(body) if status == 200 else None,
                                              json.loads(c.answered) if c.answered is not None else None)
            shadow_log.info("experiment %s shadow %s vs %s: %s", self._spec.name, arm, c.answered_by,
                            {k: v for k, v in entry.items() if k in ("compared", "same_weights", "max_weight_difference")})

    def describe(self) -> dict[str, Any]:
        state = self._state.describe()
        for row in state["arms"]:
            row["answered_in"] = ("router" if row["model"] in self._local and not row["shadow"]
                                  else model_app(row["model"]))
        return {**state, "replica": dict(self._replica), "reconfigures": self._reconfigures}
