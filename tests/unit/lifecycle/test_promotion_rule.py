"""The promotion rule on paired per-bar returns: when a look is due, and what each check decides."""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.lifecycle.rule import Judgement, judge
from titan_ray.lifecycle.settings import PromotionSettings
from titan_ray.metrics.performance import sharpe

PERIODS = 252.0
RULE = PromotionSettings(min_bars=100, max_looks=3, n_resamples=300)
FAST = 10.0  # a p99 latency well within the budget (ms)


def _paired(n: int, *, edge: float, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Champion and challenger on one market: common noise, own noise of the same size, and the
    challenger ``edge`` more per bar."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0, 0.002, n)
    champion = market + rng.normal(0.0, 0.0005, n)
    challenger = market + rng.normal(0.0, 0.0005, n) + edge
    return champion, challenger


def _depth(r: np.ndarray) -> float:
    """The deepest fall below a running peak of the equity path 1, 1+r0, ... as a positive fraction."""
    wealth = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    return float(np.max(1.0 - wealth / np.maximum.accumulate(wealth)))


def _deep_loss() -> tuple[np.ndarray, np.ndarray]:
    """A challenger with a far better Sharpe ratio than the champion's, but one loss of 4% that digs a
    deeper drawdown than any of the champion's."""
    rng = np.random.default_rng(11)
    champion = rng.normal(0.0, 0.002, 300)
    challenger = champion + 0.002
    challenger[150] = -0.04
    return champion, challenger


def test_no_look_before_min_bars():
    champion, challenger = _paired(RULE.min_bars - 1, edge=0.001)
    j = judge(champion, challenger, looks_done=0, latency_p99_ms=FAST, periods=PERIODS, rule=RULE)
    assert j == Judgement("wait", 0)
    assert j.checks == {} and j.evidence == {} and j.reasons == []


def test_the_shorter_series_decides_when_a_look_is_due():
    champion, challenger = _paired(3 * RULE.min_bars, edge=0.001)
    j = judge(champion, challenger[: RULE.min_bars - 1], looks_done=0, latency_p99_ms=FAST, periods=PERIODS,
              rule=RULE)
    assert j.verdict == "wait" and j.look == 0
    j = judge(champion, challenger[: RULE.min_bars + 7], looks_done=0, latency_p99_ms=FAST, periods=PERIODS,
              rule=RULE)
    assert j.look == 1 and j.evidence["n_bars"] == RULE.min_bars + 7


def test_no_second_look_until_the_next_min_bars():
    champion, challenger = _paired(2 * RULE.min_bars, edge=0.001)
    between = judge(champion[:-1], challenger[:-1], looks_done=1, latency_p99_ms=FAST, periods=PERIODS, rule=RULE)
    assert between == Judgement("wait", 1)
    due = judge(champion, challenger, looks_done=1, latency_p99_ms=FAST, periods=PERIODS, rule=RULE)
    assert due.look == 2 and due.verdict != "wait"


def test_no_look_after_the_last():
    champion, challenger = _paired(10 * RULE.min_bars, edge=0.001)
    j = judge(champion, challenger, looks_done=RULE.max_looks, latency_p99_ms=FAST, periods=PERIODS, rule=RULE)
    assert j == Judgement("wait", RULE.max_looks)


def test_a_clearly_better_challenger_is_promoted_with_its_evidence():
    n = 3 * RULE.min_bars + 17
    champion, challenger = _paired(n, edge=0.001)
    assert np.std(challenger) == pytest.approx(np.std(champion), rel=0.1)  # same vol, higher mean
    j = judge(champion, challenger, looks_done=1, latency_p99_ms=FAST, periods=PERIODS, rule=RULE)
    assert j.verdict == "promote" and j.look == 2
    assert j.checks == {"sample": True, "significance": True, "drawdown": True, "latency": True}
    assert j.reasons == []
    ev = j.evidence
    assert ev["look"] == 2 and ev["max_looks"] == RULE.max_looks and ev["n_bars"] == n
    assert ev["checks"] == j.checks
    assert ev["alpha"] == RULE.alpha and ev["level"] == pytest.approx(RULE.alpha / RULE.max_looks)
    assert 0.0 < ev["p_value"] < ev["level"]
    assert ev["sharpe_champion"] == pytest.approx(sharpe(champion, PERIODS), rel=1e-12)
    assert ev["sharpe_challenger"] == pytest.approx(sharpe(challenger, PERIODS), rel=1e-12)
    assert ev["sharpe_challenger"] > ev["sharpe_champion"]
    assert ev["sharpe_difference"] == pytest.approx(ev["sharpe_challenger"] - ev["sharpe_champion"], rel=1e-12)
    assert ev["ci"][0] < ev["ci"][1]
    assert ev["n_resamples"] == RULE.n_resamples and ev["block"] >= 1
    assert ev["max_drawdown_champion"] == pytest.approx(_depth(champion), rel=1e-9)
    assert ev["max_drawdown_challenger"] == pytest.approx(_depth(challenger), rel=1e-9)
    assert 0.0 < ev["max_drawdown_challenger"] < 1.0 and 0.0 < ev["max_drawdown_champion"] < 1.0
    assert ev["latency_p99_ms"] == FAST and ev["latency_budget_ms"] == RULE.latency_p99_ms


def test_the_evidence_is_the_first_bars_both_traded():
    champion, challenger = _paired(2 * RULE.min_bars, edge=0.001)
    j = judge(champion, challenger[:150], looks_done=0, latency_p99_ms=FAST, periods=PERIODS, rule=RULE)
    assert j.evidence["n_bars"] == 150
    assert j.evidence["sharpe_champion"] == pytest.approx(sharpe(champion[:150], PERIODS), rel=1e-12)


@pytest.mark.parametrize("looks_done", range(RULE.max_looks - 1))
def test_an_identical_challenger_is_kept_on_the_early_looks(looks_done):
    champion, _ = _paired(RULE.max_looks * RULE.min_bars, edge=0.0)
    j = judge(champion, champion.copy(), looks_done=looks_done, latency_p99_ms=FAST, periods=PERIODS, rule=RULE)
    assert j.verdict == "keep" and j.look == looks_done + 1
    assert j.reasons == ["significance"]
    assert j.evidence["sharpe_difference"] == 0.0 and j.evidence["p_value"] >= j.evidence["level"]


def test_an_identical_challenger_is_rejected_on_the_last_look():
    champion, _ = _paired(RULE.max_looks * RULE.min_bars, edge=0.0)
    j = judge(champion, champion.copy(), looks_done=RULE.max_looks - 1, latency_p99_ms=FAST, periods=PERIODS,
              rule=RULE)
    assert j.verdict == "reject" and j.look == RULE.max_looks
    assert j.reasons == ["significance"]


def test_a_deeper_drawdown_fails_only_the_drawdown_check():
    champion, challenger = _deep_loss()
    j = judge(champion, challenger, looks_done=0, latency_p99_ms=FAST, periods=PERIODS, rule=RULE)
    ev = j.evidence
    assert ev["sharpe_challenger"] > ev["sharpe_champion"]
    assert ev["max_drawdown_challenger"] == pytest.approx(0.04)
    assert ev["max_drawdown_challenger"] > ev["max_drawdown_champion"]
    assert j.verdict == "keep" and j.reasons == ["drawdown"]


def test_max_drawdown_worse_allows_a_slightly_deeper_drawdown():
    champion, challenger = _deep_loss()
    gap = _depth(challenger) - _depth(champion)
    assert 0.01 < gap < 0.03
    for worse, verdict, reasons in ((gap + 0.002, "promote", []), (gap, "promote", []),
                                    (gap - 0.002, "keep", ["drawdown"])):
        rule = RULE.model_copy(update={"max_drawdown_worse": worse})
        j = judge(champion, challenger, looks_done=0, latency_p99_ms=FAST, periods=PERIODS, rule=rule)
        assert (j.verdict, j.reasons) == (verdict, reasons), worse
        assert j.evidence["max_drawdown_worse"] == worse


@pytest.mark.parametrize("latency", [None, RULE.latency_p99_ms + 0.1, 10 * RULE.latency_p99_ms])
def test_an_unknown_or_slow_latency_fails_only_the_latency_check(latency):
    champion, challenger = _paired(RULE.min_bars, edge=0.001)
    j = judge(champion, challenger, looks_done=0, latency_p99_ms=latency, periods=PERIODS, rule=RULE)
    assert j.verdict == "keep" and j.reasons == ["latency"]
    assert j.evidence["latency_p99_ms"] == latency


def test_a_latency_at_the_budget_passes():
    champion, challenger = _paired(RULE.min_bars, edge=0.001)
    j = judge(champion, challenger, looks_done=0, latency_p99_ms=RULE.latency_p99_ms, periods=PERIODS, rule=RULE)
    assert j.verdict == "promote"


def test_the_bootstrap_is_seeded():
    # A small edge, so that the p-value is not the floor 1 / (1 + B) that every seed gives.
    champion, challenger = _paired(RULE.min_bars, edge=0.0002, seed=2)
    kw = {"looks_done": 0, "latency_p99_ms": FAST, "periods": PERIODS, "rule": RULE}
    first = judge(champion, challenger, seed=3, **kw)
    assert judge(champion.copy(), challenger.copy(), seed=3, **kw) == first
    p = first.evidence["p_value"]
    assert 1.0 / (1 + RULE.n_resamples) < p < 1.0
    assert {judge(champion, challenger, seed=s, **kw).evidence["p_value"] for s in (4, 5, 6)} - {p}
