"""A stack over arena models names them: each input must be another model of the arena, with no cycle."""

from __future__ import annotations

import pytest

from titan_ray.config import ConfigError, load_config, parse_config

BASES = [
    {"name": "sma", "kind": "sma_crossover"},
    {"name": "rsi", "kind": "rsi_reversion"},
    {"name": "lgbm", "kind": "lightgbm"},
]


def config(*stacks: dict, models: list[dict] | None = None):
    return parse_config({"replay": {"warmup_bars": 500}, "models": [*stacks, *(models or BASES)]})


def stack(name: str, *inputs: str, **extra) -> dict:
    return {"name": name, "kind": "stacking", "params": {"inputs": list(inputs)}, **extra}


def test_inputs_are_arena_models_and_decide_before_the_stack_that_reads_them():
    cfg = config(stack("meta", "lgbm", "sma"), stack("top", "meta", "rsi"))
    assert cfg.stacking_inputs == {"meta": ("lgbm", "sma"), "top": ("meta", "rsi")}
    order = cfg.decision_order
    assert sorted(order) == sorted(m.name for m in cfg.models)
    assert order.index("meta") > max(order.index("lgbm"), order.index("sma"))
    assert order.index("top") > order.index("meta")
    plain = config()
    assert plain.stacking_inputs == {} and plain.decision_order == ["sma", "rsi", "lgbm"]


@pytest.mark.parametrize(("stacks", "message"), [
    ([stack("meta", "sma", "lgmb")], (r"models\[0\] \(meta\) params.inputs\[1\]: 'lgmb' is not a model of this "
                                      r"arena; did you mean 'lgbm'\? Name one of \['meta', 'sma', 'rsi', 'lgbm'\]")),
    ([stack("meta", "meta")], r"models\[0\] \(meta\) params.inputs\[0\]: a model cannot stack itself; remove 'meta'"),
    ([stack("a", "sma", "b"), stack("b", "a")],
     (r"models\[0\] \(a\) params.inputs: the meta-models read each other in a cycle \(a → b → a\); a model "
      r"cannot stack one that stacks it: remove one of these inputs")),
    ([stack("meta", "sma", artifact="champ")], r"models\[0\] \(meta\) stacks arena models .* remove `artifact`"),
    ([{"name": "meta", "kind": "stacking", "params": {"inputs": ["sma"], "bases": ["ridge"]}}],
     r"models\[0\]: stacking params: bases configure the internal base signals, .*: remove bases"),
])
def test_a_bad_stack_is_refused_naming_the_field_and_the_fix(stacks, message):
    with pytest.raises(ConfigError, match=message):
        config(*stacks)


def test_the_default_arena_stacks_its_own_models():
    cfg = load_config()
    assert cfg.stacking_inputs["stack"] == ("sma", "rsi", "lgbm", "lstm")
    assert cfg.decision_order.index("stack") > cfg.decision_order.index("lstm")
