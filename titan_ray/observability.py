"""Prometheus metrics of TitanRay: the names are a contract (the Grafana dashboard uses them).

``Metrics`` owns one ``prometheus_client`` registry with every TitanRay metric:

    titan_ray_requests_total{route,arm,code}          counter: HTTP requests answered
    titan_ray_request_latency_seconds{route,arm}      histogram: time to answer them
    titan_ray_fills_total{model}                      counter: fills booked by the ledger
    titan_ray_rejections_total{model,reason}          counter: orders rejected, by reason code
    titan_ray_equity{model}                           gauge: each model's latest equity
    titan_ray_actor_restarts_total{actor}             counter: restarts the watchdog saw
    titan_ray_bars_total                              counter: bars (timestamps) replayed

``route`` is the route's template (``/v1/predict/{model}``, never the raw path, so a scan of
random URLs cannot blow up the label set); ``arm`` is the experiment arm that answered, or ``-``.

The HTTP metrics are counted where requests are answered (the Serve ingress). The arena metrics
are totals kept by the arena: ``sync_arena`` turns each new reading into counter increments, and a
reading below the last one (a new run started) resets the counter, the way Prometheus expects
from a restarted process. Each Serve replica keeps its own registry; Prometheus sums replicas when
each is scraped (Ray's own ``ray_serve_*`` metrics cover the proxy side).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REQUESTS_TOTAL = "titan_ray_requests_total"
REQUEST_LATENCY = "titan_ray_request_latency_seconds"
FILLS_TOTAL = "titan_ray_fills_total"
REJECTIONS_TOTAL = "titan_ray_rejections_total"
EQUITY = "titan_ray_equity"
ACTOR_RESTARTS_TOTAL = "titan_ray_actor_restarts_total"
BARS_TOTAL = "titan_ray_bars_total"

METRIC_NAMES: tuple[str, ...] = (
    REQUESTS_TOTAL,
    REQUEST_LATENCY,
    FILLS_TOTAL,
    REJECTIONS_TOTAL,
    EQUITY,
    ACTOR_RESTARTS_TOTAL,
    BARS_TOTAL,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
NO_ARM = "-"

# Predictions answer in about a millisecond, the arena's routes in tens: buckets from 0.5 ms to 5 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _base(name: str) -> str:
    """prometheus_client adds ``_total`` to counters itself: it wants the name without it."""
    return name.removesuffix("_total")


class Metrics:
    """Every TitanRay metric in one registry (one per process that serves them)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(_base(REQUESTS_TOTAL), "HTTP requests answered", ("route", "arm", "code"),
                                registry=r)
        self.latency = Histogram(REQUEST_LATENCY, "Time to answer an HTTP request", ("route", "arm"),
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.fills = Counter(_base(FILLS_TOTAL), "Fills booked by the ledger", ("model",), registry=r)
        self.rejections = Counter(_base(REJECTIONS_TOTAL), "Orders rejected by the ledger, by reason code",
                                  ("model", "reason"), registry=r)
        self.equity = Gauge(EQUITY, "Latest equity of each model's virtual portfolio", ("model",), registry=r)
        self.actor_restarts = Counter(_base(ACTOR_RESTARTS_TOTAL), "Actor restarts seen by the watchdog",
                                      ("actor",), registry=r)
        self.bars = Counter(_base(BARS_TOTAL), "Bars (timestamps) replayed by the arena", registry=r)
        self._seen: dict[tuple[str, tuple[str, ...]], float] = {}

    def observe_request(self, route: str, arm: str | None, code: int, seconds: float) -> None:
        arm = arm or NO_ARM
        self.requests.labels(route, arm, str(code)).inc()
        self.latency.labels(route, arm).observe(seconds)

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
