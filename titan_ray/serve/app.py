"""The TitanRay Serve applications: a FastAPI main ingress, and one app per model and experiment.

    HTTP ─┬─► /v1/predict/NAME               app model-NAME:       ModelServer   (deployments.py)
          ├─► /v1/experiments/NAME/predict   app experiment-NAME:  ExperimentRouter (its live arms' models in it)
          └─► everything else                app titan-ray (``/``): Ingress (this module) ─┬─► the two above
                                                                                         └─► ArenaService

A prediction takes one hop in the cluster: its own application answers it. The builders are the
``import_path`` of ``serve_configs/*.yaml``: ``build_app`` (args ``AppSettings``),
``build_model_app`` (``ModelAppSettings``) and ``build_experiment_app`` (``ExperimentSpec``);
``titan_ray.serve.settings.check_deploy_config`` checks that a file's apps agree. The routes
(OpenAPI of them all at ``/openapi.json``, the web dashboard at ``/``):

    GET  /healthz                              liveness, and what is served                  [open]
    GET  /metrics                              Prometheus text (titan_ray.observability)      [open]
    GET  /v1/whoami                            who the bearer token proves, its scopes, the limits
    GET  /v1/models, /v1/models/{model}        served models, with an example request; a model
                                               with a lifecycle: its drift, alerts, challenger
    POST /v1/predict/{model}                   a prediction (titan_ray.serve.predictor)
    GET  /v1/experiments, /v1/experiments/{name}   with an example request every arm answers
    POST /v1/experiments/{name}/predict        routed to an arm (sticky with X-Client-Key)
    PUT  /v1/experiments/{name}/weights        new arm weights, live                         [admin]
    GET  /v1/leaderboard, /v1/equity, /v1/portfolios/{model}, /v1/trades/{model},
         /v1/decisions/{id}/why                the arena (titan_ray.arena.views)
    POST /v1/models/{model}/kill-switch        flatten and halt a model                      [trade]
    GET  /v1/events                            server-sent events: leaderboard, fill, status
    GET  /v1/registry/{name}                   a registered model's versions, aliases and stages
    GET  /v1/registry/{name}/history           every alias change: who, when, why, the evidence
    POST /v1/registry/{name}/promote           challenger (or a version) -> champion         [admin]
    POST /v1/registry/{name}/rollback          champion -> the one before                    [admin]
    GET  /v1/audit                             the audit trail of every change               [admin]

The main ingress also routes ``/v1/predict/{model}`` and ``/v1/experiments/{name}/predict``: they
reach it only when no application of that name runs, and answer 404 (unknown) or 503 (listed in
``models`` / ``experiments`` but not running).

Who may call what is the guard's (``titan_ray.serve.security``, installed on every app): the routes
marked need a bearer token with that scope (admin holds trade and read), the others need ``read``
when ``auth.require_auth_for_reads`` is set; each identity is rate-limited; every request to a
mutating route that got past the credentials is appended to the audit trail with what its handler
put in ``request.state.audit`` (target, before, after). No token is 401, a token without the scope
403. Bad input is 422 naming the field, an unknown model, experiment or decision 404; no input
makes the server answer 500.

No ``from __future__ import annotations`` here: FastAPI must see the route methods' real types.
"""

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, HTTPException, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.exceptions import RayServeException

from titan_ray.arena import views
from titan_ray.dashboard import mount as mount_dashboard
from titan_ray.lifecycle.controller import find_controller
from titan_ray.observability import CONTENT_TYPE, ReplicaMetrics
from titan_ray.registry import ModelRegistry, RegistryError, default_root
from titan_ray.serve.arena_service import attach_or_start
from titan_ray.serve.audit import AuditError
from titan_ray.serve.deployments import ExperimentRouter, ModelServer, app_handle, model_handle
from titan_ray.serve.http import install
from titan_ray.serve.predictor import MAX_BARS, PredictRequest, synthetic_window
from titan_ray.serve.security import Identity, Security
from titan_ray.serve.settings import (
    ARENA_NAMESPACE,
    AppSettings,
    experiment_app,
    model_app,
    parse_experiment_app,
    parse_model_app,
    parse_settings,
)

