"""The Prometheus metrics: fixed names, labels, and arena totals turned into counters."""

from __future__ import annotations

from prom import samples

from titan_ray.observability import METRIC_NAMES, Metrics


def _samples(m: Metrics) -> dict[tuple[str, tuple], float]:
    return samples(m.exposition().decode())


def test_metric_names_are_the_contract():
    assert METRIC_NAMES == (
        "titan_ray_requests_total", "titan_ray_request_latency_seconds", "titan_ray_fills_total",
        "titan_ray_rejections_total", "titan_ray_equity", "titan_ray_actor_restarts_total", "titan_ray_bars_total",
        "titan_ray_drift_psi", "titan_ray_drift_ks_pvalue", "titan_ray_prediction_psi", "titan_ray_live_sharpe",
        "titan_ray_validation_sharpe", "titan_ray_model_version", "titan_ray_drift_alerts_total",
    )
    text = Metrics().exposition().decode()
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in text


def test_requests_and_latency():
    m = Metrics()
    m.observe_request("/v1/predict/{model}", None, 200, 0.002)
    m.observe_request("/v1/experiments/{name}/predict", "control", 200, 0.004)
    m.observe_request("/v1/predict/{model}", None, 422, 0.001)
    s = _samples(m)
    assert s[("titan_ray_requests_total", (("arm", "-"), ("code", "200"), ("route", "/v1/predict/{model}")))] == 1
    assert s[("titan_ray_requests_total", (("arm", "control"), ("code", "200"),
                                           ("route", "/v1/experiments/{name}/predict")))] == 1
    assert s[("titan_ray_request_latency_seconds_count", (("arm", "-"), ("route", "/v1/predict/{model}")))] == 2
    assert s[("titan_ray_request_latency_seconds_bucket", (("arm", "-"), ("le", "0.0025"),
                                                           ("route", "/v1/predict/{model}")))] == 2


def test_arena_totals_become_counters_and_reset_on_a_new_run():
    m = Metrics()
    m.sync_arena({"bars": 10, "fills": {"sma": 3}, "rejections": {"sma": {"MAX_POSITION_EXCEEDED": 2}},
                  "equity": {"sma": 1000.5}, "restarts": {"ledger": 1}})
    m.sync_arena({"bars": 25, "fills": {"sma": 7}, "rejections": {"sma": {"MAX_POSITION_EXCEEDED": 2}},
                  "equity": {"sma": 990.0}, "restarts": {"ledger": 1}})
    s = _samples(m)
    assert s[("titan_ray_bars_total", ())] == 25
    assert s[("titan_ray_fills_total", (("model", "sma"),))] == 7
    assert s[("titan_ray_rejections_total", (("model", "sma"), ("reason", "MAX_POSITION_EXCEEDED")))] == 2
    assert s[("titan_ray_equity", (("model", "sma"),))] == 990.0
    assert s[("titan_ray_actor_restarts_total", (("actor", "ledger"),))] == 1
    m.sync_arena({"bars": 4, "fills": {"sma": 1}})  # a new run: the totals start again
    s = _samples(m)
    assert s[("titan_ray_bars_total", ())] == 4 and s[("titan_ray_fills_total", (("model", "sma"),))] == 1


def test_replicas_counts_add_up_in_the_hub_and_render_like_one_registry():
    from titan_ray.observability import LATENCY_BUCKETS, RequestStats, _Hub

    a, b = Metrics(), Metrics()
    for seconds in (0.0004, 0.003, 0.003, 7.0):
        a.observe_request("/v1/predict/{model}", None, 200, seconds)
    b.observe_request("/v1/predict/{model}", None, 200, 0.02)
    b.observe_request("/v1/experiments/{name}/predict", "treatment", 503, 0.001)
    hub = _Hub()
    hub.push("a", a.http.snapshot())
    hub.push("b", b.http.snapshot())
    hub.push("a", a.http.snapshot())  # a replica pushes its cumulative counts again: replaced, not added
    shown = Metrics()
    shown.show(RequestStats.merge([hub.totals()]))
    s = _samples(shown)
    route = ("route", "/v1/predict/{model}")
    assert s[("titan_ray_requests_total", (("arm", "-"), ("code", "200"), route))] == 5
    assert s[("titan_ray_requests_total", (("arm", "treatment"), ("code", "503"),
                                           ("route", "/v1/experiments/{name}/predict")))] == 1
    assert s[("titan_ray_request_latency_seconds_count", (("arm", "-"), route))] == 5
    assert abs(s[("titan_ray_request_latency_seconds_sum", (("arm", "-"), route))] - 7.0264) < 1e-9
    buckets = [s[("titan_ray_request_latency_seconds_bucket", (("arm", "-"), ("le", le), route))]
               for le in [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]]
    assert buckets == sorted(buckets), "cumulative"
    assert buckets[0] == 1 and buckets[LATENCY_BUCKETS.index(0.005)] == 3 and buckets[-2] == 4 and buckets[-1] == 5
    assert hub.replicas() == 2
