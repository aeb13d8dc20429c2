"""The promotion rule: when a challenger has earned the champion's place, judged on the same live bars.

The champion and the challenger trade the same live bars from the challenger's first one, each in
its own book of one ``Ledger`` (the arena's costs), so their returns are paired. The rule looks at
them every ``min_bars`` bars, at most ``max_looks`` times, and passes when all of these hold:

1. **Sample**: at least ``min_bars`` bars traded by both.
2. **Significance**: the paired stationary bootstrap of the annualised Sharpe difference
   (``titan_ray.metrics.significance.sharpe_difference_test``, H0: challenger <= champion,
   one-sided) rejects at ``alpha / max_looks``: looking again after each ``min_bars`` would
   otherwise raise the chance of a false promotion with every look (Bonferroni over the looks).
3. **Drawdown**: the challenger's maximum drawdown is no deeper than the champion's plus
   ``max_drawdown_worse`` (a fraction of equity).
4. **Latency**: the challenger's p99 latency of one prediction is within ``latency_p99_ms``.

A look that fails leaves the challenger shadowing until the next; the last failed look rejects it.
``judge`` is pure: the controller calls it and records what it answers as the evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from titan_ray.lifecycle.settings import PromotionSettings
from titan_ray.metrics.performance import max_drawdown, sharpe
from titan_ray.metrics.significance import sharpe_difference_test

Verdict = Literal["wait", "promote", "keep", "reject"]


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict  # wait: no look due; promote: every check holds; keep: a look failed, more to come; reject
    look: int  # the look this is (1, 2, ...); 0 before the first
    checks: dict[str, bool] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        return [name for name, ok in self.checks.items() if not ok]


def judge(champion: np.ndarray, challenger: np.ndarray, *, looks_done: int, latency_p99_ms: float | None,
          periods: float, rule: PromotionSettings, seed: int = 0) -> Judgement:
    """The rule on the paired per-bar returns of the champion and the challenger since the challenger's
    first bar (NaN where a book had no return). Look k is due once both traded k * ``min_bars`` bars
    (``looks_done`` looks were taken before); until then the verdict is ``wait``."""
    n = int(min(len(champion), len(challenger)))
    if n // rule.min_bars <= looks_done or looks_done >= rule.max_looks:
        return Judgement("wait", looks_done)
    look = looks_done + 1
    x, y = np.asarray(challenger[:n], dtype=np.float64), np.asarray(champion[:n], dtype=np.float64)
    level = rule.alpha / rule.max_looks
    test = sharpe_difference_test(x, y, periods, n_resamples=rule.n_resamples,
                                  rng=np.random.default_rng([seed, look]))
    dd_chall, dd_champ = -max_drawdown(x), -max_drawdown(y)  # positive fractions
    checks = {
        "sample": n >= rule.min_bars,
        "significance": math.isfinite(test.p_value) and test.p_value < level,
        "drawdown": dd_chall <= dd_champ + rule.max_drawdown_worse + 1e-12,
        "latency": latency_p99_ms is not None and latency_p99_ms <= rule.latency_p99_ms,
    }
    evidence = {
        "look": look, "max_looks": rule.max_looks, "n_bars": n,
        "sharpe_champion": _num(sharpe(y, periods)), "sharpe_challenger": _num(sharpe(x, periods)),
        "sharpe_difference": _num(test.difference), "p_value": _num(test.p_value),
        "ci": [_num(test.ci_low), _num(test.ci_high)], "alpha": rule.alpha, "level": level,
        "test": "paired stationary bootstrap of the annualised Sharpe difference (H0: challenger <= champion)",
        "n_resamples": rule.n_resamples, "block": test.block,
        "max_drawdown_champion": _num(dd_champ), "max_drawdown_challenger": _num(dd_chall),
        "max_drawdown_worse": rule.max_drawdown_worse,
        "latency_p99_ms": _num(latency_p99_ms) if latency_p99_ms is not None else None,
        "latency_budget_ms": rule.latency_p99_ms,
        "checks": dict(checks),
    }
    if all(checks.values()):
        verdict: Verdict = "promote"
    else:
        verdict = "reject" if look >= rule.max_looks else "keep"
    return Judgement(verdict, look, checks, evidence)


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
