"""TradingEnv and PPO throughput: env steps per second (single and vectorised), PPO samples per second.

What is measured
----------------
*Single env*: ``TradingEnv`` on a seeded synthetic market (``--symbols`` symbols, 15-minute bars,
the 16 features of the pipeline, discrete levels -1/0/1), stepped with random actions that change
with probability ``--change`` per step (a trading policy holds positions; every change is a real
order through the arena's ledger: sizing, risk, slippage, fill, commission). Resets are included.
Steps per second = steps / wall seconds, best of ``--repeat``.

*Vectorised*: gymnasium's ``SyncVectorEnv`` (what RLlib's env runners use with
``num_envs_per_env_runner``) and ``AsyncVectorEnv`` (one process per env) of ``--envs`` copies;
the figure counts every sub-env's steps (``--envs`` x vector steps / seconds).

*PPO*: RLlib PPO (new API stack) built directly (no Tune) on a local Ray with ``num_cpus=2``,
``num_env_runners=0`` (sampling in the driver, as ``tune_configs/ppo_small.yaml`` does),
``--ppo-envs`` vectorised envs, a [64, 64] MLP, ``--batch`` steps per iteration, 8 epochs of
minibatches of 256. After one warm-up iteration, ``--iterations`` are timed: "samples/s overall" =
env steps / wall seconds of whole ``train()`` iterations (sampling + 8 epochs of learning); then
"samples/s while sampling" = env steps / seconds of ``--iterations`` calls of the algorithm's env
runner ``sample(num_timesteps=batch)`` alone (policy inference, connectors, the vectorised envs).

``.venv/bin/python benchmarks/env_throughput.py --help`` for the options; ``--json PATH`` saves
the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from titan_ray.config import DataConfig, LedgerConfig, RiskConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.features.pipeline import FeatureEngine
from titan_ray.ml.env import EnvSettings, MarketWindow, TradingEnv

LEDGER = LedgerConfig(commission_bps=1, slippage={"model": "fixed_bps", "bps": 1})
RISK = RiskConfig()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_window(symbols: int, bars: int, seed: int) -> MarketWindow:
    data = SyntheticProvider(DataConfig(n_symbols=symbols, bars=bars, synthetic={"signal": 0.3}), seed).load()
    engine = FeatureEngine()
    return MarketWindow.build(data.bars, engine.transform(data.bars), engine.names, calendar=data.calendar)


def env_factory(window: MarketWindow, episode: int) -> Any:
    def make() -> TradingEnv:
        return TradingEnv({"window": window, "ledger": LEDGER, "risk": RISK,
                           "settings": EnvSettings(episode_bars=episode)})
    return make


def single_env(window: MarketWindow, steps: int, episode: int, change: float, seed: int) -> float:
    env = env_factory(window, episode)()
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    action = env.action_space.sample()
    start = time.perf_counter()
    for _ in range(steps):
        if rng.random() < change:
            action = env.action_space.sample()
        _o, _r, term, trunc, _i = env.step(action)
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_env(window: MarketWindow, n_envs: int, steps: int, episode: int, change: float, seed: int,
               mode: str) -> float:
    fns = [env_factory(window, episode) for _ in range(n_envs)]
    vec = gym.vector.SyncVectorEnv(fns) if mode == "sync" else gym.vector.AsyncVectorEnv(fns)
    try:
        rng = np.random.default_rng(seed)
        vec.reset(seed=seed)
        vec.action_space.seed(seed)
        actions = vec.action_space.sample()
        rounds = max(1, steps // n_envs)
        start = time.perf_counter()
        for _ in range(rounds):
            fresh = vec.action_space.sample()
            mask = rng.random(n_envs) < change
            actions = np.where(mask[:, None], fresh, actions)
            vec.step(actions)  # sub-envs reset themselves at the end of an episode
        return rounds * n_envs / (time.perf_counter() - start)
    finally:
        vec.close()


def ppo_samples(window: MarketWindow, n_envs: int, batch: int, iterations: int, episode: int, seed: int
                ) -> dict[str, float]:
    import ray
    from ray import tune
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        tune.register_env("bench_trading", lambda cfg: env_factory(window, episode)())
        algo = (
            PPOConfig().environment("bench_trading")
            .env_runners(num_env_runners=0, num_envs_per_env_runner=n_envs,
                         rollout_fragment_length=max(1, batch // n_envs))
            .training(train_batch_size_per_learner=batch, minibatch_size=256, num_epochs=8, lr=3e-4)
            .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64, 64]))
            .debugging(seed=seed)
        ).build_algo()
        algo.train()  # warm-up: module build, first sampling
        sampled, wall = 0, 0.0
        for i in range(iterations):
            start = time.perf_counter()
            res = algo.train()
            wall += time.perf_counter() - start
            n = res["env_runners"]["num_env_steps_sampled"]
            sampled += n
            _say(f"  ppo iteration {i + 1}/{iterations}: {n} steps, {time.perf_counter() - start:.2f} s")
        # Sampling alone: the algorithm's own env runner (policy inference + connectors + envs).
        runner, collected = algo.env_runner, 0
        start = time.perf_counter()
        for _ in range(iterations):
            episodes = runner.sample(num_timesteps=batch, explore=True)
            collected += sum(len(e) for e in episodes)
        sampling_s = time.perf_counter() - start
        algo.stop()
        return {"samples_per_s_sampling": collected / sampling_s, "samples_per_s_overall": sampled / wall,
                "iteration_s": wall / iterations}
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, nargs="+", default=[3, 12], help="universe sizes to measure")
    ap.add_argument("--bars", type=int, default=4000, help="bars in the env's window")
    ap.add_argument("--steps", type=int, default=5000, help="env steps per measurement")
    ap.add_argument("--episode", type=int, default=256, help="steps per episode")
    ap.add_argument("--change", type=float, default=0.2, help="chance per step that the action changes")
    ap.add_argument("--envs", type=int, default=8, help="sub-envs of the vectorised envs")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per figure (best kept)")
    ap.add_argument("--ppo-envs", type=int, default=4, help="vectorised envs in PPO's sampler")
    ap.add_argument("--batch", type=int, default=4000, help="PPO env steps per iteration")
    ap.add_argument("--iterations", type=int, default=3, help="timed PPO iterations")
    ap.add_argument("--no-ppo", action="store_true", help="skip the PPO measurement")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    figures: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "platform": platform.platform(), "load": os.getloadavg()}}
    rows = []
    for n in args.symbols:
        _say(f"{n} symbols: building the window ({args.bars} bars, 16 features) ...")
        window = make_window(n, args.bars, args.seed)
        single = max(single_env(window, args.steps, args.episode, args.change, args.seed) for _ in range(args.repeat))
        sync = max(vector_env(window, args.envs, args.steps, args.episode, args.change, args.seed, "sync")
                   for _ in range(args.repeat))
        asyn = max(vector_env(window, args.envs, args.steps, args.episode, args.change, args.seed, "async")
                   for _ in range(args.repeat))
        rows.append({"symbols": n, "single": single, "sync": sync, "async": asyn})
    figures["env"] = rows
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}")
    print(f"{'symbols':>8} {'single env steps/s':>20} {f'SyncVectorEnv x{args.envs}':>20} "
          f"{f'AsyncVectorEnv x{args.envs}':>21}")
    for r in rows:
        print(f"{r['symbols']:>8} {r['single']:>20,.0f} {r['sync']:>20,.0f} {r['async']:>21,.0f}")
    if not args.no_ppo:
        n = args.symbols[0]
        _say(f"PPO on {n} symbols: {args.ppo_envs} envs, {args.batch} steps per iteration ...")
        ppo = ppo_samples(make_window(n, args.bars, args.seed), args.ppo_envs, args.batch, args.iterations,
                          args.episode, args.seed)
        figures["ppo"] = {"symbols": n, **ppo}
        print(f"PPO ({n} symbols, {args.ppo_envs} envs, batch {args.batch}, [64, 64] MLP, 8 epochs): "
              f"{ppo['samples_per_s_sampling']:,.0f} samples/s while sampling, "
              f"{ppo['samples_per_s_overall']:,.0f} samples/s overall ({ppo['iteration_s']:.2f} s per iteration)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
