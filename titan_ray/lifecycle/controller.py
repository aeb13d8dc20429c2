"""One served model's lifecycle on the live feed: drift, alerts, retraining, champion and challenger.

    live feed ──► champion decides ──► its live book (rolling Sharpe vs val_sharpe: decay)
        │              │
        │              └──► features and scores of the latest window vs the training profile
        │                   (PSI and KS per feature, PSI of the scores): drift
        │                          │ past a threshold
        │                          ▼
        │                 alert (webhook, Prometheus, state) ──► retraining job (Ray task): a
        │                 walk-forward fit on the latest bars, registered as NAME@challenger
        ▼                                                           │
    challenger decides the same bars ◄─────────────────────────────┘
        │   (and Serve's model app shadows it on live requests)
        ▼
    the promotion rule every min_bars (``titan_ray.lifecycle.rule``) ──► promote (auto) or wait for
    an approval; reject after the last failed look. Every move is a registry event with its
    evidence; Serve's model apps follow the aliases (``titan_ray.serve.deployments.ModelServer``).

``LifecycleController`` runs that loop on a thread of its own (a Ray actor named
``titan-ray-lifecycle-SERVED``, detached, started by the model app whose settings have a
``lifecycle`` section) and answers ``state()`` (the ``lifecycle`` of ``GET /v1/models/{model}``
and the Prometheus gauges) and ``evidence()`` (the latest look at the challenger, which an
approval records) at any time. It reads the aliases from the registry at every chunk, so a
promotion or rollback made elsewhere (the CLI, the HTTP API) changes the model it runs at once.

The feed is an arena ``data`` section replayed at ``speed`` bars a second from ``start_bar`` (the
bars before are the history a first retraining may fit on). Nothing here waits forever: a missing
champion is reported in the state and looked for again every second.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import traceback
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from titan_ray.data.providers import make_provider
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import periods_per_year
from titan_ray.domain.decisions import Decisions
from titan_ray.ledger.engine import Ledger
from titan_ray.lifecycle.retrain import RetrainRequest, retrain_job
from titan_ray.lifecycle.rule import Judgement, judge
from titan_ray.lifecycle.settings import LifecycleSettings, controller_name, parse_lifecycle
from titan_ray.metrics.drift import ColumnDrift, Profile
from titan_ray.metrics.performance import returns_from_equity, sharpe
from titan_ray.models.base import TradingModel
from titan_ray.models.profiles import ModelProfile, live_rows, profile_of, read_profile
from titan_ray.registry import ModelRegistry

log = logging.getLogger("titan_ray.lifecycle")

CONTROLLER = "titan-ray lifecycle controller"
WARM_BARS = 500  # bars a freshly loaded model observes before its first live decision
LATENCY_CALLS = 30  # explain() calls the challenger's p99 latency is taken over
ALERT_LOG = 20


@dataclass
class Running:
    """A model version the controller runs on the feed."""

    version: int
    model: TradingModel
    since: int  # the first live bar it decided
    profile: ModelProfile | None
    meta: dict[str, Any]  # its registry metadata (kind, params, metrics), read once when it is loaded
    latency_p99_ms: float | None = None


@dataclass
class Evaluation:
    """The challenger beside the champion, in a ledger of their own from the challenger's first bar."""

    challenger: Running
    ledger: Ledger
    returns: dict[str, list[float]] = field(default_factory=lambda: {"champion": [], "challenger": []})
    last_equity: dict[str, float] = field(default_factory=dict)
    looks: int = 0
    judgement: Judgement | None = None
    pending_approval: bool = False
    seq: int = 0


