"""Prometheus metrics of TitanRay: the names are a contract (the Grafana dashboard uses them).

``Metrics`` owns one ``prometheus_client`` registry with every TitanRay metric:

    titan_ray_requests_total{route,arm,code}          counter: HTTP requests answered
    titan_ray_request_latency_seconds{route,arm}      histogram: time to answer them
    titan_ray_fills_total{model}                      counter: fills booked by the ledger
    titan_ray_rejections_total{model,reason}          counter: orders rejected, by reason code
    titan_ray_equity{model}                           gauge: each model's latest equity
    titan_ray_actor_restarts_total{actor}             counter: restarts the watchdog saw
    titan_ray_bars_total                              counter: bars (timestamps) replayed
    titan_ray_drift_psi{model,feature}                gauge: a served model's live feature drift (PSI)
    titan_ray_drift_ks_pvalue{model,feature}          gauge: ... the KS test's p-value
    titan_ray_prediction_psi{model}                   gauge: drift of its scores (PSI)
    titan_ray_live_sharpe{model}                      gauge: its rolling live Sharpe on the feed
    titan_ray_validation_sharpe{model}                gauge: its registered validation Sharpe
    titan_ray_model_version{model,alias}              gauge: the version an alias names
    titan_ray_drift_alerts_total{model}               counter: drift and decay alerts raised

``route`` is the route's template (``/v1/predict/{model}``, never the raw path, so a scan of
random URLs cannot blow up the label set); ``arm`` is the experiment arm that answered, or ``-``.

The HTTP metrics are counted where requests are answered: in every Serve replica that takes HTTP
(the main ingress, each model's and each experiment's), as plain numbers (``RequestStats``). Each
replica ships its cumulative counts to one detached ``MetricsHub`` actor about once a second, and
``/metrics`` shows the hub's sum over every replica that ever answered, so any ingress replica
answers a scrape with the whole deployment's counts (a replica that stops keeps its counts in the
sum: counters never go down). The arena metrics are totals kept by the arena: ``sync_arena`` turns
each new reading into counter increments, and a reading below the last one (a new run started)
resets the counter, the way Prometheus expects from a restarted process. Ray's own
``ray_serve_*`` metrics cover the proxy side.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

log = logging.getLogger("titan_ray.metrics")

REQUESTS_TOTAL = "titan_ray_requests_total"
REQUEST_LATENCY = "titan_ray_request_latency_seconds"
FILLS_TOTAL = "titan_ray_fills_total"
REJECTIONS_TOTAL = "titan_ray_rejections_total"
EQUITY = "titan_ray_equity"
ACTOR_RESTARTS_TOTAL = "titan_ray_actor_restarts_total"
BARS_TOTAL = "titan_ray_bars_total"
DRIFT_PSI = "titan_ray_drift_psi"
DRIFT_KS_PVALUE = "titan_ray_drift_ks_pvalue"
PREDICTION_PSI = "titan_ray_prediction_psi"
LIVE_SHARPE = "titan_ray_live_sharpe"
VALIDATION_SHARPE = "titan_ray_validation_sharpe"
MODEL_VERSION = "titan_ray_model_version"
DRIFT_ALERTS_TOTAL = "titan_ray_drift_alerts_total"

METRIC_NAMES: tuple[str, ...] = (
    REQUESTS_TOTAL,
    REQUEST_LATENCY,
    FILLS_TOTAL,
    REJECTIONS_TOTAL,
    EQUITY,
    ACTOR_RESTARTS_TOTAL,
    BARS_TOTAL,
    DRIFT_PSI,
    DRIFT_KS_PVALUE,
    PREDICTION_PSI,
    LIVE_SHARPE,
    VALIDATION_SHARPE,
    MODEL_VERSION,
    DRIFT_ALERTS_TOTAL,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
NO_ARM = "-"

# Predictions answer in about a millisecond, the arena's routes in tens: buckets from 0.5 ms to 5 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _base(name: str) -> str:
    """prometheus_client adds ``_total`` to counters itself: it wants the name without it."""
    return name.removesuffix("_total")


class RequestStats:
    """HTTP request counts and latency histograms as plain numbers: a dict update per request,
    shipped as a JSON-able snapshot and added up across replicas (``merge``).

    ``counts[(route, arm, code)]`` = requests; ``latency[(route, arm)]`` = [count per bucket of
    ``LATENCY_BUCKETS`` (not cumulative), count above the last bucket, sum of seconds].
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        self.latency: dict[tuple[str, str], list[float]] = {}
        self.version = 0  # bumped by every observation: "changed since the last push?"

    def observe(self, route: str, arm: str | None, code: int, seconds: float) -> None:
        arm = arm or NO_ARM
        key = (route, arm, str(code))
        self.counts[key] = self.counts.get(key, 0) + 1
        hist = self.latency.get((route, arm))
        if hist is None:
            hist = self.latency[(route, arm)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        hist[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hist[-1] += seconds
        self.version += 1

    def snapshot(self) -> dict[str, list]:
        return {"requests": [[*k, n] for k, n in self.counts.items()],
                "latency": [[*k, list(v)] for k, v in self.latency.items()]}

    @classmethod
    def merge(cls, snapshots: Iterable[Mapping[str, list]]) -> RequestStats:
        total = cls()
        for snap in snapshots:
            for route, arm, code, n in snap.get("requests", []):
                key = (route, arm, code)
                total.counts[key] = total.counts.get(key, 0) + int(n)
            for route, arm, hist in snap.get("latency", []):
                mine = total.latency.setdefault((route, arm), [0.0] * (len(LATENCY_BUCKETS) + 2))
                for i, v in enumerate(hist):
                    mine[i] += v
        return total


class _RequestCollector(Collector):
    """Renders the ``RequestStats`` that ``Metrics.shown`` points at, as the two HTTP metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Any]:
        stats = self._metrics.shown
        requests = CounterMetricFamily(_base(REQUESTS_TOTAL), "HTTP requests answered",
                                       labels=("route", "arm", "code"))
        for key, n in sorted(stats.counts.items()):
            requests.add_metric(key, n)
        latency = HistogramMetricFamily(REQUEST_LATENCY, "Time to answer an HTTP request", labels=("route", "arm"))
        for key, hist in sorted(stats.latency.items()):
            cumulative, running = [], 0.0
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), hist[:-1], strict=True):
                running += n
                cumulative.append((_le(bound), running))
            latency.add_metric(key, cumulative, hist[-1])
        yield requests
        yield latency


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Metrics:
    """Every TitanRay metric in one registry (one per process that serves them).

    ``http`` counts the requests this process answered; ``shown`` is what the exposition renders
    (``http`` itself, or the cluster-wide sum a ``MetricsHub`` answered: ``show``).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http = RequestStats()
        self.shown = self.http
        r.register(_RequestCollector(self))
        self.fills = Counter(_base(FILLS_TOTAL), "Fills booked by the ledger", ("model",), registry=r)
        self.rejections = Counter(_base(REJECTIONS_TOTAL), "Orders rejected by the ledger, by reason code",
                                  ("model", "reason"), registry=r)
        self.equity = Gauge(EQUITY, "Latest equity of each model's virtual portfolio", ("model",), registry=r)
        self.actor_restarts = Counter(_base(ACTOR_RESTARTS_TOTAL), "Actor restarts seen by the watchdog",
                                      ("actor",), registry=r)
        self.bars = Counter(_base(BARS_TOTAL), "Bars (timestamps) replayed by the arena", registry=r)
        self.drift_psi = Gauge(DRIFT_PSI, "PSI of a live feature against the served model's training window",
                               ("model", "feature"), registry=r)
        self.drift_ks = Gauge(DRIFT_KS_PVALUE, "KS p-value of a live feature against the training window",
                              ("model", "feature"), registry=r)
        self.prediction_psi = Gauge(PREDICTION_PSI, "PSI of the served model's live scores", ("model",), registry=r)
        self.live_sharpe = Gauge(LIVE_SHARPE, "Rolling live Sharpe of the champion on the feed", ("model",), registry=r)
        self.validation_sharpe = Gauge(VALIDATION_SHARPE, "The champion's registered validation Sharpe",
                                       ("model",), registry=r)
        self.model_version = Gauge(MODEL_VERSION, "The registry version an alias names", ("model", "alias"),
                                   registry=r)
        self.drift_alerts = Counter(_base(DRIFT_ALERTS_TOTAL), "Drift and decay alerts raised", ("model",),
                                    registry=r)
        self._seen: dict[tuple[str, tuple[str, ...]], float] = {}

    def observe_request(self, route: str, arm: str | None, code: int, seconds: float) -> None:
        self.http.observe(route, arm, code, seconds)

    def show(self, stats: RequestStats) -> None:
        """Render ``stats`` (e.g. every replica's sum) instead of this process's own counts."""
        self.shown = stats

    def sync_arena(self, stats: Mapping[str, Any]) -> None:
        """Bring the arena metrics up to ``stats`` (``ArenaService.stats()``: totals so far).

        ``stats`` = {"bars": int, "fills": {model: n}, "rejections": {model: {reason: n}},
        "equity": {model: float}, "restarts": {actor: n}}; missing keys leave metrics alone.
        """
        if "bars" in stats:
            self._advance(self.bars, (), float(stats["bars"]))
        for model, n in stats.get("fills", {}).items():
            self._advance(self.fills, (model,), float(n))
        for model, by_reason in stats.get("rejections", {}).items():
            for reason, n in by_reason.items():
                self._advance(self.rejections, (model, reason), float(n))
        for actor, n in stats.get("restarts", {}).items():
            self._advance(self.actor_restarts, (actor,), float(n))
        for model, value in stats.get("equity", {}).items():
            if value is not None:
                self.equity.labels(model).set(float(value))

    def sync_lifecycle(self, served: str, state: Mapping[str, Any]) -> None:
        """Bring a served model's lifecycle gauges up to its controller's ``state()``. A state without
        figures (a controller that did not answer) changes nothing: a gap is not a reset."""
        if "alerts_total" not in state:
            return
        drift = state.get("drift") or {}
        for col in drift.get("features", []):
            _set(self.drift_psi, (served, col["name"]), col.get("psi"))
            _set(self.drift_ks, (served, col["name"]), col.get("p_value"))
        _set(self.prediction_psi, (served,), (drift.get("prediction") or {}).get("psi"))
        perf = state.get("performance") or {}
        _set(self.live_sharpe, (served,), perf.get("live_sharpe"))
        _set(self.validation_sharpe, (served,), perf.get("validation_sharpe"))
        for alias in ("champion", "challenger"):
            version = (state.get(alias) or {}).get("version")
            if version is None:
                if (served, alias) in _labels(self.model_version):
                    self.model_version.remove(served, alias)
            else:
                self.model_version.labels(served, alias).set(float(version))
        self._advance(self.drift_alerts, (served,), float(state.get("alerts_total", 0)))

    def _advance(self, counter: Counter, labels: tuple[str, ...], total: float) -> None:
        key = (counter._name, labels)
        last = self._seen.get(key, 0.0)
        if total < last:  # a new run counts from zero again: a counter reset, as after a restart
            if labels:
                counter.remove(*labels)
            else:
                counter._value.set(0.0)  # an unlabelled counter cannot be removed; zero it
            last = 0.0
        if total > last:
            (counter.labels(*labels) if labels else counter).inc(total - last)
        self._seen[key] = total

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes (``Content-Type: CONTENT_TYPE``)."""
        return generate_latest(self.registry)


def _set(gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
    """The gauge's sample for ``labels`` at ``value``; removed when there is no value (not kept stale)."""
    if value is not None:
        gauge.labels(*labels).set(float(value))
    elif labels in _labels(gauge):
        gauge.remove(*labels)


def _labels(gauge: Gauge) -> set[tuple[str, ...]]:
    return set(gauge._metrics)


# --- one sum over every replica -------------------------------------------------------------------

HUB_ACTOR = "titan-ray-metrics"
PUSH_INTERVAL_S = 1.0


class _Hub:
    """The latest cumulative snapshot of every replica that answered HTTP; their sum on demand."""

    def __init__(self) -> None:
        self._snapshots: dict[str, dict[str, list]] = {}

    def push(self, replica: str, snapshot: dict[str, list]) -> None:
        self._snapshots[replica] = snapshot

    def totals(self) -> dict[str, list]:
        return RequestStats.merge(self._snapshots.values()).snapshot()

    def replicas(self) -> int:
        return len(self._snapshots)


def metrics_hub(namespace: str) -> Any:
    """The cluster's detached ``MetricsHub`` actor: found by name, created by the first caller."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=-1)(_Hub)
    return actor.options(name=HUB_ACTOR, namespace=namespace, lifetime="detached", get_if_exists=True).remote()


class ReplicaMetrics(Metrics):
    """The ``Metrics`` of one Serve replica: its request counts go to the hub about once a second
    (only when they changed), and ``exposition_all`` renders the hub's sum over every replica."""

    def __init__(self, namespace: str) -> None:
        super().__init__()
        self._namespace = namespace
        self._hub: Any = None
        self._replica = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._pushed = -1
        self._task: asyncio.Task | None = None

    def observe_request(self, route: str, arm: str | None, code: int, seconds: float) -> None:
        super().observe_request(route, arm, code, seconds)
        if self._task is None:  # started on the first request, on the loop that answers requests
            self._task = asyncio.get_running_loop().create_task(self._push_forever())

    def _get_hub(self) -> Any:
        if self._hub is None:
            self._hub = metrics_hub(self._namespace)
        return self._hub

    async def flush(self) -> None:
        if self.http.version != self._pushed:
            version = self.http.version
            await self._get_hub().push.remote(self._replica, self.http.snapshot())
            self._pushed = version

    async def _push_forever(self) -> None:
        while True:
            await asyncio.sleep(PUSH_INTERVAL_S)
            try:
                await self.flush()
            except Exception as err:  # noqa: BLE001 - the hub restarts; counts are pushed again next time
                log.warning("could not push request metrics to %s: %s", HUB_ACTOR, err)
                self._hub = None

    async def exposition_all(self) -> bytes:
        """Every replica's request counts (this one's pushed first) with this process's arena metrics."""
        try:
            await self.flush()
            self.show(RequestStats.merge([await self._get_hub().totals.remote()]))
        except Exception as err:  # noqa: BLE001 - a scrape still answers, with this replica's counts
            log.warning("could not read %s, showing this replica's counts only: %s", HUB_ACTOR, err)
            self._hub = None
            self.show(self.http)
        return self.exposition()
