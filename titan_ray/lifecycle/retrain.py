"""Retraining: a walk-forward fit on recent bars that registers a new challenger.

``fit_and_validate`` is the fit the lifecycle controller's retraining job runs, and the one a
first champion can be registered with: over a window of the latest bars it

1. scores the model out of sample, as a Tune sweep scores a fold (``titan_ray.train.sweeps.
   score_fold``): a fresh model fits on the window's first bars and trades its last
   ``validation_bars`` through the arena's ``Ledger`` with the configured costs; its annualised
   Sharpe is ``val_sharpe`` (the reference of the controller's performance-decay alert);
2. fits the model on the whole window, the most recent market there is.

``retrain_job`` is the Ray task around it: it registers the fitted model as a new version (with
its drift profile, ``titan_ray.models.profiles``), assigns it the ``challenger`` alias with the
alert that started it as the evidence, and logs the run to MLflow when tracking is on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import ray

from titan_ray.config import LedgerConfig, RiskConfig
from titan_ray.domain.bars import BarBatch
from titan_ray.models.kinds import MODEL_KINDS, build_model
from titan_ray.models.learned import LearnedModel
from titan_ray.registry import ModelRegistry, ModelVersion
from titan_ray.tracking import log_run
from titan_ray.train.sweeps import Backtest, Fold, score_fold

RETRAINER = "titan-ray lifecycle retraining"


@dataclass(frozen=True)
class RetrainRequest:
    registry: str | None
    name: str  # the registry name
    kind: str
    params: dict[str, Any]
    bars: BarBatch  # the window to fit on (its last validation_bars are traded out of sample first)
    validation_bars: int
    ledger: LedgerConfig
    risk: RiskConfig
    calendar: str
    periods_per_year: float
    seed: int
    trigger: dict[str, Any]  # the alert that started the job
    mlflow_uri: str | None = None


def fit_and_validate(name: str, kind: str, params: dict[str, Any], bars: BarBatch, *, validation_bars: int,
                     ledger: LedgerConfig, risk: RiskConfig, calendar: str, periods_per_year: float,
                     seed: int) -> LearnedModel:
    """A learned model fitted on ``bars``, with the out-of-sample scores of its walk-forward fold in its
    ``metrics`` (val_sharpe, val_return, val_fills) beside the fit's own."""
    if not issubclass(MODEL_KINDS.get(kind, object), LearnedModel):
        raise ValueError(  # noqa: TRY004 - a config value, not a type errorf"retraining fits learned models (lightgbm, lstm_attention, tft); {name!r} is a {kind!r} "
                         "model: retrain a PPO policy with `titan-ray train-ppo`")
    n = len(bars)
    if validation_bars * 2 > n:
        raise ValueError(f"the window has {n} bars and validation_bars is {validation_bars}: the model fits on "
                         "the rest, so give a window of at least twice validation_bars")
    bt = Backtest(kind, ledger, risk, calendar, periods_per_year, seed)
    val = score_fold(bars, Fold(n - validation_bars, n), params, bt)
    model = build_model(name, kind, params, bars.symbols, seed=seed)
    assert isinstance(model, LearnedModel)
    model.fit(bars)
    model.metrics.update(val_sharpe=val.sharpe, val_return=val.total_return, val_fills=float(val.n_fills),
                         validation_bars=float(validation_bars))
    return model


def register_challenger(req: RetrainRequest) -> ModelVersion:
    """Fit on the request's window, register the model and make it the challenger (in-process)."""
    model = fit_and_validate(req.name, req.kind, req.params, req.bars, validation_bars=req.validation_bars,
                             ledger=req.ledger, risk=req.risk, calendar=req.calendar,
                             periods_per_year=req.periods_per_year, seed=req.seed)
    registry = ModelRegistry(req.registry)
    version = registry.register_model(model, req.bars, name=req.name, extra={
        "symbols": list(req.bars.symbols), "trained_by": RETRAINER, "trigger": req.trigger,
        "window": {"start_bar": req.bars.start, "stop_bar": req.bars.stop,
                   "validation_bars": req.validation_bars}})
    registry.set_alias(req.name, "challenger", version.version, who=RETRAINER,
                       why=f"retrained after the alert at bar {req.trigger.get('bar')}: "
                           f"{', '.join(req.trigger.get('reasons', [])) or 'requested'}",
                       evidence={"alert": req.trigger, "validation": dict(model.metrics)})
    return version


def _track(req: RetrainRequest, version: ModelVersion) -> str | None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return log_run(req.mlflow_uri, "titan-ray-retraining", f"{req.name}-v{version.version}-{stamp}",
                   params={"model": req.name, "kind": req.kind, "params": version.meta.get("params", {}),
                           "window_bars": len(req.bars), "validation_bars": req.validation_bars,
                           "window_start_bar": req.bars.start, "window_stop_bar": req.bars.stop,
                           "trigger_reasons": req.trigger.get("reasons", []), "registered": version.ref},
                   metrics={k: v for k, v in version.meta.get("metrics", {}).items() if isinstance(v, int | float)},
                   artifacts=[version.path / "metadata.json"],
                   tags={"titan_ray.kind": "retraining", "titan_ray.model": req.name})


@ray.remote(max_retries=0)
def retrain_job(req: RetrainRequest) -> dict[str, Any]:
    """The retraining job on the cluster: the new challenger's reference, metrics and MLflow run."""
    version = register_challenger(req)
    return {"version": version.version, "ref": version.ref, "metrics": version.meta.get("metrics", {}),
            "mlflow_run": _track(req, version)}