class LifecycleController:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.s: LifecycleSettings = parse_lifecycle(settings)
        self.name = self.s.model or ""
        self.served = self.s.served or self.name
        self.registry = ModelRegistry(self.s.registry)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._alerts: deque[dict[str, Any]] = deque(maxlen=ALERT_LOG)
        self._state: dict[str, Any] = {
            "model": self.name, "served": self.served, "status": "starting", "bar": None, "bars": None,
            "champion": None, "challenger": None, "drift": None, "performance": None, "alerts_total": 0,
            "alerts": [], "retraining": {"status": "idle"}, "promotions": 0, "rejections": 0,
            "webhook": {"sent": 0, "failed": 0, "last_error": None}, "error": None}
        self._thread = threading.Thread(target=self._main, name="lifecycle", daemon=True)
        self._thread.start()

    # --- what the API reads -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._lock:
            out = json.loads(json.dumps(self._state, default=_json))
        out["alerts"] = list(self._alerts)
        return out

    def evidence(self) -> dict[str, Any] | None:
        """The latest look at the current challenger (None before the first)."""
        with self._lock:
            challenger = self._state.get("challenger") or {}
            return json.loads(json.dumps(challenger.get("evidence"), default=_json))  # a copy, as state()

    def stop(self) -> bool:
        self._stop.set()
        self._thread.join(timeout=30)
        return not self._thread.is_alive()

    # --- the loop -----------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._run()
        except Exception as err:
            log.exception("the lifecycle of %s stopped", self.served)
            self._set(status="failed", error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc(limit=8))

    def _run(self) -> None:
        s = self.s
        market = make_provider(s.data(), s.seed).load()
        self.bars: BarBatch = market.bars
        self.calendar = market.calendar.value
        self.periods = periods_per_year(market.frequency, market.calendar)
        if s.start_bar >= len(self.bars):
            raise ValueError(f"start_bar {s.start_bar} is past the feed's {len(self.bars)} bars: lower it")
        self._set(bars=len(self.bars), status="waiting for a champion")
        self.champion: Running | None = None
        self.evaluation: Evaluation | None = None
        self.live = Ledger(ledger=s.ledger, risk=s.risk, symbols=self.bars.symbols, calendar=self.calendar,
                           models={"champion": False}, memory_rows=4096)
        self.live_returns: deque[float] = deque(maxlen=s.drift.perf_window_bars)
        self._last_live_equity = float(s.ledger.initial_cash)
        self.last_alert_bar: int | None = None
        self.pending_job: dict[str, Any] | None = None  # {"due": bar, "alert": {...}} or {"ref": ..., ...}
        t, seq = s.start_bar, 0
        paced_from = (t, time.monotonic())  # a live feed's pace: bar t + k is due k / speed s after this
        while t < len(self.bars) and not self._stop.is_set():
            if not self._sync_aliases(t):
                self._set(status="waiting for a champion", error=(
                    f"{self.name!r} has no champion in {self.registry.root}: set one with `titan-ray registry "
                    f"alias {self.name} champion VERSION`"))
                self._stop.wait(1.0)
                paced_from = (t, time.monotonic())  # the feed resumes where it waited, not in a rush
                continue
            chunk = self.bars.slice(t, min(t + s.chunk_bars, len(self.bars)))
            if s.speed > 0 and self._stop.wait(max(0.0, paced_from[1] + (t - paced_from[0]) / s.speed
                                                  - time.monotonic())):
                break
            self._trade(seq, chunk)
            seq += 1
            t = chunk.stop
            self._set(status="running", bar=t, error=None)
            if (t - s.start_bar) // s.drift.check_every_bars != (chunk.start - s.start_bar) // s.drift.check_every_bars:
                self._check(t)
            self._poll_job(t)
        self._close_books()
        self._set(status="feed ended" if t >= len(self.bars) else "stopped")

    def _close_books(self) -> None:
        """The ledgers' spill files, when the loop ends (the state keeps its figures)."""
        self.live.close()
        if self.evaluation is not None:
            self.evaluation.ledger.close()

    def _trade(self, seq: int, chunk: BarBatch) -> None:
        assert self.champion is not None
        dec = self.champion.model.decide(chunk)
        mine = Decisions("champion", dec.start, dec.weights)
        self.live.apply(seq, chunk, [mine])
        equity = self._curve_tail(self.live, "champion", len(chunk))
        self.live_returns.extend(_returns(equity, self._last_live_equity))
        self._last_live_equity = float(equity[-1])
        ev = self.evaluation
        if ev is not None:
            cdec = ev.challenger.model.decide(chunk)
            ev.ledger.apply(ev.seq, chunk, [mine, Decisions("challenger", cdec.start, cdec.weights)])
            ev.seq += 1
            for book in ("champion", "challenger"):
                eq = self._curve_tail(ev.ledger, book, len(chunk))
                ev.returns[book].extend(_returns(eq, ev.last_equity.get(book, float(self.s.ledger.initial_cash))))
                ev.last_equity[book] = float(eq[-1])

    @staticmethod
    def _curve_tail(ledger: Ledger, book: str, n: int) -> np.ndarray:
        b = ledger.books[book]
        total = b.n_curve
        return b.rows("curve", total - n, total)["equity"]

    # --- aliases: what runs ---------------------------------------------------------------------

    def _sync_aliases(self, t: int) -> bool:
        """Load the champion and the challenger the registry names now; False without a champion."""
        aliases = self.registry.aliases(self.name)
        champ = aliases.get("champion")
        if champ is None:
            self.champion = None
            return False
        if self.champion is None or self.champion.version != champ:
            was = self.champion.version if self.champion is not None else None
            self.champion = self._load(champ, "champion", t)
            self.live_returns.clear()  # the rolling Sharpe is this champion's own
            self._drop_evaluation()  # a challenger is judged against one champion: a new one starts afresh
            log.warning("lifecycle %s: the champion is now version %s (was %s)", self.served, champ, was)
            self._set(champion={"version": champ, "since_bar": t})
        chall = aliases.get("challenger")
        ev = self.evaluation
        if chall != (ev.challenger.version if ev is not None else None):
            self._drop_evaluation()
            if chall is not None and chall != champ:
                running = self._load(chall, "challenger", t)
                running.latency_p99_ms = self._latency(running.model, t)
                self.evaluation = Evaluation(running, Ledger(
                    ledger=self.s.ledger, risk=self.s.risk, symbols=self.bars.symbols, calendar=self.calendar,
                    models={"champion": False, "challenger": False}, memory_rows=4096))
                self._set(challenger={"version": chall, "since_bar": t, "bars": 0, "looks": 0,
                                      "latency_p99_ms": running.latency_p99_ms, "verdict": "wait",
                                      "pending_approval": False, "evidence": None})
        return True

    def _drop_evaluation(self) -> None:
        if self.evaluation is not None:
            self.evaluation.ledger.close()  # its spill files
        self.evaluation = None
        self._set(challenger=None)

    def _load(self, version: int, role: str, t: int) -> Running:
        ref = self.registry.get(self.name, version)
        model = self.registry.load_model(ref, name=role, symbols=self.bars.symbols, seed=self.s.seed)
        warm = self.bars.slice(max(0, t - WARM_BARS), t)
        if len(warm):
            model.observe(warm)
        return Running(version, model, t, read_profile(ref.path), ref.meta)

    def _latency(self, model: TradingModel, t: int) -> float | None:
        """p99 milliseconds of one served prediction (``explain`` over a window, as a model app answers)."""
        inputs = model.inputs()
        rows = min(t, max(2 * (inputs.lookback + inputs.context), 64))
        if rows < 2:
            return None
        window = self.bars.slice(t - rows, t)
        times = []
        for _ in range(LATENCY_CALLS):
            start = time.perf_counter()
            model.explain(window)
            times.append((time.perf_counter() - start) * 1000.0)
        return float(np.percentile(times, 99))

    # --- drift, decay, alerts -------------------------------------------------------------------

    def _check(self, t: int) -> None:
        s = self.s
        assert self.champion is not None
        champ = self.champion
        lo = max(0, t - s.drift.window_bars)
        warm = min(lo, WARM_BARS)
        drift = self._drift(champ, lo - warm, warm, t)
        perf = self._performance()
        self._set(drift=drift, performance=perf)
        reasons = []
        if drift is not None:
            if drift["share"] >= s.drift.feature_share:
                reasons.append(f"feature drift: {len(drift['drifted'])} of {len(drift['features'])} features "
                               f"({', '.join(drift['drifted'][:5])})")
            psi = (drift.get("prediction") or {}).get("psi")
            if psi is not None and psi > s.drift.prediction_psi_threshold:
                reasons.append(f"prediction drift: PSI of the scores {psi:.3f}")
        if perf.get("decayed"):
            reasons.append(f"performance decay: live Sharpe {perf['live_sharpe']:.2f} vs validation "
                           f"{perf['validation_sharpe']:.2f} (standard error {perf['standard_error']:.2f})")
        cooled = self.last_alert_bar is None or t - self.last_alert_bar >= s.drift.cooldown_bars
        if reasons and cooled:
            self._alert(t, reasons, drift, perf)
        self._look(t)

    def _drift(self, champ: Running, lo: int, warm: int, t: int) -> dict[str, Any] | None:
        model = champ.model
        if getattr(model, "features", None) is None:
            return None
        X, scores = live_rows(model, self.bars.slice(lo, t))
        X = X[warm:]
        scores = scores[max(0, len(scores) - len(X)):]
        profile = champ.profile
        reference = "training window"
        if profile is None:  # no profile in the registry: the first live window is the reference
            champ.profile = profile = profile_of(model, self.bars.slice(lo, t), seed=self.s.seed)
            reference = "first live window"
            if profile is None:
                return None
        d = self.s.drift
        cols = profile.features.compare(X)
        scored = [c for c in cols if c.psi is not None and c.name not in d.ignore]
        drifted = [c.name for c in scored if _drifts(c, d.psi_threshold, d.ks_alpha)]
        pred = profile.scores.compare(scores.reshape(-1, 1))[0]
        return {"at_bar": t, "window_bars": t - lo - warm, "reference": reference,
                "features": [c.to_dict() for c in cols], "ignored": list(d.ignore), "drifted": drifted,
                "share": len(drifted) / len(scored) if scored else 0.0,
                "max_psi": max((c.psi for c in scored), default=None),
                "prediction": pred.to_dict()}

    def _performance(self) -> dict[str, Any]:
        assert self.champion is not None
        r = np.asarray(self.live_returns)
        metrics = self.champion.meta.get("metrics", {})
        ref, val_bars = metrics.get("val_sharpe"), metrics.get("validation_bars")
        live = sharpe(r, self.periods) if len(r) >= self.s.drift.perf_window_bars else None
        live = None if live is None or not np.isfinite(live) else float(live)
        decay = self.s.drift.sharpe_decay
        # Both Sharpe ratios are estimates: the difference is judged against the standard error of
        # both (Lo 2002, iid returns), the validation's taken over its validation_bars when recorded.
        se = None
        if live is not None and ref is not None:
            se = _sharpe_se(live, len(r), self.periods)
            if val_bars:
                se = float(np.hypot(se, _sharpe_se(float(ref), int(val_bars), self.periods)))
        decayed = se is not None and decay is not None and live < float(ref) - decay * se
        return {"live_sharpe": live, "validation_sharpe": ref, "standard_error": se, "window_bars": len(r),
                "decayed": bool(decayed)}

    def _alert(self, t: int, reasons: list[str], drift: dict[str, Any] | None, perf: dict[str, Any]) -> None:
        self.last_alert_bar = t
        alert = {"at": _now(), "bar": t, "model": self.name, "served": self.served,
                 "champion": self.champion.version if self.champion else None, "reasons": reasons,
                 "max_psi": (drift or {}).get("max_psi"), "drifted": (drift or {}).get("drifted", []),
                 "prediction_psi": ((drift or {}).get("prediction") or {}).get("psi"),
                 "live_sharpe": perf.get("live_sharpe"), "validation_sharpe": perf.get("validation_sharpe")}
        log.warning("lifecycle %s: alert at bar %d: %s", self.served, t, "; ".join(reasons))
        self._alerts.append(alert)
        with self._lock:
            self._state["alerts_total"] += 1
        self._webhook(alert)
        busy = self.evaluation is not None or self.pending_job is not None
        if self.s.retrain.enabled and not busy:
            self.pending_job = {"due": t + self.s.retrain.wait_bars, "alert": alert}
            self._set(retraining={"status": "waiting", "due_bar": self.pending_job["due"], "alert_bar": t})

    def _webhook(self, alert: dict[str, Any]) -> None:
        url = self.s.alerts.webhook_url
        if url is None:
            return
        body = json.dumps({"event": "titan-ray.drift", **alert}, default=_json).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.s.alerts.timeout_s) as answer:
                answer.read()
            with self._lock:
                self._state["webhook"]["sent"] += 1
        except Exception as err:  # noqa: BLE001 - a dead webhook is reported, never fatal
            log.warning("lifecycle %s: the alert webhook failed: %s", self.served, err)
            with self._lock:
                self._state["webhook"]["failed"] += 1
                self._state["webhook"]["last_error"] = f"{type(err).__name__}: {err}"

    # --- retraining ------------------------------------------------------------------------------

    def _poll_job(self, t: int) -> None:
        job = self.pending_job
        if job is None:
            return
        if "ref" not in job:
            if t < job["due"]:
                return
            self._start_job(t, job)
            return
        ready, _ = ray.wait([job["ref"]], timeout=0)
        if not ready:
            return
        self.pending_job = None
        try:
            result = ray.get(job["ref"])
        except Exception as err:  # noqa: BLE001 - a failed job is reported; the next alert tries again
            log.warning("lifecycle %s: the retraining job failed: %s", self.served, err)
            self._set(retraining={"status": "failed", "error": f"{type(err).__name__}: {err}"[:2000],
                                  "started_bar": job["started_bar"], "alert_bar": job["alert"]["bar"],
                                  "window": job["window"]})
            return
        self._set(retraining={"status": "done", "started_bar": job["started_bar"], "finished_bar": t,
                              "alert_bar": job["alert"]["bar"], "window": job["window"], **result})

    def _start_job(self, t: int, job: dict[str, Any]) -> None:
        r = self.s.retrain
        assert self.champion is not None
        meta = self.champion.meta
        window = self.bars.slice(max(0, t - r.window_bars), t)
        request = RetrainRequest(
            registry=str(self.registry.root), name=self.name, kind=meta["kind"],
            params={**meta.get("params", {}), **r.params}, bars=window, validation_bars=r.validation_bars,
            ledger=self.s.ledger, risk=self.s.risk, calendar=self.calendar, periods_per_year=self.periods,
            seed=self.s.seed, trigger=job["alert"], mlflow_uri=self.s.tracking.get("mlflow_uri"))
        job.update(ref=retrain_job.options(num_cpus=r.num_cpus).remote(request), started_bar=t,
                   window=[window.start, window.stop])
        self._set(retraining={"status": "running", "started_bar": t, "alert_bar": job["alert"]["bar"],
                              "window": job["window"]})
        log.warning("lifecycle %s: retraining %s on bars %d..%d", self.served, self.name, window.start, window.stop)

    # --- the promotion rule ----------------------------------------------------------------------

    def _look(self, t: int) -> None:
        ev = self.evaluation
        if ev is None or ev.pending_approval:
            return
        rule = self.s.promotion
        j = judge(np.asarray(ev.returns["champion"]), np.asarray(ev.returns["challenger"]), looks_done=ev.looks,
                  latency_p99_ms=ev.challenger.latency_p99_ms, periods=self.periods, rule=rule, seed=self.s.seed)
        bars = len(ev.returns["challenger"])
        if j.verdict == "wait":
            self._update_challenger(bars=bars)
            return
        ev.looks, ev.judgement = j.look, j
        evidence = {**j.evidence, "champion": self.champion.version if self.champion else None,
                    "challenger": ev.challenger.version, "from_bar": ev.challenger.since, "to_bar": t}
        self._update_challenger(bars=bars, looks=j.look, verdict=j.verdict, evidence=evidence)
        why = (f"look {j.look}/{rule.max_looks} over {bars} live bars: Sharpe {_fmt(evidence['sharpe_challenger'])} "
               f"vs {_fmt(evidence['sharpe_champion'])}, p={_fmt(evidence['p_value'], '.4f')}")
        if j.verdict == "promote":
            if rule.mode == "approval":
                ev.pending_approval = True
                self._update_challenger(pending_approval=True)
                log.warning("lifecycle %s: version %d passed the promotion rule; waiting for an approval",
                            self.served, ev.challenger.version)
                return
            self.registry.promote(self.name, who=CONTROLLER, why=f"the promotion rule passed ({why})",
                                  evidence=evidence)
            with self._lock:
                self._state["promotions"] += 1
        elif j.verdict == "reject":
            self.registry.reject(self.name, who=CONTROLLER, why=f"the promotion rule failed {j.reasons} ({why})",
                                 evidence=evidence)
            with self._lock:
                self._state["rejections"] += 1

    def _update_challenger(self, **fields: Any) -> None:
        with self._lock:
            if self._state.get("challenger") is not None:
                self._state["challenger"].update(fields)

    def _set(self, **fields: Any) -> None:
        with self._lock:
            self._state.update(fields)


