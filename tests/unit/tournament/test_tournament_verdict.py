"""The verdict over arenas: distributions, win rates, ranks and the words, from hand-made summaries."""

from __future__ import annotations

import numpy as np
import pytest

from titan_ray.tournament.verdict import score_arena, verdict


def _row(rank, sharpe, beats_sharpe, dsr, beats_test=None, origin="a"):
    return {"origin": origin, "rank": rank, "sharpe": sharpe, "sortino": sharpe, "calmar": 1.0, "total_return": 0.1,
            "max_drawdown": -0.1 * rank, "profit_factor": 1.5, "win_rate": 0.5,
            "beats_benchmark_sharpe": beats_sharpe, "beats_benchmark_test": beats_test,
            "sr_per_period": 0.01, "skew": 0.0, "kurtosis": 3.0, "n_returns": 100, "psr": 0.9, "dsr": dsr, "sr0": 0.1}


def _arena(i, models):
    return {"id": f"a{i}", "market": f"m{i % 2}", "seed": i, "window": 0, "benchmark": "hold", "n_trials": 2,
            "models": models}


SUMMARIES = [
    _arena(0, {"good": _row(1, 2.0, True, 0.99), "luck": _row(2, 1.5, True, 0.40), "hold": _row(3, 1.0, None, None)}),
    _arena(1, {"good": _row(1, 3.0, True, 0.97), "luck": _row(3, 0.2, False, 0.10), "hold": _row(2, 0.5, None, None)}),
    _arena(2, {"good": _row(1, 1.0, True, 0.96), "luck": _row(2, 0.9, True, 0.96), "hold": _row(3, 0.1, None, None)}),
]


def test_the_verdict_reads_every_arena():
    v = verdict(SUMMARIES)
    assert v["ranking"] == ["good", "luck", "hold"]  # by median Sharpe
    good, luck, hold = (v["models"][n] for n in ("good", "luck", "hold"))
    assert good["metrics"]["sharpe"] == {"median": 2.0, "q25": 1.5, "q75": 2.5, "worst": 1.0, "n": 3}
    assert good["verdict"] == "robust" and good["pass_all"] and good["win_rate_vs_benchmark"] == 1.0
    assert luck["verdict"] == "mixed" and not luck["pass_all"] and luck["win_rate_vs_benchmark"] == pytest.approx(2 / 3)
    assert luck["dsr_significant_share"] == pytest.approx(1 / 3) and luck["mean_rank"] == pytest.approx(7 / 3)
    assert hold["verdict"] == "benchmark" and hold["dsr"] is None and hold["win_rate_vs_benchmark"] is None
    assert good["metrics"]["max_drawdown"]["worst"] == pytest.approx(-0.1)
    assert v["markets"] == ["m0", "m1"] and v["n_arenas"] == 3
    assert [a["ranks"]["luck"] for a in v["arenas"]] == [2, 3, 2]


def test_a_model_significant_nowhere_is_noise_even_when_it_beats_the_benchmark_everywhere():
    rows = [_arena(i, {"lucky": _row(1, 2.0, True, 0.5), "hold": _row(2, 1.0, None, None)}) for i in range(4)]
    lucky = verdict(rows)["models"]["lucky"]
    assert lucky["pass_all"] and lucky["verdict"] == "noise"


def test_arena_scores_deflate_by_the_number_of_models_tried():
    rng = np.random.default_rng(5)
    n = 2000
    returns = {f"r{i}": rng.normal(0, 0.01, n) for i in range(30)}
    returns["hold"] = rng.normal(0, 0.01, n)
    sr = {k: v.mean() / v.std(ddof=1) for k, v in returns.items()}
    board = [{"model": k, "sharpe": float(s) * 100, "benchmark": "hold", "beats_benchmark": False}
             for k, s in sorted(sr.items(), key=lambda kv: -kv[1])]
    s = score_arena({"id": "x", "market": "m", "seed": 1, "window": 0}, board, returns, {})
    best = board[0]["model"] if board[0]["model"] != "hold" else board[1]["model"]
    assert s["n_trials"] == 30 and s["models"][best]["rank"] in (1, 2)
    assert s["models"][best]["psr"] > s["models"][best]["dsr"]  # deflation lowers it
    assert s["models"][best]["dsr"] < 0.95 and s["models"]["hold"]["dsr"] is None
    assert s["models"][best]["sr0"] > 0
