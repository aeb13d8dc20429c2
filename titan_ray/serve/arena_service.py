"""The live arena behind the HTTP API: one detached, named actor per cluster.

``ArenaService`` runs ``run_arena`` in a background thread (the replay paced live-like by the
config's ``replay.pace``) and keeps what the routes read. While the run goes on it pulls the
ledger's state (``LedgerActor.results``) at most every ``refresh_s`` seconds, and recomputes the
leaderboard with its bootstrap test at most every ``leaderboard_refresh_s`` seconds, however many
clients ask; when the run ends it keeps the final results. The payloads come from
``titan_ray.arena.views``, the same functions ``titan-ray report`` uses on a run folder. With
``folder`` it serves a finished run folder instead of running an arena.

The live arena runs at a lower CPU share than the Serve replicas: ``ArenaSettings.nice``
(default 19) is applied to the service's own process and, through ``__ray_call__``, to every actor
of its run (market, models, ledger, watchdog), again every ``RENICE_EVERY_S`` for actors that
restarted. Its pace is slow (a bar every half second), so when predictions take every core it
falls behind for a moment and catches up; the replicas, at Ray's niceness (``titan-ray serve``
runs its private Ray's workers at 0), keep their latency. ``status()["nice"]`` shows each
process's niceness.

Every ingress replica finds the actor by name (``attach_or_start``): the first creates it
(``get_if_exists`` makes that atomic), the others and later deployments attach to it, and an
arena already running in the cluster under that name is attached to, never started twice. The
actor is detached, so redeploying the Serve app does not restart the arena; ``ray.kill`` ends it.

Calls answer plain dicts; a failure the caller must show is ``{"error": HTTP status, "detail": text}``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray

from titan_ray.arena import views
from titan_ray.arena.leaderboard import build_leaderboard
from titan_ray.arena.runner import run_arena
from titan_ray.config import ArenaConfig, load_config, parse_config
from titan_ray.domain.calendar import periods_per_year
from titan_ray.metrics.performance import returns_from_equity
from titan_ray.serve.experiments import compare_arms
from titan_ray.serve.settings import ARENA_NAMESPACE, ArenaSettings

log = logging.getLogger("titan_ray.serve.arena")

RENICE_EVERY_S = 30.0  # how often the arena's actors are lowered again (a restarted one comes up at Ray's)


def lower_priority(nice: int) -> int:
    """Raise this process's niceness to ``nice``, never lower it; its niceness after. Every thread's:
    Linux keeps a niceness per thread (threads started later inherit their starter's)."""
    tasks = Path("/proc/self/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:  # a thread that ended meanwhile
            pass
    return os.getpriority(os.PRIO_PROCESS, 0)


def _lower_actor(actor: Any, nice: int) -> int:
    """``lower_priority`` in an actor's process (``actor.__ray_call__``)."""
    return lower_priority(nice)


# What the packaged default arena becomes when served live with no `arena.config`: one bar per
# message, 15-minute bars 900 times faster than real time (one bar a second in the session).
LIVE_OVERRIDES = {"replay": {"chunk_size": 1, "pace": {"speed": 900}}}


def arena_config(settings: ArenaSettings) -> ArenaConfig:
    if settings.config is not None:
        return parse_config(settings.config, source="arena.config")
    return load_config(None, LIVE_OVERRIDES)


class ArenaState:
    """The plain-Python state of the service (tested without the actor's thread)."""

    def __init__(self, config: Any, *, refresh_s: float, leaderboard_refresh_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.refresh_s, self.leaderboard_refresh_s = refresh_s, leaderboard_refresh_s
        self.clock = clock
        self.status = "idle"
        self.run_id: str | None = None
        self.error: str | None = None
        self.handles: dict[str, Any] = {}
        self.periods: float | None = None
        self.bars_done, self.bars_total = 0, None
        self.final: views.RunData | None = None
        self.data: views.RunData | None = None
        self.data_at = -1e18
        self.board: list[dict[str, Any]] = []
        self.board_at = -1e18
        self.restarts: dict[str, int] = {}

    @property
    def initial_cash(self) -> float:
        return float(self.config.ledger.initial_cash) if self.config is not None else 0.0

    def rebuild(self, results: dict[str, Any], *, finished: bool = False) -> views.RunData:
        """RunData from the ledger's results; the leaderboard only when it is due (or at the end)."""
        now = self.clock()
        if finished or now - self.board_at >= self.leaderboard_refresh_s or not self.board:
            self.board = build_leaderboard(self.config, results, self.periods) if results else []
            self.board_at = now
        data = views.live_run(results, self.board, run_id=self.run_id, status="finished" if finished else "running",
                              benchmark=self.config.benchmark_model, bars_done=self.bars_done,
                              bars_total=self.bars_total, initial_cash=self.initial_cash)
        self.data, self.data_at = data, now
        return data

    @property
    def models(self) -> list[str]:
        """The arena's model names: from its config, or from the results of the run it attached to."""
        return [m.name for m in self.config.models] if self.config else list(self.final.models if self.final else ())

    def empty_run(self) -> views.RunData:
        """This run's ``RunData`` before the ledger has results (an idle run with its id and size)."""
        idle = views.idle_run()
        return dataclasses.replace(idle, run_id=self.run_id, status=self.status if self.status != "failed" else "idle",
                                   bars_total=self.bars_total, initial_cash=self.initial_cash)

    def stats(self, run: views.RunData) -> dict[str, Any]:
        """Totals for the Prometheus metrics (``Metrics.sync_arena``)."""
        fills = run.trades[run.trades["record"] == "fill"]
        rejected = run.orders[run.orders["status"] == "REJECTED"]
        by_reason: dict[str, dict[str, int]] = {}
        for (model, reason), n in rejected.groupby(["model", "reason"]).size().items():
            by_reason.setdefault(model, {})[reason] = int(n)
        equity = {}
        if len(run.equity):
            last = run.equity.sort_values("timestamp").groupby("model")["equity"].last()
            equity = {m: float(v) for m, v in last.items() if np.isfinite(v)}
        return {
            "run_id": run.run_id,
            "status": run.status,
            "bars": int(run.bars_done),
            "fills": {m: int(n) for m, n in fills.groupby("model").size().items()},
            "rejections": by_reason,
            "equity": equity,
            "restarts": dict(self.restarts),
        }


@ray.remote(num_cpus=0, max_concurrency=16)
class ArenaService:
    def __init__(self, settings: dict[str, Any]) -> None:
        s = ArenaSettings.model_validate(settings)
        self._settings = s
        self._lock = threading.Lock()  # one refresh at a time; calls run in a thread pool
        if s.folder is not None:
            self._state = ArenaState(None, refresh_s=s.refresh_s, leaderboard_refresh_s=s.leaderboard_refresh_s)
            run = views.load_run(s.folder)
            self._state.final, self._state.status, self._state.run_id = run, run.status, run.run_id
            return
        self._state = ArenaState(arena_config(s), refresh_s=s.refresh_s,
                                 leaderboard_refresh_s=s.leaderboard_refresh_s)
        self._niceness: dict[str, int] = {}  # process -> its niceness
        self._lowering: dict[str, Any] = {}  # process -> the call that lowers it (answers its niceness)
        self._lowered_at = -1e18
        if s.nice is not None:
            self._niceness["service"] = lower_priority(s.nice)  # before the run's thread: it inherits it
        self._thread = threading.Thread(target=self._run, name="titan-ray-live-arena", daemon=True)
        self._state.status = "running"
        self._thread.start()

    # --- the run (background thread) ----------------------------------------------------------

    def _run(self) -> None:
        st = self._state
        st.run_id = uuid.uuid4().hex[:12]
        try:
            result = run_arena(st.config, None, on_progress=self._on_progress, on_actors=self._on_actors,
                               snapshot_every=1e9, run_id=st.run_id)
            st.bars_done = st.bars_total or st.bars_done
            st.final = st.rebuild(result.results, finished=True)
            st.status = "finished"
        except Exception as err:  # the service stays up and says why the arena stopped
            log.exception("the live arena failed")
            st.error = f"{type(err).__name__}: {err}"
            st.status = "failed"
        finally:
            st.handles = {}

    def _on_actors(self, handles: dict[str, Any]) -> None:
        info = ray.get(handles["market"].info.remote())
        self._state.periods = periods_per_year(info["frequency"], info["calendar"])
        self._state.bars_total = info["n_timestamps"] - info["warmup_bars"]
        self._state.handles = handles
        self._lower_actors()

    def _on_progress(self, p: Any) -> None:
        self._state.bars_done = p.done_timestamps
        self._state.bars_total = p.total_timestamps
        if time.monotonic() - self._lowered_at > RENICE_EVERY_S:
            self._lower_actors()

    def _lower_actors(self) -> None:
        """Every actor of the run to ``nice`` (fire and forget: the run never waits for it)."""
        nice, handles = self._settings.nice, self._state.handles
        if nice is None or not handles:
            return
        self._lowered_at = time.monotonic()
        actors = {"market": handles.get("market"), "ledger": handles.get("ledger"), "watchdog": handles.get("watchdog"),
                  **{f"model {name}": h for name, h in (handles.get("models") or {}).items()}}
        for name, actor in actors.items():
            if actor is not None:
                self._lowering[name] = actor.__ray_call__.remote(_lower_actor, nice)

    # --- reading ------------------------------------------------------------------------------

    def _view(self) -> views.RunData:
        st = self._state
        if st.final is not None:
            return st.final
        ledger = st.handles.get("ledger")
        if ledger is None:
            return st.empty_run()
        if st.data is not None and st.clock() - st.data_at < st.refresh_s:
            return st.data
        with self._lock:
            if st.data is not None and st.clock() - st.data_at < st.refresh_s:
                return st.data
            try:
                results = ray.get(ledger.results.remote())
                watchdog = st.handles.get("watchdog")
                if watchdog is not None:
                    alerts = ray.get(watchdog.alerts.remote())
                    counts: dict[str, int] = {}
                    for a in alerts:
                        if a["kind"] == "RESTARTED":
                            counts[a["actor"]] = counts.get(a["actor"], 0) + 1
                    st.restarts = counts
            except Exception:  # noqa: BLE001 - the run ended (its actors are gone) between two looks
                return st.final or st.data or st.empty_run()
            return st.rebuild(results)

    def query(self, what: str, **kw: Any) -> dict[str, Any]:
        """One payload of ``titan_ray.arena.views`` (leaderboard, equity, portfolio, trades, why)."""
        fn = {"leaderboard": views.leaderboard, "equity": views.equity, "portfolio": views.portfolio,
              "trades": views.trades, "why": views.why}.get(what)
        if fn is None:
            return {"error": 404, "detail": f"unknown view {what!r}"}
        run = self._view()
        try:
            return fn(run, **kw)
        except views.NotFound as err:
            return {"error": 404, "detail": str(err)}
        except ValueError as err:
            return {"error": 422, "detail": str(err)}

    def status(self) -> dict[str, Any]:
        st = self._state
        return {"status": st.status, "run_id": st.run_id, "error": st.error, "bars_done": st.bars_done,
                "bars_total": st.bars_total, "models": st.models, "nice": self._read_niceness()}

    def _read_niceness(self) -> dict[str, int]:
        """Each process's niceness, as far as the calls that lowered it have answered."""
        lowering = getattr(self, "_lowering", {})  # none when serving a finished run's folder
        for name, ref in list(lowering.items()):
            ready, _ = ray.wait([ref], timeout=0)
            if ready:
                lowering.pop(name, None)
                try:
                    self._niceness[name] = ray.get(ref)
                except Exception:  # noqa: BLE001 - the actor ended (restarting, or the run did)
                    self._niceness.pop(name, None)
        return dict(getattr(self, "_niceness", {}))

    def stats(self) -> dict[str, Any]:
        return self._state.stats(self._view())

    def events(self, cursor: dict[str, Any] | None) -> dict[str, Any]:
        """The leaderboard, and the fills since ``cursor`` (the previous call's ``cursor``; None = now)."""
        run = self._view()
        counts = {m: len(r.fills) for m, r in (run.results or {}).items()}
        fills: list[dict[str, Any]] = []
        if cursor is not None and cursor.get("run_id") == run.run_id and run.results is not None:
            seen = cursor.get("fills", {})
            for m, r in run.results.items():
                fills.extend(views.fill_payload(f) for f in r.fills[seen.get(m, len(r.fills)):])
            fills.sort(key=lambda f: f["timestamp"] or "")
        return {"status": run.status, "leaderboard": views.leaderboard(run), "fills": fills,
                "cursor": {"run_id": run.run_id, "fills": counts}}

    def compare(self, arms: dict[str, str], control: str, n_resamples: int = 1000) -> dict[str, Any]:
        """The arms' trading records in this arena (arm -> the arena model it trades as)."""
        run = self._view()
        rows = {r["model"]: r for r in run.leaderboard}
        missing = {arm: m for arm, m in arms.items() if m not in run.models}
        summaries = {}
        for arm, m in arms.items():
            r = rows.get(m)
            summaries[arm] = ({"model": m, "in_arena": False} if r is None else
                              {"model": m, "in_arena": True, **{k: r.get(k) for k in (
                                  "final_equity", "total_return", "sharpe", "sortino", "max_drawdown", "n_trades",
                                  "win_rate", "turnover")}})
        if not len(run.equity) or self._state.periods is None:
            return {"control": control, "arms": summaries, "tests": [],
                    "reason": f"the arena has no equity yet (status {run.status})"}
        wide = run.equity.pivot(index="timestamp", columns="model", values="equity").sort_index()
        returns = {arm: returns_from_equity(wide[m].to_numpy(), run.initial_cash)
                   for arm, m in arms.items() if m in wide.columns}
        out = compare_arms(returns, self._state.periods, control, summaries=summaries, n_resamples=n_resamples)
        if missing:
            out["not_in_arena"] = missing
        return out

    # --- acting -------------------------------------------------------------------------------

    def kill_switch(self, model: str, on: bool) -> dict[str, Any]:
        st = self._state
        models = st.models
        if model not in models:
            return {"error": 404, "detail": f"unknown model {model!r}; models in the arena: {', '.join(models)}"}
        ledger = st.handles.get("ledger")
        if st.status != "running" or ledger is None:
            return {"error": 409, "detail": f"the arena is {st.status}, not running: there is no position to flatten"}
        ray.get(ledger.kill_switch.remote(model, on))
        st.data_at = -1e18  # the next read shows the halt
        return {"model": model, "kill_switch": on, "detail": (
            "flattens at the next bar's open and rejects every order that adds risk" if on else
            "lifted: the model trades again")}


def attach_or_start(settings: ArenaSettings) -> Any | None:
    """The arena actor named ``settings.actor``: attached to if it runs, else started (if allowed)."""
    try:
        return ray.get_actor(settings.actor, namespace=ARENA_NAMESPACE)
    except ValueError:
        if not settings.start:
            return None
    return ArenaService.options(name=settings.actor, namespace=ARENA_NAMESPACE, lifetime="detached",
                                get_if_exists=True, max_restarts=3).remote(settings.model_dump(mode="json"))
