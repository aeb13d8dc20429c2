"""Will the arena fit: the check made before any actor starts, on plain numbers (no Ray)."""

from __future__ import annotations

from titan_ray.arena.capacity import MIB, Node, Request, arena_requests, check, pending
from titan_ray.config import load_config, parse_config

LAPTOP = [Node("laptop", {"CPU": 2.0, "memory": 8192.0 * MIB})]
TWO_NODES = [Node("head", {"CPU": 1.0, "memory": 4096.0 * MIB}), Node("worker", {"CPU": 1.0, "memory": 4096.0 * MIB})]


def _models(n: int, cpus: float) -> list[Request]:
    return [Request(f"models[{i}] (m{i}, sma_crossover)", {"CPU": cpus}, f"models[{i}]") for i in range(n)]


def _arena(models: list[dict], **extra: object) -> list[Request]:
    config = parse_config({"models": models, "replay": {"warmup_bars": 300}, **extra})
    return arena_requests(config, market_on_driver=True, ledger_on_driver=True)


def test_an_arena_that_fits_has_no_problems() -> None:
    assert check(_models(8, 0.25), LAPTOP, "laptop") == []
    assert check(_models(100, 0.0), LAPTOP, "laptop") == []
    assert check(_models(2, 1.0), TWO_NODES, "head") == []


def test_any_number_of_rule_models_fits_a_laptop_by_default() -> None:
    kinds = ["sma_crossover", "rsi_reversion", "buy_and_hold", "random"]
    requests = _arena([{"name": f"m{i}", "kind": kinds[i % 4]} for i in range(500)])
    assert all(r.resources["CPU"] == 0 for r in requests)  # the market, the ledger and the watchdog too
    assert check(requests, LAPTOP, "laptop") == []


def test_the_default_arena_with_its_learned_models_fits_a_laptop() -> None:
    requests = arena_requests(load_config(), market_on_driver=False, ledger_on_driver=True)
    assert sum(r.resources["CPU"] for r in requests) == 1.25  # five learned models at 0.25, the rest 0
    assert check(requests, LAPTOP, "laptop") == []


def test_too_many_reserved_cpus_names_the_total_the_cluster_and_the_fix() -> None:
    problems = check(_models(12, 0.25), LAPTOP, "laptop")
    assert problems == [
        ("the arena's actors reserve 3 CPUs in all (12 actors: models[0] (m0, sma_crossover) num_cpus=0.25, "
         "models[1] (m1, sma_crossover) num_cpus=0.25, models[2] (m2, sma_crossover) num_cpus=0.25, "
         "models[3] (m3, sma_crossover) num_cpus=0.25, models[4] (m4, sma_crossover) num_cpus=0.25, ...), "
         "but this Ray cluster has 2 CPUs: lower the models' num_cpus (a rule model needs no reserved core: 0), "
         "run fewer models, or join a larger cluster (--address)")
    ]


def test_one_model_larger_than_any_node_is_named_with_its_key_and_said_once() -> None:
    requests = _arena([{"name": "sma", "kind": "sma_crossover"}, {"name": "big", "kind": "lightgbm", "num_cpus": 2}])
    assert check(requests, TWO_NODES, "head") == [
        ("models[1] (big, lightgbm) reserves num_cpus=2, but the largest node of this Ray cluster has 1 CPU: "
         "lower models[1].num_cpus (a rule model needs no reserved core: 0) or join a cluster with larger nodes "
         "(--address)")
    ]


def test_reserved_memory_is_checked_per_node_and_in_all() -> None:
    one = _arena([{"name": "fat", "kind": "tft", "num_cpus": 0, "memory_mb": 6000}])
    assert check(one, TWO_NODES, "head") == [
        ("models[0] (fat, tft) reserves memory_mb=6000, but the largest node of this Ray cluster has 4096 MiB "
         "memory: lower models[0].memory_mb or join a cluster with larger nodes (--address)")
    ]
    three = _arena([{"name": f"m{i}", "kind": "sma_crossover", "memory_mb": 3000} for i in range(3)])
    [problem] = check(three, TWO_NODES, "head")
    assert problem.startswith("the arena's actors reserve 9000 MiB memory in all (3 actors: models[0] (m0, ")
    assert "this Ray cluster has 8192 MiB memory (2 nodes, at most 4096 MiB memory on one)" in problem


def test_an_actor_pinned_to_the_driver_must_fit_the_drivers_node() -> None:
    pinned = Request("the ledger actor", {"CPU": 2.0}, on_driver=True)
    big_worker = [Node("head", {"CPU": 1.0}), Node("worker", {"CPU": 8.0})]
    assert check([pinned], big_worker, "head") == [
        ("the ledger actor reserves num_cpus=2, but the driver's node (it must run there) has 1 CPU: lower its "
         "num_cpus (a rule model needs no reserved core: 0) or join a cluster with larger nodes (--address)")
    ]
    assert check([pinned], big_worker, "worker") == []


def test_the_timeout_message_names_what_is_pending_and_what_holds_the_rest() -> None:
    requests = _arena([{"name": "sma", "kind": "sma_crossover"}, {"name": "lgbm", "kind": "lightgbm", "num_cpus": 1}])
    text = pending(requests, LAPTOP, {"CPU": 0.5, "memory": 8192.0 * MIB}, 30.0)
    assert text == (
        "the arena's actors could not be placed within 30 s. Still pending: models[1] (lgbm, lightgbm) "
        "num_cpus=1. They reserve 1 CPU; this Ray cluster has 2 CPUs, of which 0.5 are free now: other work "
        "holds 1.5. Wait for that work to end (`ray status` shows it), lower the models' num_cpus (0 for rule "
        "models), or raise replay.placement_timeout_s"
    )
    split = pending(_models(2, 0.75), TWO_NODES, {"CPU": 1.5}, 5.0)
    assert "Enough is free in all, but split across the nodes" in split
