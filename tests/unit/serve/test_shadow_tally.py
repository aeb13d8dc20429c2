"""A shadow version's answers against the ones given, and a served model's lifecycle as Prometheus gauges."""

from __future__ import annotations

from typing import Any

import pytest
from prom import samples

from titan_ray.observability import Metrics
from titan_ray.serve.experiments import ShadowTally, compare_answers


def answer(**weights: float) -> dict[str, Any]:
    return {"model": "lgbm", "predictions": [{"symbol": s, "target_weight": w, "score": 0.0}
                                             for s, w in weights.items()]}


def _samples(m: Metrics) -> dict[tuple[str, tuple], float]:
    return samples(m.exposition().decode())


def test_the_same_weights_agree():
    c = compare_answers(answer(AAA=0.25, BBB=-0.1), answer(BBB=-0.1, AAA=0.25))
    assert c["compared"] is True and c["same_weights"] is True
    assert c["max_weight_difference"] == 0.0
    assert c["shadow_weights"] == c["answered_weights"] == {"AAA": 0.25, "BBB": -0.1}


def test_different_weights_and_the_largest_difference():
    c = compare_answers(answer(AAA=0.25, BBB=-0.1, CCC=0.0), answer(AAA=0.2, BBB=0.3, CCC=0.0))
    assert c["compared"] is True and c["same_weights"] is False
    assert c["max_weight_difference"] == pytest.approx(0.4)
    assert c["shadow_weights"]["BBB"] == -0.1 and c["answered_weights"]["BBB"] == 0.3


@pytest.mark.parametrize(("shadow", "answered"), [
    (None, answer(AAA=0.1)),
    (answer(AAA=0.1), None),
    ({"detail": "model failed"}, answer(AAA=0.1)),
    (answer(AAA=0.1), {"detail": "bad request"}),
])
def test_a_missing_answer_is_not_compared(shadow, answered):
    assert compare_answers(shadow, answered) == {"compared": False}


def test_the_tally_before_any_comparison():
    tally = ShadowTally()
    assert tally.summary()["agreement"] == {"compared": 0, "same_weights": 0, "rate": None,
                                            "max_weight_difference": 0.0}
    tally.record(0.004, False, None, answer(AAA=0.1))  # the shadow failed: an error, nothing to compare
    s = tally.summary()
    assert s["requests"] == 1 and s["errors"] == 1
    assert s["agreement"]["compared"] == 0 and s["agreement"]["rate"] is None


def test_the_tally_counts_requests_errors_and_agreement():
    tally = ShadowTally()
    tally.record(0.001, True, answer(AAA=0.1, BBB=0.2), answer(AAA=0.1, BBB=0.2))
    tally.record(0.002, True, answer(AAA=0.1, BBB=0.5), answer(AAA=0.1, BBB=0.2))
    tally.record(0.003, True, answer(AAA=0.15, BBB=0.2), answer(AAA=0.1, BBB=0.2))
    tally.record(0.010, False, None, answer(AAA=0.1, BBB=0.2))
    tally.record(0.001, True, answer(AAA=0.0, BBB=0.0), answer(AAA=0.0, BBB=0.0))
    s = tally.summary()
    assert s["requests"] == 5 and s["errors"] == 1 and s["dropped"] == 0
    assert s["agreement"]["compared"] == 4 and s["agreement"]["same_weights"] == 2
    assert s["agreement"]["rate"] == 0.5
    assert s["agreement"]["max_weight_difference"] == pytest.approx(0.3)
    assert s["latency_ms"]["p50"] == pytest.approx(2.0)
    assert s["latency_ms"]["p99"] == pytest.approx(9.72)


def _state(*, challenger: int | None, alerts: int, psi: float = 0.31, live: float | None = 1.2) -> dict[str, Any]:
    """Shaped like ``LifecycleController.state()``."""
    return {
        "model": "lgbm", "served": "lgbm", "status": "running", "bar": 2100, "bars": 5000,
        "champion": {"version": 3, "since_bar": 1500},
        "challenger": None if challenger is None else {"version": challenger, "since_bar": 1800, "bars": 300,
                                                       "looks": 1, "verdict": "keep", "evidence": None},
        "drift": {"at_bar": 2100, "window_bars": 500, "reference": "training window",
                  "features": [{"name": "ret_1", "psi": psi, "ks": 0.2, "p_value": 1e-5, "n_live": 500},
                               {"name": "vol_20", "psi": 0.02, "ks": 0.03, "p_value": 0.6, "n_live": 500},
                               {"name": "sparse", "psi": None, "ks": None, "p_value": None, "n_live": 3}],
                  "ignored": ["tod_sin", "tod_cos"], "drifted": ["ret_1"], "share": 0.5, "max_psi": psi,
                  "prediction": {"name": "score", "psi": 0.12, "ks": 0.1, "p_value": 0.01, "n_live": 500}},
        "performance": {"live_sharpe": live, "validation_sharpe": 1.8, "standard_error": 0.4, "window_bars": 500,
                        "decayed": False},
        "alerts_total": alerts, "alerts": [], "retraining": {"status": "idle"},
    }


