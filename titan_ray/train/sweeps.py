"""Hyper-parameter sweeps of learned models on Ray Tune, scored by walk-forward validation.

The parts:

- ``SweepConfig``: the YAML (``tune_configs/lightgbm.yaml``, ``tune_configs/lstm_attention.yaml``):
  the model kind, its fixed ``params`` and the ``search`` space, the data and the training period
  (``train_bars``), the costs of the validation backtests (``ledger``, ``risk``), the folds, the
  Tune settings (metric, ASHA) and where the winner is registered.
- ``walk_forward``: the objective. The training period's last ``n_splits`` blocks are test blocks
  (``titan_ray.ml.validation.walk_forward_splits``); for each, a fresh model observes every bar
  before the block (it fits on them at its first decision; labels that would look into the block
  are unknown there, so the purge is built in), trades the block, and the arena's ``Ledger`` books
  its weights with the configured costs. A fold's score is the block's annualised Sharpe ratio
  (0 for a model that never trades) and its total return. Nothing after ``train_bars`` is loaded,
  so the arena's trading period can never leak into the choice.
- ``run_sweep``: one Tune trial per sampled config, reporting after each fold (``val_sharpe`` =
  mean of the folds so far), so ASHA stops poor trials after their first folds. The best trial
  among those that ran every fold is refit on the whole training period and registered; the
  summary table (every trial, its params, folds done, scores, whether ASHA stopped it) is printed
  and saved in the run folder with ``best.json``.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from titan_ray.config import ConfigError, DataConfig, LedgerConfig, RegistryConfig, RiskConfig, TrackingConfig
from titan_ray.data.providers import make_provider
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import periods_per_year
from titan_ray.ledger.engine import Ledger
from titan_ray.metrics.performance import returns_from_equity, sharpe
from titan_ray.ml.validation import walk_forward_splits
from titan_ray.models.kinds import MODEL_KINDS, build_model
from titan_ray.models.learned import LearnedModel
from titan_ray.registry import ModelRegistry, fingerprint
from titan_ray.tracking import checked_uri, log_run
from titan_ray.train.space import (
    Domain,
    Strict,
    TuneSettings,
    echo,
    load_yaml,
    param_cells,
    progress_callback,
    search_space,
    text_table,
)

REPORTED = ("val_sharpe", "val_return", "fold_sharpe", "fold_return")


class ValidationSettings(Strict):
    """Walk-forward folds inside the training period."""

    n_splits: int = Field(3, ge=1, description="test blocks at the end of the training period (Tune iterations)")
    test_bars: int | None = Field(
        None, ge=10, description="bars per test block; default train_bars // (n_splits + 1)"
    )


class SweepConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,80}$", description="registry name of the refit winner")
    kind: str = Field(description="a learned model kind: lightgbm, lstm_attention, tft, ...")
    seed: int = Field(7, description="seeds the data, the search and every model")
    data: DataConfig = DataConfig()
    train_bars: int | None = Field(
        None, ge=100, description="the first N bars are the training period; null = every bar `data` loads"
    )
    ledger: LedgerConfig = LedgerConfig()
    risk: RiskConfig = RiskConfig()
    params: dict[str, Any] = Field(default_factory=dict, description="fixed model params")
    search: dict[str, Domain] = Field(description="searched model params: name -> domain")
    validation: ValidationSettings = ValidationSettings()
    tune: TuneSettings = TuneSettings(metric="val_sharpe")
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig()
    storage: str = Field("runs", description="folder under which each sweep gets its run folder")

    @model_validator(mode="after")
    def _model(self) -> SweepConfig:
        if self.kind not in MODEL_KINDS:
            hint = difflib.get_close_matches(self.kind, MODEL_KINDS, n=1)
            raise ValueError(f"kind: unknown model kind {self.kind!r}"
                             f"{f'; did you mean {hint[0]!r}?' if hint else ''} Known: {sorted(MODEL_KINDS)}")
        cls = MODEL_KINDS[self.kind]
        if not issubclass(cls, LearnedModel):
            raise ValueError(f"kind: {self.kind!r} does not learn from data; sweep a learned kind "  # noqa: TRY004
                             "(lightgbm, lstm_attention, tft, ...)")
        if not self.search:
            raise ValueError("search: give at least one parameter to search, e.g. {learning_rate: {loguniform: "
                             "[0.01, 0.2]}}")
        fields = cls.Params.model_fields
        for key in self.search:
            if key not in fields:
                hint = difflib.get_close_matches(key, fields, n=1)
                raise ValueError(f"search.{key}: not a parameter of {self.kind}"
                                 f"{f'; did you mean {hint[0]!r}?' if hint else ''} Parameters: {', '.join(fields)}")
            if key in self.params:
                raise ValueError(f"search.{key}: also fixed in params.{key}; keep it in one place")
        for key, domain in self.search.items():  # every end of every domain must be a valid value
            for value in domain.examples():
                sample = {**self.params, key: value}
                try:
                    cls.Params.model_validate(sample)
                except ValueError as err:
                    raise ValueError(f"search.{key} = {value!r} (with params): {_first_error(err)}") from None
        if self.tune.metric not in REPORTED[:2]:
            raise ValueError(f"tune.metric: {self.tune.metric!r} is not reported by a sweep; use val_sharpe or "
                             "val_return")
        return self

    def fixed_params(self) -> dict[str, Any]:
        return dict(self.params)


def _first_error(err: ValueError) -> str:
    errors = getattr(err, "errors", None)
    if errors:
        e = errors()[0]
        where = ".".join(str(p) for p in e["loc"])
        return f"{where}: {e['msg'].removeprefix('Value error, ')}"
    return str(err)


def load_sweep_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    return load_yaml(path, SweepConfig, what="sweep", overrides=overrides)


# --- the objective ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fold:
    start: int  # first bar of the test block (index into the training period)
    stop: int


@dataclass(frozen=True)
class FoldScore:
    sharpe: float
    total_return: float
    n_fills: int


@dataclass(frozen=True)
class Backtest:
    """What a fold needs besides the bars: the model, the costs, the clock."""

    kind: str
    ledger: LedgerConfig
    risk: RiskConfig
    calendar: str
    periods_per_year: float
    seed: int


def folds(n_bars: int, v: ValidationSettings, *, min_train: int, horizon: int = 0) -> list[Fold]:
    """The walk-forward test blocks of a training period of ``n_bars`` bars."""
    try:
        splits = walk_forward_splits(n_bars, n_splits=v.n_splits, test_size=v.test_bars, horizon=horizon,
                                     min_train=min_train)
    except ValueError as err:
        raise ConfigError(f"validation: {err}; the training period has {n_bars} bars and the model needs "
                          f"{min_train} before its first test block: lower validation.n_splits or "
                          "validation.test_bars, or raise train_bars") from None
    return [Fold(int(s.test[0]), int(s.test[-1]) + 1) for s in splits]


def score_fold(bars: BarBatch, fold: Fold, params: dict[str, Any], bt: Backtest) -> FoldScore:
    """Fit on every bar before the block (walk-forward), trade the block, book it in a Ledger."""
    model = build_model("candidate", bt.kind, params, bars.symbols, seed=bt.seed)
    history = bars.slice(0, fold.start)
    model.observe(history)
    decisions = model.decide(bars.slice(fold.start, fold.stop))
    ledger = Ledger(ledger=bt.ledger, risk=bt.risk, symbols=bars.symbols, calendar=bt.calendar,
                    models={model.name: model.long_only})
    ledger.apply(0, bars.slice(fold.start, fold.stop), [decisions])
    res = ledger.results()[model.name]
    initial = res.initial_cash_micro / 1e6
    s = sharpe(returns_from_equity(res.equity, initial), bt.periods_per_year)
    total = float(res.equity[-1] / initial - 1.0)
    return FoldScore(s if np.isfinite(s) else 0.0, total, len(res.fills))


def walk_forward(bars: BarBatch, fold_list: list[Fold], params: dict[str, Any], bt: Backtest,
                 report: Callable[[dict[str, float]], None] | None = None) -> dict[str, float]:
    """Score ``params`` on every fold, reporting after each; the means over the folds."""
    sharpes, returns, fills = [], [], 0
    out: dict[str, float] = {}
    for k, fold in enumerate(fold_list):
        s = score_fold(bars, fold, params, bt)
        sharpes.append(s.sharpe)
        returns.append(s.total_return)
        fills += s.n_fills
        out = {"fold": k + 1, "fold_sharpe": s.sharpe, "fold_return": s.total_return, "fold_fills": s.n_fills,
               "val_sharpe": float(np.mean(sharpes)), "val_return": float(np.mean(returns)), "fills": fills}
        if report is not None:
            report(out)
    return out


def _trial(config: dict[str, Any], *, bars: BarBatch, fixed: dict[str, Any], fold_list: list[Fold],
           backtest: Backtest) -> None:
    from ray import tune

    walk_forward(bars, fold_list, {**fixed, **config}, backtest, report=tune.report)


# --- the sweep --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    run_dir: Path
    best_params: dict[str, Any]
    best_score: float
    registered: str  # NAME@VERSION
    rows: list[dict[str, Any]]  # one per trial, best first
    table: str


def training_period(cfg: SweepConfig | Any) -> tuple[BarBatch, str, float]:
    """The bars of the training period (never more), the calendar and periods per year."""
    market = make_provider(cfg.data, cfg.seed).load()
    bars = market.bars
    if cfg.train_bars is not None:
        if cfg.train_bars > len(bars):
            raise ConfigError(f"train_bars: {cfg.train_bars} but the data has only {len(bars)} bars; lower "
                              "train_bars or load more data")
        bars = bars.slice(0, cfg.train_bars)
    return bars, market.calendar.value, periods_per_year(market.frequency, market.calendar)


def run_sweep(cfg: SweepConfig, run_dir: Path, *, progress: bool = True, print_fn: Callable[[str], None] | None = None) -> SweepResult:
    """Run the sweep (Ray must be up), refit and register the best config; see the module docstring."""
    emit = print_fn or echo
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    run_dir = Path(run_dir).resolve()
    checked_uri(cfg.tracking.mlflow_uri)  # a bad setting fails before the sweep, not after it
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    bars, calendar, periods = training_period(cfg)
    cls = MODEL_KINDS[cfg.kind]
    fixed = cfg.fixed_params()
    # The fold layout must hold for every config the search can draw: use the largest history need.
    needs, horizons = [], []
    for key, domain in cfg.search.items():
        for value in domain.examples():
            p = cls.Params.model_validate({**fixed, **{k: d.examples()[0] for k, d in cfg.search.items()}, key: value})
            needs.append(cls.min_history(p.model_dump()))
            horizons.append(getattr(p, "horizon", 0))
    fold_list = folds(len(bars), cfg.validation, min_train=max(needs), horizon=max(horizons))
    backtest = Backtest(cfg.kind, cfg.ledger, cfg.risk, calendar, periods, cfg.seed)
    emit(f"sweep {cfg.name}: {cfg.kind}, {cfg.tune.num_samples} trials, {len(fold_list)} walk-forward folds of "
             f"{fold_list[0].stop - fold_list[0].start} bars inside the first {len(bars)} bars "
             f"({bars.n_symbols} symbols); optimising {cfg.tune.metric} ({cfg.tune.mode}); run folder {run_dir}")

    trainable = tune.with_resources(
        tune.with_parameters(_trial, bars=bars, fixed=fixed, fold_list=fold_list, backtest=backtest),
        {"cpu": cfg.tune.cpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(cfg.search),
        tune_config=tune.TuneConfig(
            metric=cfg.tune.metric, mode=cfg.tune.mode, num_samples=cfg.tune.num_samples,
            scheduler=cfg.tune.scheduler_for(len(fold_list)),
            # the generator's own cap: Tune ignores TuneConfig.max_concurrent_trials with a generator
            search_alg=BasicVariantGenerator(random_state=cfg.seed, max_concurrent=cfg.tune.max_concurrent_trials),
            reuse_actors=True,  # one worker imports the model's libraries once for every trial
        ),
        run_config=tune.RunConfig(
            name="trials", storage_path=str(run_dir), verbose=0,
            callbacks=[progress_callback(cfg.tune.metric, len(fold_list), print_fn, "fold")] if progress else []),
    )
    grid = tuner.fit()
    rows = _rows(grid, cfg, len(fold_list))
    complete = [r for r in rows if r["folds"] == len(fold_list) and r["error"] is None]
    if not complete:
        errors = [r["error"] for r in rows if r["error"]]
        raise RuntimeError(f"no trial ran every fold{'; first error: ' + errors[0] if errors else ''}")
    sign = 1 if cfg.tune.mode == "max" else -1
    best = max(complete, key=lambda r: sign * r[cfg.tune.metric])
    best["status"] = "best"
    if best["fills"] == 0:
        emit("warning: the best trial never traded in its validation folds (every score is 0): the model's "
                 "position weight may exceed risk.max_position_pct, or its entry threshold is never reached")
    best_params = {**fixed, **best["config"]}

    emit(f"refitting the best config on all {len(bars)} training bars ...")
    model = MODEL_KINDS[cfg.kind](cfg.name, best_params, bars.symbols, seed=cfg.seed)
    model.fit(bars)
    model.metrics = {**model.metrics, "val_sharpe": best["val_sharpe"], "val_return": best["val_return"]}
    version = ModelRegistry(cfg.registry.path).register(
        cfg.name, cfg.kind, model.params.model_dump(mode="json"), save=model.save_artifacts,
        features=model.features.names,
        training_window={**model.training_window, "first_timestamp": int(bars.timestamps[0]),
                         "last_timestamp": int(bars.timestamps[-1]), "symbols": list(bars.symbols)},
        metrics=model.metrics, data_fingerprint=fingerprint(bars),
        extra={"sweep": {"run_dir": str(run_dir), "trials": len(rows), "metric": cfg.tune.metric,
                         "folds": [[f.start, f.stop] for f in fold_list]}},
    )
    rows.sort(key=lambda r: (r["status"] != "best", r["folds"] != len(fold_list), -sign * r[cfg.tune.metric]))
    table = summary_table(rows, list(cfg.search), cfg.tune.metric)
    _save_summary(run_dir, rows, table, list(cfg.search))
    (run_dir / "best.json").write_text(json.dumps(
        {"registered": version.ref, "path": str(version.path), "params": best_params,
         "val_sharpe": best["val_sharpe"], "val_return": best["val_return"], "trial": best["trial"]},
        indent=2, default=str) + "\n")
    url = log_run(cfg.tracking.mlflow_uri, "titan-ray-tune", f"{cfg.name}-{run_dir.name}",
                  params={**cfg.model_dump(mode="json", exclude={"tracking"}), "best": best_params,
                          "registered": version.ref},
                  metrics={"val_sharpe": best["val_sharpe"], "val_return": best["val_return"],
                           "trials": len(rows), "complete_trials": len(complete)},
                  artifacts=[run_dir / "summary.txt", run_dir / "best.json", run_dir / "config.json"],
                  tags={"titan_ray.kind": "tune", "titan_ray.model": cfg.name})
    if url:
        emit(f"tracked in MLflow: {url}")
    return SweepResult(run_dir, best_params, float(best[cfg.tune.metric]), version.ref, rows, table)


def _rows(grid: Any, cfg: SweepConfig, n_folds: int) -> list[dict[str, Any]]:
    rows = []
    for res in grid:
        m = res.metrics or {}
        done = int(m.get("fold", 0))
        status = "complete" if done == n_folds else f"stopped after fold {done}" if done else "failed"
        rows.append({
            "trial": m.get("trial_id") or Path(res.path).name, "config": dict(res.config or {}), "folds": done,
            "val_sharpe": float(m.get("val_sharpe", np.nan)), "val_return": float(m.get("val_return", np.nan)),
            "fills": int(m.get("fills", 0)), "status": status, "error": str(res.error) if res.error else None,
        })
    return rows


def summary_table(rows: list[dict[str, Any]], params: list[str], metric: str) -> str:
    """A plain-text table: trial, searched params, folds, scores, status."""
    head = ["trial", *params, "folds", "fills", "val_sharpe", "val_return", "status"]
    body = []
    for r in rows:
        cells = [str(r["trial"]), *param_cells(r["config"], params)]
        cells += [str(r["folds"]), str(r["fills"]), f"{r['val_sharpe']:.3f}", f"{r['val_return']:+.4f}", r["status"]]
        body.append(cells)
    return text_table(head, body) + f"\n(optimised: {metric}; val_* = mean over the walk-forward folds run)"


def _save_summary(run_dir: Path, rows: list[dict[str, Any]], table: str, params: list[str]) -> None:
    frame = pd.DataFrame([{"trial": r["trial"], **{p: r["config"].get(p) for p in params}, "folds": r["folds"],
                           "fills": r["fills"], "val_sharpe": r["val_sharpe"], "val_return": r["val_return"], "status": r["status"],
                           "error": r["error"]} for r in rows])
    frame.to_csv(run_dir / "summary.csv", index=False)
    (run_dir / "summary.txt").write_text(table + "\n")


def default_run_dir(storage: str, prefix: str) -> Path:
    return Path(storage) / time.strftime(f"{prefix}-%Y%m%d-%H%M%S")

