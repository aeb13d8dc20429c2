from __future__ import annotations

from titan_ray.arena.capacity import Request, check


def _models(n: int, cpus: float) -> list[Request]:
    return [Request(f"models[{i}] (m{i}, sma_crossover)", cpus, f"models[{i}].num_cpus") for i in range(n)]


def test_an_arena_that_fits_has_no_problems() -> None:
    assert check(_models(8, 0.25), {"CPU": 2.0}, {"CPU": 2.0}) == []
    assert check(_models(100, 0.0), {"CPU": 2.0}, {"CPU": 2.0}) == []


def test_too_many_reserved_cpus_names_the_total_the_cluster_and_the_fix() -> None:
    problems = check(_models(12, 0.25), {"CPU": 2.0}, {"CPU": 2.0})
    assert len(problems) == 1
    assert "reserve 3 CPUs in all" in problems[0] and "this Ray cluster has 2" in problems[0]
    assert "models[0] (m0, sma_crossover) 0.25" in problems[0] and "num_cpus" in problems[0]


def test_one_model_larger_than_any_node_is_named_with_its_key() -> None:
    big = Request("models[1] (big, lightgbm)", 4.0, "models[1].num_cpus")
    problems = check([*_models(1, 0.0), big], {"CPU": 4.0}, {"CPU": 2.0})
    assert problems == [
        ("models[1] (big, lightgbm) reserves num_cpus=4, but the largest node of this Ray cluster has 2 CPUs: "
        "lower models[1].num_cpus (a rule model needs no reserved core: 0)")
    ]
