"""A/B experiments without Ray: arm choice, sticky keys, per-arm statistics, the arms' comparison.

``ExperimentState`` is everything one experiment's router replica knows:

- ``choose(key)`` picks the arm that answers a request. With a client key the choice is a pure
  function of (experiment, key, weights): the key is hashed (SHA-256, the same in every process)
  to a point u in [0, 1), and u falls into one arm's slice of the cumulative weights, so the same
  key gets the same arm for as long as the weights stay. Without a key u comes from the state's
  seeded generator.
- ``shadows()`` are the shadow arms a request is copied to (each with its ``mirror`` share).
- ``record(arm, seconds, ok)`` keeps per-arm counts and the latest latencies (a ring buffer) for
  p50/p90/p99; shadow answers are compared with the answered arm's (``record_shadow``), and
  copies a shadow was too far behind to take are counted (``drop_shadow``).
- ``set_weights`` replaces the weights (``reconfigure`` from ``user_config``, or a PUT).

``compare_arms`` puts the arms' trading records side by side (from the live arena, where each arm's
model competes) and tests each arm's Sharpe ratio against the control arm's with the arena's
paired stationary bootstrap (``titan_ray.metrics.significance``).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from titan_ray.metrics.significance import sharpe_difference_test
from titan_ray.serve.settings import ExperimentSpec, normalised

LATENCY_WINDOW = 10_000  # latencies kept per arm for the percentiles
SHADOW_LOG = 200  # shadow comparisons kept for GET /v1/experiments/{name}


def sticky_point(experiment: str, key: str) -> float:
    """A point in [0, 1) for a client key: the same in every process and on every run."""
    digest = hashlib.sha256(f"{experiment}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def pick(weights: dict[str, float], u: float) -> str:
    """The arm whose slice of the cumulative (normalised) weights holds ``u``."""
    acc = 0.0
    last = None
    for arm, w in weights.items():
        if w <= 0:
            continue
        acc += w
        last = arm
        if u < acc:
            return arm
    assert last is not None, "weights must have a positive entry"
    return last  # u within float rounding of 1


@dataclass
class ArmStats:
    requests: int = 0
    errors: int = 0
    dropped: int = 0  # shadow copies not sent: the shadow was too far behind
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def record(self, seconds: float, ok: bool) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        self.latencies.append(seconds)

    def summary(self) -> dict[str, Any]:
        lat = np.fromiter(self.latencies, dtype=np.float64) * 1000.0
        pct = (dict(zip(("p50", "p90", "p99"), (float(x) for x in np.percentile(lat, [50, 90, 99])), strict=True))
               if len(lat) else {"p50": None, "p90": None, "p99": None})
        return {"requests": self.requests, "errors": self.errors, "dropped": self.dropped, "latency_ms": pct}


class ExperimentState:
    def __init__(self, spec: ExperimentSpec, *, clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.live = [a.name for a in spec.arms if not a.shadow]
        self._shadow = {a.name: a.mirror for a in spec.arms if a.shadow}
        self.weights = normalised(spec.weights(), self.live)
        self.weights_source = "config"
        self.weights_changed_at = clock()
        self._clock = clock
        self._rng = np.random.default_rng(spec.seed)
        self.stats = {a.name: ArmStats() for a in spec.arms}
        self.shadow_log: deque[dict[str, Any]] = deque(maxlen=SHADOW_LOG)
        self._agree = {name: [0, 0] for name in self._shadow}  # [same weights, compared]

    def set_weights(self, weights: dict[str, float], source: str) -> dict[str, float]:
        self.weights = normalised(weights, self.live)
        self.weights_source = source
        self.weights_changed_at = self._clock()
        return dict(self.weights)

    def choose(self, key: str | None) -> str:
        u = sticky_point(self.spec.name, key) if key else float(self._rng.random())
        return pick(self.weights, u)

    def shadows(self) -> list[str]:
        return [name for name, share in self._shadow.items() if share >= 1 or self._rng.random() < share]

    def record(self, arm: str, seconds: float, ok: bool) -> None:
        self.stats[arm].record(seconds, ok)

    def drop_shadow(self, arm: str) -> None:
        self.stats[arm].dropped += 1

    def record_shadow(self, arm: str, answered_arm: str, shadow: dict[str, Any] | None,
                      answered: dict[str, Any] | None) -> dict[str, Any]:
        """Compare a shadow's answer with the answered arm's; the log entry (also kept)."""
        entry: dict[str, Any] = {"at": self._clock(), "shadow": arm, "answered_by": answered_arm,
                                 **compare_answers(shadow, answered)}
        if entry["compared"]:
            agree = self._agree[arm]
            agree[0] += int(entry["same_weights"])
            agree[1] += 1
        self.shadow_log.append(entry)
        return entry

    def describe(self) -> dict[str, Any]:
        arms = []
        for a in self.spec.arms:
            row: dict[str, Any] = {"name": a.name, "model": a.model, "shadow": a.shadow,
                                   "weight": 0.0 if a.shadow else self.weights[a.name], **self.stats[a.name].summary()}
            if a.shadow:
                same, n = self._agree[a.name]
                row["mirror"] = a.mirror
                row["agreement"] = {"compared": n, "same_weights": same, "rate": same / n if n else None}
            arms.append(row)
        return {"name": self.spec.name, "arms": arms, "weights_source": self.weights_source,
                "weights_changed_at": self.weights_changed_at, "shadow_log": list(self.shadow_log)[-20:]}


def compare_answers(shadow: dict[str, Any] | None, answered: dict[str, Any] | None) -> dict[str, Any]:
    """A shadow's answer against the one given: the same target weights, and how far apart."""
    if shadow is None or answered is None or "predictions" not in shadow or "predictions" not in answered:
        return {"compared": False}
    mine = {p["symbol"]: p["target_weight"] for p in shadow["predictions"]}
    theirs = {p["symbol"]: p["target_weight"] for p in answered["predictions"]}
    diffs = [abs(mine[s] - theirs[s]) for s in mine if s in theirs]
    same = set(mine) == set(theirs) and all(d < 1e-12 for d in diffs)  # other symbols: not the same answer
    return {"compared": True, "same_weights": same,
            "max_weight_difference": max(diffs, default=0.0), "shadow_weights": mine, "answered_weights": theirs}