def test_sync_lifecycle_sets_the_gauges():
    m = Metrics()
    m.sync_lifecycle("lgbm", _state(challenger=4, alerts=2))
    s = _samples(m)
    model = ("model", "lgbm")
    assert s[("titan_ray_drift_psi", (("feature", "ret_1"), model))] == pytest.approx(0.31)
    assert s[("titan_ray_drift_psi", (("feature", "vol_20"), model))] == pytest.approx(0.02)
    assert s[("titan_ray_drift_ks_pvalue", (("feature", "ret_1"), model))] == pytest.approx(1e-5)
    assert s[("titan_ray_drift_ks_pvalue", (("feature", "vol_20"), model))] == pytest.approx(0.6)
    assert ("titan_ray_drift_psi", (("feature", "sparse"), model)) not in s  # too few live values: no figure
    assert ("titan_ray_drift_ks_pvalue", (("feature", "sparse"), model)) not in s
    assert s[("titan_ray_prediction_psi", (model,))] == pytest.approx(0.12)
    assert s[("titan_ray_live_sharpe", (model,))] == pytest.approx(1.2)
    assert s[("titan_ray_validation_sharpe", (model,))] == pytest.approx(1.8)
    assert s[("titan_ray_model_version", (("alias", "champion"), model))] == 3
    assert s[("titan_ray_model_version", (("alias", "challenger"), model))] == 4
    assert s[("titan_ray_drift_alerts_total", (model,))] == 2


def test_a_challenger_that_goes_away_loses_its_version_sample():
    m = Metrics()
    m.sync_lifecycle("lgbm", _state(challenger=4, alerts=0))
    m.sync_lifecycle("lgbm", _state(challenger=None, alerts=0))
    s = _samples(m)
    assert ("titan_ray_model_version", (("alias", "challenger"), ("model", "lgbm"))) not in s
    assert s[("titan_ray_model_version", (("alias", "champion"), ("model", "lgbm")))] == 3
    m.sync_lifecycle("lgbm", _state(challenger=5, alerts=0))
    assert _samples(m)[("titan_ray_model_version", (("alias", "challenger"), ("model", "lgbm")))] == 5


def test_alerts_total_advances_the_counter_by_the_difference():
    m = Metrics()
    key = ("titan_ray_drift_alerts_total", (("model", "lgbm"),))
    m.sync_lifecycle("lgbm", _state(challenger=None, alerts=2))
    m.sync_lifecycle("lgbm", _state(challenger=None, alerts=2))
    assert _samples(m)[key] == 2
    m.sync_lifecycle("lgbm", _state(challenger=None, alerts=5))
    assert _samples(m)[key] == 5
    m.sync_lifecycle("lgbm", _state(challenger=None, alerts=1))  # a new controller counts from zero again
    assert _samples(m)[key] == 1


def test_served_models_are_labelled_apart_and_updated():
    m = Metrics()
    m.sync_lifecycle("lgbm", _state(challenger=None, alerts=1, psi=0.31))
    m.sync_lifecycle("lgbm-b", _state(challenger=None, alerts=4, psi=0.05, live=-0.3))
    m.sync_lifecycle("lgbm", _state(challenger=None, alerts=1, psi=0.4))
    s = _samples(m)
    assert s[("titan_ray_drift_psi", (("feature", "ret_1"), ("model", "lgbm")))] == pytest.approx(0.4)
    assert s[("titan_ray_drift_psi", (("feature", "ret_1"), ("model", "lgbm-b")))] == pytest.approx(0.05)
    assert s[("titan_ray_live_sharpe", (("model", "lgbm-b"),))] == pytest.approx(-0.3)
    assert s[("titan_ray_drift_alerts_total", (("model", "lgbm"),))] == 1
    assert s[("titan_ray_drift_alerts_total", (("model", "lgbm-b"),))] == 4


def test_a_state_before_the_first_check_sets_nothing_but_the_versions():
    m = Metrics()
    m.sync_lifecycle("lgbm", {"status": "running", "champion": {"version": 1}, "challenger": None, "drift": None,
                              "performance": None, "alerts_total": 0})
    names = {name for name, labels in _samples(m) if ("model", "lgbm") in labels}
    assert names == {"titan_ray_model_version"}


def test_answers_for_other_symbols_do_not_agree():
    c = compare_answers(answer(AAA=1.0), answer(BBB=1.0))
    assert c["compared"] is True and c["same_weights"] is False
    assert compare_answers(answer(), answer(AAA=0.0))["same_weights"] is False


def test_a_controller_that_did_not_answer_changes_no_gauge():
    m = Metrics()
    m.sync_lifecycle("lgbm", _state(challenger=4, alerts=3))
    before = _samples(m)
    m.sync_lifecycle("lgbm", {"status": "unreachable", "error": "GetTimeoutError: ..."})
    assert _samples(m) == before  # a gap, not a reset: no version removed, the alert count kept


def test_a_live_sharpe_that_is_gone_is_not_shown_stale():
    m = Metrics()
    m.sync_lifecycle("lgbm", _state(challenger=None, alerts=0, live=1.2))
    m.sync_lifecycle("lgbm", _state(challenger=None, alerts=0, live=None))  # a new champion, no window yet
    assert ("titan_ray_live_sharpe", (("model", "lgbm"),)) not in _samples(m)