EVENTS_INTERVAL_S = 1.0
INFO_TTL_S = 5.0  # how stale a served model's info (its version) may be in the main ingress

app = FastAPI(
    title="TitanRay",
    version="1",
    description="Trading models competing in a live arena; predictions with explanations; A/B experiments.",
)


class WeightsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: dict[str, float] = Field(description="arm name -> weight (normalised over the non-shadow arms)")


class RegistryChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    why: str = Field(min_length=1, max_length=2000, description="why: recorded in the history")
    who: str | None = Field(None, max_length=200, description="who approves it (recorded as api:WHO)")
    version: int | None = Field(None, ge=1, description="promote: this version instead of the challenger")
    to: int | None = Field(None, ge=1, description="rollback: this version instead of the previous champion")


class KillSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on: bool = Field(True, description="true: flatten the model and halt it; false: lift the switch")


install(app)
mount_dashboard(app)


# The predict routes read the raw body (the model's replica validates it): their OpenAPI request body
# is declared here, with PredictRequest's schema in the document's components.
_SCHEMA = PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
_DEFS = _SCHEMA.pop("$defs", {})
PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/PredictRequest"}}}}}


def _openapi() -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {}).update({**_DEFS, "PredictRequest": _SCHEMA})
        app.openapi_schema = schema
    return app.openapi_schema


app.openapi = _openapi


# Serve pickles the ingress class where it is decorated: what its methods call is defined above it.


def _registry_root(registry: str | None) -> str:
    return str(Path(default_root(registry)).expanduser().resolve())


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, allow_nan=False)}\n\n"


def _fail(body: dict[str, Any]) -> None:
    """Raise the HTTP error a part of the app answered with ``{"error": status, "detail": ...}``."""
    if "error" in body:
        raise HTTPException(status_code=int(body["error"]), detail=body["detail"])


def _weights(state: dict[str, Any]) -> dict[str, float]:
    return {a["name"]: a["weight"] for a in state["arms"] if not a["shadow"]}