class ShadowTally:
    """A shadow version's answers to copies of live requests: counts, latencies, agreement with the
    answers given (a model app's challenger, ``titan_ray.serve.deployments.ModelServer``)."""

    def __init__(self) -> None:
        self.stats = ArmStats()
        self.same = 0
        self.compared = 0
        self.max_weight_difference = 0.0

    def record(self, seconds: float, ok: bool, shadow: dict[str, Any] | None, answered: dict[str, Any] | None) -> None:
        self.stats.record(seconds, ok)
        c = compare_answers(shadow, answered)
        if c["compared"]:
            self.compared += 1
            self.same += int(c["same_weights"])
            self.max_weight_difference = max(self.max_weight_difference, c["max_weight_difference"])

    def summary(self) -> dict[str, Any]:
        return {**self.stats.summary(), "agreement": {
            "compared": self.compared, "same_weights": self.same,
            "rate": self.same / self.compared if self.compared else None,
            "max_weight_difference": self.max_weight_difference}}


def compare_arms(
    returns: dict[str, np.ndarray],
    periods: float,
    control: str,
    *,
    summaries: dict[str, dict[str, Any]] | None = None,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Each arm's Sharpe ratio against the control arm's, on the same bars (paired bootstrap)."""
    tests = []
    base = returns.get(control)
    for arm, r in returns.items():
        if arm == control or base is None:
            continue
        n = min(len(r), len(base))
        entry: dict[str, Any] = {"arm": arm, "vs": control, "n_bars": n, "difference": None, "p_value": None,
                                 "ci": None, "significant": False}
        if n >= 3:
            rng = np.random.default_rng([seed, int.from_bytes(hashlib.sha256(arm.encode()).digest()[:4], "big")])
            t = sharpe_difference_test(r[-n:], base[-n:], periods, n_resamples=n_resamples, rng=rng)
            if math.isfinite(t.p_value):
                entry.update(difference=_num(t.difference), p_value=float(t.p_value),
                             ci=[_num(t.ci_low), _num(t.ci_high)], significant=bool(t.p_value < alpha))
        else:
            entry["reason"] = "fewer than 3 bars traded by both arms so far"
        tests.append(entry)
    return {
        "control": control,
        "test": "paired stationary bootstrap of the annualised Sharpe difference (H0: arm <= control, one-sided)",
        "alpha": alpha,
        "arms": summaries or {},
        "tests": tests,
    }


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
