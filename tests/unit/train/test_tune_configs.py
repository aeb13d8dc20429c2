"""Every YAML in tune_configs/ loads and validates; bad configs fail with the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from titan_ray.config import ConfigError
from titan_ray.train.ppo import PpoConfig, load_ppo_config
from titan_ray.train.space import Domain
from titan_ray.train.sweeps import SweepConfig, load_sweep_config

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = sorted((ROOT / "tune_configs").glob("*.yaml"))


def load_any(path: Path, overrides: dict | None = None) -> SweepConfig | PpoConfig:
    """Sweeps name a model ``kind``; PPO configs do not."""
    raw = yaml.safe_load(path.read_text())
    return load_sweep_config(path, overrides) if "kind" in raw else load_ppo_config(path, overrides)


def test_the_shipped_configs_are_all_here():
    assert {p.name for p in CONFIGS} >= {"ppo.yaml", "ppo_small.yaml", "lightgbm.yaml", "lstm_attention.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_tune_config_validates(path):
    cfg = load_any(path)
    assert cfg.name and cfg.storage
    for domain in cfg.search.values():
        domain.to_tune()  # every domain becomes a Ray Tune object


def test_real_budgets_in_the_full_configs():
    ppo = load_ppo_config(ROOT / "tune_configs" / "ppo.yaml")
    assert ppo.tune.num_samples >= 8 and ppo.training.iterations >= 100 and ppo.search
    for name in ("lightgbm.yaml", "lstm_attention.yaml"):
        sweep = load_sweep_config(ROOT / "tune_configs" / name)
        assert sweep.tune.num_samples >= 16 and sweep.validation.n_splits >= 3
        assert sweep.tune.scheduler.type == "asha"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"tune": {"metrc": "val_sharpe"}}, r"tune\.metrc: unknown key; did you mean 'metric'\?"),
    ({"search": {"num_leavs": {"int": [4, 8]}}}, (r"search\.num_leavs: not a parameter of lightgbm; did you mean "
                                                   r"'num_leaves'\?")),
    ({"search": {"num_leaves": {"int": [1, 8]}}}, r"search\.num_leaves = 1.*greater than or equal to 2"),
    ({"search": {"bagging_fraction": {"logunifrom": [0.1, 0.2]}}}, (r"unknown domain 'logunifrom'; did you mean "
                                                                r"'loguniform'\?")),
    ({"search": {"bagging_fraction": {"loguniform": [0.0, 0.2]}}}, r"loguniform needs low > 0"),
    ({"search": {"bagging_fraction": {"uniform": [0.3, 0.2]}}}, r"uniform: low must be below high"),
    ({"tune": {"metric": "accuracy"}}, r"tune\.metric: 'accuracy' is not reported by a sweep"),
    ({"kind": "sma_crossover"}, r"kind: 'sma_crossover' does not learn from data"),
    ({"kind": "lightgmb"}, r"kind: unknown model kind 'lightgmb'; did you mean 'lightgbm'\?"),
    ({"tune": {"scheduler": {"type": "hyperband"}}}, r"tune\.scheduler"),
])
def test_sweep_config_errors_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep_config(ROOT / "tune_configs" / "lightgbm.yaml", overrides)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"search": {"fcnet_hiddens": {"choice": [[8], [16]]}}}, r"search\.fcnet_hiddens: not a searchable PPO setting"),
    ({"search": {"lr": {"loguniform": [-1, 0.1]}}}, r"loguniform needs low > 0"),
    ({"ppo": {"minibatch_size": 4096}}, r"minibatch_size \(4096\) must not exceed train_batch_size"),
    ({"env": {"levels": [0.0, 3.0]}}, r"levels: every level must lie in \[-1, 1\]"),
    ({"env": {"episode_bars": 5000}}, r"no room for episodes of env\.episode_bars=5000"),
    ({"features": ["ret_1", "ret_2"]}, r"features: unknown feature\(s\) \['ret_2'\]"),
    ({"tune": {"metric": "val_return"}}, r"tune\.metric: val_return is computed after the trials"),
    ({"training": {"iteratons": 3}}, r"training\.iteratons: unknown key; did you mean 'iterations'\?"),
])
def test_ppo_config_errors_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_ppo_config(ROOT / "tune_configs" / "ppo_small.yaml", overrides)


def test_domains_become_tune_objects_with_inclusive_integer_ends():
    d = Domain.model_validate({"int": [3, 5]})
    sampler = d.to_tune()
    assert {sampler.sample() for _ in range(200)} == {3, 4, 5}
    assert Domain.model_validate({"choice": ["a", "b"]}).examples() == ["a", "b"]
    with pytest.raises(ValueError, match="takes integer bounds"):
        Domain.model_validate({"int": [1.5, 4]})


def test_a_missing_file_says_where_configs_live(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; pass --config with a YAML file from tune_configs/"):
        load_sweep_config(tmp_path / "nope.yaml")
