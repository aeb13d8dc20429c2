"""The `ppo` competitor without training: an untrained RLModule saved in the registry's format.

It must act as the env would (same observation, same action map), not depend on the chunk size,
survive pickling (Ray actors get copies), and explain each trade with Integrated Gradients that add
up to the chosen action's probability. With a start-up ``trainer`` (an arena `ppo` with no
`artifact`), it must hand the trainer exactly the warm-up bars, once, at its first decision, and
then trade as the policy the trainer gave it.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from titan_ray.config import DataConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.bars import BarBatch
from titan_ray.features.pipeline import FeatureEngine
from titan_ray.ml.env import EnvSettings, MarketWindow, TradingEnv
from titan_ray.registry import ModelRegistry

FEATURES = ("ret_1", "ret_5", "rsi_14")
START = 300  # first traded bar


@pytest.fixture(scope="module")
def market() -> tuple[BarBatch, str]:
    data = SyntheticProvider(DataConfig(n_symbols=3, bars=420, frequency="1h"), 4).load()
    return data.bars, data.calendar.value


@pytest.fixture(scope="module")
def registered(market, tmp_path_factory):
    """A randomly initialised PPO RLModule for the env's spaces, registered as kind `ppo`."""
    return _register(market, tmp_path_factory.mktemp("ppo"), (-1.0, 0.0, 1.0))


@pytest.fixture(scope="module")
def long_only(market, tmp_path_factory):
    """The same with levels flat / long, as the arena's start-up policies are."""
    return _register(market, tmp_path_factory.mktemp("ppo-long"), (0.0, 1.0))


def _register(market, tmp, levels):
    import torch
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from titan_ray.models.ppo import write_policy

    bars, calendar = market
    engine = FeatureEngine(FEATURES)
    train = bars.slice(0, START)
    window = MarketWindow.build(train, engine.transform(train), engine.names, calendar=calendar)
    settings = EnvSettings(episode_bars=50, levels=levels)
    env = TradingEnv({"window": window, "settings": settings})
    torch.manual_seed(0)
    module = RLModuleSpec(module_class=DefaultPPOTorchRLModule, observation_space=env.observation_space,
                          action_space=env.action_space, model_config={"fcnet_hiddens": [16]}).build()
    with torch.no_grad():  # make the untrained policy decisive, so that it trades
        for p in module.parameters():
            p.mul_(8.0)
    module.save_to_path(str(tmp / "module"))
    registry = ModelRegistry(tmp / "registry")
    version = registry.register(
        "p", "ppo", {"deterministic": True},
        save=lambda folder: write_policy(folder, tmp / "module", symbols=bars.symbols,
                                         scaler=window.scaler.to_dict(), env=settings.model_dump(mode="json")),
        features=engine.names, training_window={}, metrics={}, data_fingerprint="x")
    return registry, version, window, settings


def _model(registered, market, seed=1):
    registry, version, *_ = registered
    return registry.load_model(version, name="ppo", symbols=market[0].symbols, seed=seed)


def _run(model, bars: BarBatch, chunk: int):
    model.observe(bars.slice(0, START))
    out = [model.decide(piece) for piece in bars.slice(START, len(bars)).chunks(chunk)]
    return np.vstack([d.weights for d in out]), [d.explanations for d in out if d.explanations is not None]


def test_decisions_do_not_depend_on_the_chunk_size_and_survive_pickling(registered, market):
    bars, _ = market
    whole, _ = _run(_model(registered, market), bars, 120)
    assert np.abs(np.diff(whole, axis=0)).sum() > 0  # it trades
    for chunk in (1, 13):
        np.testing.assert_array_equal(_run(_model(registered, market), bars, chunk)[0], whole)
    for copied in (pickle.loads(pickle.dumps(_model(registered, market))), copy.deepcopy(_model(registered, market))):
        np.testing.assert_array_equal(_run(copied, bars, 50)[0], whole)


def test_it_acts_as_the_env_would(registered, market):
    from titan_ray.ml.env import ActionMap
    from titan_ray.models.ppo import Policy, load_module

    bars, calendar = market
    _, version, window, settings = registered
    engine = FeatureEngine(FEATURES)
    full = MarketWindow.build(bars, engine.transform(bars), engine.names, calendar=calendar, scaler=window.scaler)
    env = TradingEnv({"window": full, "settings": settings})
    policy = Policy(load_module(version.path / "rl_module"), ActionMap(settings, bars.n_symbols))
    obs, _ = env.reset(options={"start": START, "steps": 100})
    weights = []
    for _ in range(100):
        action = policy.act(obs[None, :])[0]
        weights.append(env.actions.weights(action))
        obs, *_ = env.step(action)
    arena, _ = _run(_model(registered, market), bars, 64)
    np.testing.assert_array_equal(np.vstack(weights), arena[:100])