def _drifts(c: ColumnDrift, psi_threshold: float, ks_alpha: float) -> bool:
    """A feature drifts when both its PSI passes the threshold and the KS test rejects: the KS test alone
    rejects on tiny shifts of thousands of autocorrelated rows, the PSI alone on a small sample's noise."""
    return c.psi is not None and c.p_value is not None and c.psi > psi_threshold and c.p_value < ks_alpha


def _sharpe_se(annual: float, n: int, periods: float) -> float:
    """Lo (2002): the standard error of a Sharpe ratio estimated on n iid returns is
    sqrt((1 + SR^2 / 2) / n) per period; annualised like the ratio."""
    per_bar = annual / np.sqrt(periods)
    return float(np.sqrt(periods) * np.sqrt((1.0 + 0.5 * per_bar**2) / n))


def _returns(equity: np.ndarray, previous: float) -> list[float]:
    return returns_from_equity(np.asarray(equity, dtype=np.float64), previous).tolist()


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _json(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Profile):
        return None
    return str(x)


def start_controller(settings: LifecycleSettings, namespace: str) -> Any:
    """The served model's controller: attached to if it runs, else started (detached, named)."""
    name = controller_name(settings.served or settings.model or "")
    actor = ray.remote(LifecycleController).options(
        name=name, namespace=namespace, lifetime="detached", get_if_exists=True, max_restarts=3,
        num_cpus=settings.num_cpus, max_concurrency=4)
    return actor.remote(settings.model_dump(mode="json"))


def find_controller(served: str, namespace: str) -> Any | None:
    try:
        return ray.get_actor(controller_name(served), namespace=namespace)
    except ValueError:
        return None
