"""Start-up PPO (an arena `ppo` with no `artifact`): which arena models get a trainer, what the config
asks of them, and which registered policy a later run reuses, without training (no RLlib here).

The training itself, in a model actor, and its reuse by a second run are in
tests/integration/test_ppo_startup_arena.py.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from titan_ray.config import ConfigError, LedgerConfig, parse_config
from titan_ray.data.providers import make_provider
from titan_ray.models.ppo import PpoModel
from titan_ray.registry import ModelRegistry, fingerprint
from titan_ray.train.ppo import StartupTrainer, startup_models, startup_recipe


def _config(tmp_path: Path, **extra) -> dict:
    return {
        "data": {"n_symbols": 3, "bars": 700, "frequency": "15min"},
        "replay": {"warmup_bars": 400},
        "registry": {"path": str(tmp_path / "registry")},
        "models": [
            {"name": "ppo", "kind": "ppo", "params": {"train_steps": 4096}},
            {"name": "pinned", "kind": "ppo", "artifact": "somewhere@2"},
            {"name": "hold", "kind": "buy_and_hold"},
        ],
        **extra,
    }


def test_only_a_ppo_with_no_artifact_gets_a_start_up_trainer(tmp_path):
    config = parse_config(_config(tmp_path))
    models = startup_models(config, ("AAA", "BBB", "CCC"), "equities")
    assert list(models) == ["ppo"]
    model = models["ppo"]
    assert isinstance(model, PpoModel) and model.symbols == ("AAA", "BBB", "CCC") and model.seed == config.seed
    trainer = model.trainer
    assert isinstance(trainer, StartupTrainer)
    assert trainer.name == "ppo-startup" and Path(trainer.registry) == (tmp_path / "registry").resolve()
    assert pickle.loads(pickle.dumps(model)).trainer == trainer  # a Ray actor receives a copy


def test_building_the_start_up_models_on_the_driver_loads_neither_torch_nor_rllib(tmp_path):
    code = (
        "import sys\n"
        "from titan_ray.config import parse_config\n"
        "from titan_ray.train.ppo import startup_models\n"
        f"config = parse_config({_config(tmp_path)!r})\n"
        "assert startup_models(config, ('AAA', 'BBB', 'CCC'), 'equities')\n"
        "print(sorted(m for m in ('torch', 'ray.rllib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_start_up_ppo_needs_enough_warm_up_bars(tmp_path):
    raw = _config(tmp_path, replay={"warmup_bars": 100})
    with pytest.raises(ConfigError, match=r"models\[0\] \(ppo, ppo\) fits on the warm-up bars and needs at least 277"):
        parse_config(raw)
    raw["models"] = raw["models"][1:]  # a policy from the registry needs none
    parse_config(raw)


def test_unknown_start_up_features_are_refused_by_name(tmp_path):
    raw = _config(tmp_path)
    raw["models"][0]["params"]["train_features"] = ["ret_20", "momentum_9"]
    with pytest.raises(ConfigError, match="unknown feature.*momentum_9"):
        parse_config(raw)


def _register(registry: ModelRegistry, trainer: StartupTrainer, model: PpoModel, history, **changes) -> str:
    """A version whose metadata says it was trained on ``history`` with ``model``'s recipe (or with
    ``changes`` to the recipe): all ``find`` reads."""
    recipe = startup_recipe(trainer.config(model, history), trainer.calendar) | changes
    return registry.register(
        trainer.name, "ppo", {"deterministic": True}, save=lambda folder: (folder / "policy.json").write_text("{}"),
        features=(), training_window={}, metrics={}, data_fingerprint=fingerprint(history),
        extra={"recipe": recipe},
    ).ref


def test_a_later_run_finds_the_policy_trained_on_the_same_bars_with_the_same_recipe(tmp_path):
    config = parse_config(_config(tmp_path))
    bars = make_provider(config.data, config.seed).load().bars
    history = bars.slice(0, config.replay.warmup_bars)
    model = startup_models(config, bars.symbols, "equities")["ppo"]
    trainer = model.trainer
    registry = ModelRegistry(trainer.registry)
    assert trainer.find(model, history) is None  # an empty registry: this run trains

    first = _register(registry, trainer, model, history)
    assert trainer.find(model, history).ref == first
    _register(registry, trainer, model, history, calendar="continuous")  # another recipe: not a match
    assert trainer.find(model, history).ref == first
    second = _register(registry, trainer, model, history)
    assert trainer.find(model, history).ref == second  # the latest of the matches

    # other warm-up bars, another number of steps, another seed or other costs: no match, so it trains
    assert trainer.find(model, bars.slice(0, config.replay.warmup_bars - 1)) is None
    more_steps = PpoModel("ppo", {"train_steps": 8192}, bars.symbols, seed=config.seed)
    assert trainer.find(more_steps, history) is None
    assert trainer.find(PpoModel("ppo", {"train_steps": 4096}, bars.symbols, seed=8), history) is None
    ledger = config.ledger.model_dump()
    dearer = StartupTrainer(trainer.registry, trainer.name, "equities",
                            LedgerConfig.model_validate({**ledger, "commission_bps": 20}), config.risk)
    assert dearer.find(model, history) is None
    # where the ledger journals changes no trade: the same policy
    journaled = StartupTrainer(trainer.registry, trainer.name, "equities",
                               LedgerConfig.model_validate({**ledger, "journal": {"backend": "memory"}}), config.risk)
    assert journaled.find(model, history).ref == second