def test_explanations_add_up_to_the_chosen_actions_probability(registered, market):
    import torch

    bars, _ = market
    model = _model(registered, market)
    _, batches = _run(model, bars, 100)
    batch = batches[0]
    assert batch.method == "captum.IntegratedGradients"
    assert batch.feature_names == (*FEATURES, "held_weight", "other_symbols")
    probability = batch.base_value + batch.attributions.sum(axis=1)
    assert np.all(batch.gap < 1e-3)  # IG's completeness gap, recorded
    # the first decision (at the first traded bar, flat before): recompute the chosen level's probability
    from titan_ray.ml.env import observation

    first = batch.records(bars.symbols)[0]
    assert first.bar == START and first.old_weight == 0
    s = bars.symbols.index(first.symbol)
    chosen = list(model.actions.levels).index(first.new_weight / model.actions.budget)
    engine = FeatureEngine(FEATURES)
    feats = registered[2].scaler.transform(engine.transform(bars)[START], model.settings.clip_obs)
    obs = torch.as_tensor(observation(feats, np.zeros(bars.n_symbols))[None, :])
    p = model.policy.probabilities(obs).detach().numpy()[0, s * 3 + chosen]
    assert abs(probability[0] - p) == pytest.approx(batch.gap[0], abs=1e-6)
    assert "PPO policy" in first.sentence and first.features[0].name == "ret_1"


def test_wrong_symbols_are_refused_with_the_reason(registered, market):
    registry, version, *_ = registered
    with pytest.raises(ValueError, match="needs the symbols it was trained on"):
        registry.load_model(version, name="ppo", symbols=("XXX", "YYY", "ZZZ"), seed=1)


class _Trainer:
    """A start-up trainer that hands back a saved policy and keeps the bars it was given."""

    def __init__(self, folder):
        self.folder, self.given = folder, []

    def __call__(self, model, history):
        self.given.append(history)
        return self.folder


def _untrained(market, trainer):
    from titan_ray.models.ppo import PpoModel

    model = PpoModel("ppo", {}, market[0].symbols, seed=1)
    model.trainer = trainer
    return model


def test_a_start_up_model_trains_once_on_exactly_the_warm_up_bars_then_trades_that_policy(long_only, market):
    bars, _ = market
    registry, version, *_ = long_only
    trainer = _Trainer(version.path)
    model = _untrained(market, trainer)
    for piece in bars.slice(0, START).chunks(77):
        model.observe(piece)
    assert trainer.given == []  # nothing trains before the first decision
    weights = np.vstack([model.decide(piece).weights for piece in bars.slice(START, len(bars)).chunks(50)])
    [history] = trainer.given
    assert (history.start, history.stop) == (0, START)  # every bar before the first traded one, no later bar
    np.testing.assert_array_equal(history.timestamps, bars.timestamps[:START])
    np.testing.assert_array_equal(history.close, bars.close[:START])
    loaded, _ = _run(registry.load_model(version, name="ppo", symbols=bars.symbols, seed=1), bars, 120)
    np.testing.assert_array_equal(weights, loaded)  # its feature stream caught up on the warm-up bars
    assert np.abs(np.diff(weights, axis=0)).sum() > 0 and model.long_only
    for chunk in (1, 13):
        np.testing.assert_array_equal(_run(_untrained(market, _Trainer(version.path)), bars, chunk)[0], weights)
    copied = pickle.loads(pickle.dumps(_untrained(market, _Trainer(version.path))))  # what an actor receives
    np.testing.assert_array_equal(_run(copied, bars, 64)[0], weights)


def test_a_start_up_policy_must_be_long_only(registered, market):
    """The arena's ledger learns a model's side before the model trains: the start-up book is long-only."""
    bars, _ = market
    model = _untrained(market, _Trainer(registered[1].path))
    model.observe(bars.slice(0, START))
    with pytest.raises(RuntimeError, match="long-only"):
        model.decide(bars.slice(START, START + 10))


def test_a_start_up_model_with_no_warm_up_bars_says_what_to_set(long_only, market):
    bars, _ = market
    model = _untrained(market, _Trainer(long_only[1].path))
    with pytest.raises(ValueError, match=r"set replay.warmup_bars \(at least 277\)"):
        model.decide(bars.slice(0, 10))