async def _reach(call: Any, app_name: str, timeout_s: float = 30.0) -> Any:
    """A handle call's answer; 503 naming the application when it does not answer in time."""
    try:
        return await asyncio.wait_for(call, timeout_s)
    except (TimeoutError, RayServeException) as err:
        raise HTTPException(503, detail=f"the application {app_name!r} did not answer: {type(err).__name__}; "
                                        "see `serve status`") from None


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(app)
class Ingress:
    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = AppSettings.model_validate(settings)
        self._models = {name: model_handle(name) for name in self._settings.models}
        self._experiments = {name: app_handle(experiment_app(name)) for name in self._settings.experiments}
        self._metrics = ReplicaMetrics(ARENA_NAMESPACE)
        app.state.metrics = self._metrics
        self._security = Security(self._settings.auth, registry_root=_registry_root(self._settings.registry))
        app.state.security = self._security
        self._replica = uuid.uuid4().hex[:12]  # which ingress replica answered (/v1/whoami)
        self._arena = attach_or_start(self._settings.arena)
        self._registry = ModelRegistry(_registry_root(self._settings.registry))
        self._info: dict[str, tuple[float, dict[str, Any]]] = {}  # name -> (fetched at, info)
        self._examples: dict[str, tuple[tuple, dict[str, Any]]] = {}  # experiment -> (its arms' models, example)

    # --- who is calling, and what they changed ------------------------------------------------------

    @app.get("/v1/whoami")
    async def whoami(self, request: Request) -> dict[str, Any]:
        """The identity and scopes the request's bearer token proves (anonymous without one), the replica
        that answered, and what this server asks for: whether reads need a token, the rate limits."""
        identity: Identity = request.state.identity
        settings = self._security.settings
        return {**identity.describe(), "replica": self._replica, "reads_need_token": settings.require_auth_for_reads,
                "rate_limits": {k: {"requests": n, "period_s": p} for k, (n, p) in self._security.limiter.limits.items()},
                "shared_limits": self._security.limiter.shared}

    @app.get("/v1/audit")
    async def audit(
        self, limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
        before: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9]+(-[0-9]+)?$")] = None,
        identity: Annotated[str | None, Query(max_length=200)] = None,
        route: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        """The audit trail, newest first (admin): every request to a mutating route that got past the
        credentials: who, what, when, its status, the request id, and the state before and after.
        ``before`` (an entry's id) pages back."""
        try:
            entries = await asyncio.to_thread(self._security.audit.entries, limit=limit, before=before,
                                              identity=identity, route=route)
        except ValueError as err:  # a `before` that is no id of this trail's kind
            raise HTTPException(422, detail=f"before: {err}") from None
        except AuditError as err:
            raise HTTPException(503, detail=f"the audit trail cannot be read now: {err}") from None
        return {"entries": entries, "next_before": entries[-1]["id"] if len(entries) == limit else None}

    # --- health and metrics ---------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        arena = await self._arena.status.remote() if self._arena is not None else {"status": "idle"}
        return {"status": "ok", "models": list(self._models), "experiments": list(self._experiments),
                "arena": arena}

    @app.get("/metrics", response_class=Response)
    async def metrics(self) -> Response:
        if self._arena is not None:
            self._metrics.sync_arena(await self._arena.stats.remote())
        for served, state in (await self._lifecycles()).items():
            self._metrics.sync_lifecycle(served, state)
        return Response(await self._metrics.exposition_all(), media_type=CONTENT_TYPE)

    async def _lifecycles(self) -> dict[str, dict[str, Any]]:
        """The state of each served model's lifecycle controller that runs (served name -> state)."""
        out = {}
        for served in self._models:
            state = await self._lifecycle(served)
            if state is not None:
                out[served] = state
        return out

    async def _lifecycle(self, served: str) -> dict[str, Any] | None:
        controller = find_controller(served, ARENA_NAMESPACE)
        if controller is None:
            return None
        try:
            return await asyncio.wait_for(controller.state.remote(), 10.0)
        except Exception as err:  # noqa: BLE001 - a controller restarting: said, not a 500
            return {"status": "unreachable", "error": f"{type(err).__name__}: {err}"}

    # --- models and predictions ----------------------------------------------------------------

    async def _model_info(self, name: str) -> dict[str, Any]:
        if name not in self._models:
            known = ", ".join(self._models) or "none"
            raise HTTPException(404, detail=f"unknown model {name!r}; served models: {known}")
        fetched, info = self._info.get(name, (-1e18, {}))
        if time.monotonic() - fetched > INFO_TTL_S:  # a model's app is redeployed on its own (a new version)
            info = await _reach(self._models[name].info.remote(), model_app(name))
            self._info[name] = (time.monotonic(), info)
        return info

    @app.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return {"models": list(await asyncio.gather(*(self._model_info(n) for n in self._models)))}

    @app.get("/v1/models/{model}")
    async def model(self, model: str) -> dict[str, Any]:
        """The served version (with its alias and shadow when it follows one), an example request, and
        the model's lifecycle when it has one: drift per feature, performance, alerts, the challenger."""
        await self._model_info(model)  # the 404 naming the served models
        fresh = await _reach(self._models[model].info.remote(), model_app(model))  # the shadow counts move
        self._info[model] = (time.monotonic(), fresh)
        return {**fresh, "example_request": await _reach(self._models[model].example.remote(), model_app(model)),
                "lifecycle": await self._lifecycle(model)}

    @app.post("/v1/predict/{model}", openapi_extra=PREDICT_BODY, response_class=JSONResponse)
    async def predict(self, model: str, request: Request) -> Response:
        """A window of recent ``bars`` or a ``features`` row per symbol -> target weight, score, version,
        explanation per symbol. Answered by the model's own application (``model-NAME``, one replica
        hop): this route only answers when that application does not run."""
        if model not in self._models:
            await self._model_info(model)  # the 404 naming the served models
        raise HTTPException(503, detail=f"model {model!r} is served by the application {model_app(model)!r}, "
                                        "which takes no HTTP requests now (see `serve status`)")

    # --- experiments ----------------------------------------------------------------------------

    def _router(self, name: str) -> Any:
        router = self._experiments.get(name)
        if router is None:
            known = ", ".join(self._experiments) or "none"
            raise HTTPException(404, detail=f"unknown experiment {name!r}; experiments: {known}")
        return router

    async def _arms(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        infos = await asyncio.gather(*(self._model_info(a["model"]) for a in state["arms"]))
        return [{"name": a["name"], "model": a["model"], "version": info["version"], "weight": a["weight"],
                 "shadow": a["shadow"]} for a, info in zip(state["arms"], infos, strict=True)]

    @app.get("/v1/experiments")
    async def experiments(self) -> dict[str, Any]:
        out = []
        for name, router in self._experiments.items():
            out.append({"name": name, "arms": await self._arms(await _reach(router.describe.remote(),
                                                                           experiment_app(name)))})
        return {"experiments": out}

    @app.get("/v1/experiments/{name}")
    async def experiment(self, name: str) -> dict[str, Any]:
        """The arms (counts, latency percentiles, arena records and their test against the control),
        the shadow log, and an ``example_request`` that every arm answers, shadows included."""
        state = await _reach(self._router(name).describe.remote(), experiment_app(name))
        base = {a["name"]: a for a in await self._arms(state)}
        arms = [{**a, **base[a["name"]]} for a in state["arms"]]
        live = [a for a in arms if not a["shadow"]]
        control = live[0]["name"]
        if self._arena is not None:
            comparison = await self._arena.compare.remote(
                {a["name"]: self._arena_model(a["model"]) for a in arms}, control)
        else:
            comparison = {"control": control, "arms": {}, "tests": [], "reason": "no arena runs with this server"}
        for a in arms:
            a["metrics"] = comparison.get("arms", {}).get(a["name"], {})
        example = await self._experiment_example(name, [a["model"] for a in arms])
        return {"name": name, "arms": arms, "weights_source": state["weights_source"],
                "replica": state["replica"], "reconfigures": state["reconfigures"], "comparison": comparison,
                "shadow_log": state["shadow_log"], "example_request": example}

    async def _experiment_example(self, name: str, models: list[str]) -> dict[str, Any] | None:
        """A request every arm answers, shadows included: a window of the longest of their models'
        minimum-rows requirements (``min_rows``), checked against each model's app, and doubled while
        one refuses it (a requirement besides the window's length). Kept until an arm's model changes."""
        models = sorted(set(models))
        infos = await asyncio.gather(*(self._model_info(m) for m in models))
        key = tuple((m, i["artifact"], i["version"], json.dumps(i["params"], sort_keys=True), i["min_rows"])
                    for m, i in zip(models, infos, strict=True))
        cached = self._examples.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        rows = max(int(i["min_rows"]) for i in infos)
        while True:
            body = synthetic_window(rows)
            raw = json.dumps(body).encode()
            answers = await asyncio.gather(*(_reach(self._models[m].predict_json.remote(raw), model_app(m))
                                             for m in models))
            if all(status == 200 for status, _ in answers):
                break
            if rows >= MAX_BARS:
                return None  # no synthetic window suits every arm; the report says so with example_request null
            rows = min(2 * rows, MAX_BARS)
        self._examples[name] = (key, body)
        return body

    def _arena_model(self, served: str) -> str:
        return self._info[served][1]["arena_model"]

    @app.post("/v1/experiments/{name}/predict", openapi_extra=PREDICT_BODY, response_class=JSONResponse)
    async def experiment_predict(
        self, name: str, request: Request, x_client_key: Annotated[str | None, Header(max_length=256)] = None,
    ) -> Response:
        """Routed to an arm by weight (the same arm for the same ``X-Client-Key`` while weights stay).
        Answered by the experiment's own application (``experiment-NAME``): this route only answers
        when that application does not run."""
        self._router(name)
        raise HTTPException(503, detail=f"experiment {name!r} is served by the application "
                                        f"{experiment_app(name)!r}, which takes no HTTP requests now (see `serve status`)")

    @app.put("/v1/experiments/{name}/weights")
    async def set_weights(self, name: str, body: WeightsUpdate, request: Request) -> dict[str, Any]:
        router = self._router(name)
        before = await _reach(router.describe.remote(), experiment_app(name))
        answer = await _reach(router.set_weights.remote(body.weights), experiment_app(name))
        _fail(answer)
        request.state.audit = {"target": {"experiment": name}, "before": {"weights": _weights(before)},
                               "after": {"weights": _weights(answer)}}
        return {"name": name, "arms": await self._arms(answer), "weights_source": answer["weights_source"],
                "replica": answer["replica"]}

    # --- the arena ------------------------------------------------------------------------------

    async def _view(self, what: str, **kw: Any) -> dict[str, Any]:
        if self._arena is None:
            try:
                return getattr(views, what)(views.idle_run(), **kw)
            except views.NotFound as err:
                raise HTTPException(404, detail=str(err)) from None
        answer = await self._arena.query.remote(what, **kw)
        _fail(answer)
        return answer

    @app.get("/v1/leaderboard")
    async def leaderboard(self) -> dict[str, Any]:
        return await self._view("leaderboard")

    @app.get("/v1/equity")
    async def equity(self, points: Annotated[int, Query(ge=2, le=100_000)] = 2000) -> dict[str, Any]:
        return await self._view("equity", points=points)

    @app.get("/v1/portfolios/{model}")
    async def portfolio(self, model: str) -> dict[str, Any]:
        return await self._view("portfolio", model=model)

    @app.get("/v1/trades/{model}")
    async def trades(self, model: str, limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> dict[str, Any]:
        return await self._view("trades", model=model, limit=limit)

    @app.get("/v1/decisions/{decision_id}/why")
    async def why(self, decision_id: str) -> dict[str, Any]:
        return await self._view("why", decision_id=decision_id)

    @app.post("/v1/models/{model}/kill-switch")
    async def kill_switch(
        self, model: str, request: Request, body: Annotated[KillSwitch | None, Body()] = None,
    ) -> dict[str, Any]:
        if self._arena is None:
            raise HTTPException(409, detail="no arena runs with this server")
        on = (body or KillSwitch()).on
        seen = await self._arena.query.remote("portfolio", model=model)  # as the live view last showed it
        request.state.audit = {"target": {"model": model}, "before": {"halted": seen.get("halted")},
                               "after": {"halted": on}}
        answer = await self._arena.kill_switch.remote(model, on)
        _fail(answer)
        return answer

    # --- the registry: aliases and their history ---------------------------------------------------

    @app.get("/v1/registry/{name}")
    async def registry_model(self, name: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._registry_view, name)

    def _registry_view(self, name: str) -> dict[str, Any]:
        versions = self._registry.versions(name)
        if not versions:
            known = ", ".join(self._registry.names()) or "none"
            raise HTTPException(404, detail=f"no registered model named {name!r}; registered: {known}")
        try:
            aliases = self._registry.aliases(name)
            return {"name": name, "aliases": aliases, "archived": self._registry.archived(name),
                    "versions": [{"version": v.version, "kind": v.kind, "created": v.meta.get("created"),
                                  "stage": self._registry.stage(name, v.version), "metrics": v.meta.get("metrics", {}),
                                  "trained_by": v.meta.get("extra", {}).get("trained_by")} for v in versions]}
        except RegistryError as err:
            raise HTTPException(404, detail=self._unfiled(err)) from None

    def _unfiled(self, err: Exception) -> str:
        """A registry error as a client reads it: the server's folder is not the client's business."""
        return str(err).replace(str(self._registry.root), "the registry")

    @app.get("/v1/registry/{name}/history")
    async def registry_history(self, name: str) -> dict[str, Any]:
        await self.registry_model(name)  # 404 for an unknown model
        return {"name": name, "events": await asyncio.to_thread(self._registry.history, name)}

    @app.post("/v1/registry/{name}/promote")
    async def promote(self, name: str, body: RegistryChange, request: Request) -> dict[str, Any]:
        """The challenger (or ``version``) becomes the champion: an approval. The evidence recorded is the
        lifecycle controller's latest look at the challenger, when one runs for this model."""
        evidence = await self._evidence(name)
        return await self._change(self._registry.promote, name, body, request, version=body.version,
                                  evidence=evidence)

    @app.post("/v1/registry/{name}/rollback")
    async def rollback(self, name: str, body: RegistryChange, request: Request) -> dict[str, Any]:
        """The champion goes back to the version before it (or ``to``); the one rolled back is archived."""
        return await self._change(self._registry.rollback, name, body, request, to=body.to)

    async def _change(self, action: Any, name: str, body: RegistryChange, request: Request,
                      **kw: Any) -> dict[str, Any]:
        """A registry change by the request's identity (``api:SUBJECT``; ``who`` adds on whose behalf)."""
        await self.registry_model(name)  # 404 for an unknown model
        identity: Identity = request.state.identity
        who = f"api:{identity.subject}" + (f" for {body.who}" if body.who else "")
        before = await asyncio.to_thread(self._registry.aliases, name)
        request.state.audit = {"target": {"registry": name}, "before": {"aliases": before}, "after": None,
                               "detail": body.why}
        try:
            event = await asyncio.to_thread(action, name, who=who, why=body.why, **kw)
        except (RegistryError, ValueError) as err:
            raise HTTPException(409, detail=self._unfiled(err)) from None
        after = await asyncio.to_thread(self._registry.aliases, name)
        request.state.audit["after"] = {"aliases": after}
        return {"name": name, "event": event, "aliases": after}

    async def _evidence(self, name: str) -> dict[str, Any] | None:
        for served in self._models:
            controller = find_controller(served, ARENA_NAMESPACE)
            if controller is not None and (await controller.state.remote()).get("model") == name:
                return await controller.evidence.remote()
        return None

    @app.get("/v1/events")
    async def events(self) -> StreamingResponse:
        return StreamingResponse(self._stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _stream(self):
        yield "retry: 3000\n\n"
        if self._arena is None:
            yield _sse("status", {"status": "idle"})
            return
        cursor, board, status = None, None, None
        while True:
            ev = await self._arena.events.remote(cursor)
            if ev["status"] != status:
                status = ev["status"]
                yield _sse("status", {"status": status})
            text = json.dumps(ev["leaderboard"], allow_nan=False)
            if text != board:
                board = text
                yield f"event: leaderboard\ndata: {text}\n\n"
            if ev["fills"]:
                yield _sse("fill", ev["fills"])
            cursor = ev["cursor"]
            yield ": keep-alive\n\n"
            await asyncio.sleep(EVENTS_INTERVAL_S)


def build_app(args: dict[str, Any]) -> Any:
    """The main application for ``args`` (``AppSettings``): the ingress at ``/``."""
    settings = parse_settings(args)
    return Ingress.options(name="Ingress").bind(settings.model_dump(mode="json"))


def build_model_app(args: dict[str, Any]) -> Any:
    """A model's application for ``args`` (``ModelAppSettings``), deployed as ``model-NAME`` at
    ``/v1/predict/NAME``. The registry folder is resolved where the app is built."""
    spec = parse_model_app(args)
    spec = spec.model_copy(update={"registry": _registry_root(spec.registry)})
    return ModelServer.options(name=spec.deployment).bind(spec.model_dump(mode="json"))


def build_experiment_app(args: dict[str, Any]) -> Any:
    """An experiment's application for ``args`` (``ExperimentSpec``), deployed as ``experiment-NAME``
    at ``/v1/experiments/NAME/predict``; its weights start as the arms' (``user_config`` overrides)."""
    spec = parse_experiment_app(args)
    return ExperimentRouter.options(name=spec.deployment, user_config={"weights": spec.weights()}).bind(
        spec.model_dump(mode="json"))
