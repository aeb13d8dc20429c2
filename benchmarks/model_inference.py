"""Inference speed and explanation cost of every model kind, in one process (no Ray).

For each kind: the model watches ``--warmup`` bars of a seeded synthetic market and fits on them
(learned kinds; the fit time is printed), then

- inference: the rows (timestamp x symbol cells) it scores per second over ``--bars`` new bars:
  ``score(X)`` on the feature panel for learned models (features computed beforehand, so this is
  the model alone; the feature pipeline has its own line), ``_weights`` for the rule baselines;
- explanation: the cost of explaining one decision, from ``--decisions`` random cells explained
  in one call (SHAP TreeExplainer, Integrated Gradients, attention, stacking contributions, or
  the rule), and the explanation's mean |gap| where the method is additive.

Each timing is the best of ``--repeat`` runs. Progress goes to stderr, the table to stdout.

    .venv/bin/python benchmarks/model_inference.py
    .venv/bin/python benchmarks/model_inference.py --symbols 12 --warmup 1000 --bars 2000 --kinds lightgbm tft
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np

from titan_ray.config import DataConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.features import FeatureEngine
from titan_ray.models.kinds import build_model
from titan_ray.models.learned import LearnedModel

KINDS = ("sma_crossover", "rsi_reversion", "buy_and_hold", "random", "lightgbm", "stacking", "lstm_attention", "tft")


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=1000, help="bars to fit on (the default arena's warm-up)")
    ap.add_argument("--bars", type=int, default=2000, help="bars to score after the warm-up")
    ap.add_argument("--decisions", type=int, default=200, help="decisions explained per kind")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    bars = SyntheticProvider(DataConfig(n_symbols=args.symbols, bars=args.warmup + args.bars), args.seed).load().bars
    warm, trade = bars.slice(0, args.warmup), bars.slice(args.warmup, len(bars))
    rows = len(trade) * trade.n_symbols
    engine = FeatureEngine()
    t_feat, _ = best_of(args.repeat, lambda: engine.transform(bars))
    rng = np.random.default_rng(args.seed)
    cells_r = rng.integers(0, len(trade), args.decisions)
    cells_c = rng.integers(0, trade.n_symbols, args.decisions)

    print(f"# {platform.processor() or platform.machine()}, {platform.python_version()}, "
          f"{args.symbols} symbols, fit on {args.warmup} bars, score {args.bars} bars ({rows:,} rows), "
          f"{args.decisions} decisions explained, best of {args.repeat}")
    print(f"feature pipeline (bulk, {len(bars) * bars.n_symbols:,} rows, 16 features): "
          f"{len(bars) * bars.n_symbols / t_feat:,.0f} rows/s")
    header = f"{'kind':<16}{'method':<28}{'fit s':>8}{'rows/s':>14}{'explain µs/decision':>22}{'mean |gap|':>12}"
    print(header)
    print("-" * len(header))
    for kind in args.kinds:
        print(f"{kind} ...", file=sys.stderr, flush=True)
        model = build_model(kind, kind, {}, bars.symbols, seed=args.seed)
        fit_s = float("nan")
        if isinstance(model, LearnedModel):
            t = time.perf_counter()
            model.fit(warm)
            fit_s = time.perf_counter() - t
            feats = engine.transform(bars)[:, :, [engine.names.index(n) for n in model.features.names]]
            X = feats[args.warmup - (model.context - 1):]
            t_inf, _ = best_of(args.repeat, lambda m=model, x=X: m.score(x))
            t_exp, attr = best_of(args.repeat, lambda m=model, x=X: m._attribute(x, cells_r, cells_c))
            gaps = attr.gaps()
            gap = f"{np.nanmean(gaps):.1e}" if np.isfinite(gaps).any() else "n/a"
        else:
            model.observe(warm)
            state = model.__dict__.copy()

            def weights(m=model, s=state):
                m.__dict__.update({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()})
                return m._weights(trade)

            t_inf, (w, info) = best_of(args.repeat, weights)
            old, new = np.zeros(args.decisions), w[cells_r, cells_c]
            t_exp, _ = best_of(args.repeat, lambda m=model, i=info, o=old, n=new:
                               m._explain(cells_r, cells_c, o, n, i, trade))
            gap = "n/a"
        fit = f"{fit_s:.2f}" if np.isfinite(fit_s) else "-"
        print(f"{kind:<16}{model.method:<28}{fit:>8}{rows / t_inf:>14,.0f}"
              f"{t_exp / args.decisions * 1e6:>22,.1f}{gap:>12}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
