"""The settings of one served model's lifecycle: its live feed, drift thresholds, retraining, promotion.

They are the ``lifecycle`` section of a model application's args (``titan_ray.serve.settings.
ModelAppSettings``); the model app starts the model's ``LifecycleController``
(``titan_ray.lifecycle.controller``) with them. Every default below is the one docs/lifecycle.md
lists; every error names the field and the fix (``format_validation_error``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from titan_ray.config import ConfigError, DataConfig, LedgerConfig, RiskConfig, format_validation_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftSettings(_Strict):
    """When the live feed has drifted away from the champion's training window."""

    window_bars: int = Field(500, ge=30, description="the latest live bars compared with the training window")
    check_every_bars: int = Field(50, ge=1, description="how often drift, decay and the promotion rule are checked")
    psi_threshold: float = Field(0.25, gt=0, description="a feature (or the model's scores) drifts past this PSI")
    ks_alpha: float = Field(0.001, gt=0, lt=1, description="... and when the two-sample KS test rejects at this level")
    feature_share: float = Field(0.3, gt=0, le=1, description="the alert fires when this share of the features drifts")
    prediction_psi_threshold: float = Field(0.25, gt=0, description="PSI of the champion's scores that fires the alert")
    ignore: list[str] = Field(["tod_sin", "tod_cos"], description="features left out of the drift share: the "
                              "clock's (a window shorter than a day never has the training window's times of day)")
    sharpe_decay: float | None = Field(
        3.0, gt=0, description="the alert fires when the live Sharpe over perf_window_bars is this many standard "
        "errors (Lo 2002; of both estimates) below the validation Sharpe in the registry (val_sharpe); null: none")
    perf_window_bars: int = Field(500, ge=30, description="the live bars the rolling Sharpe is taken over")
    cooldown_bars: int = Field(2000, ge=0, description="no second alert until this many bars after one")


class AlertSettings(_Strict):
    webhook_url: str | None = Field(None, description="an http(s) URL that gets a JSON POST per alert; null: none")
    timeout_s: float = Field(5.0, gt=0, description="how long a webhook call may take")

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


class RetrainSettings(_Strict):
    enabled: bool = Field(True, description="an alert starts a retraining job on the cluster")
    wait_bars: int = Field(200, ge=0, description="live bars after the alert before the job starts, so that its "
                           "window holds the new market")
    window_bars: int = Field(1500, ge=100, description="the latest bars the job fits on (walk-forward)")
    validation_bars: int = Field(300, ge=30, description="the window's last bars, traded out of sample for val_sharpe")
    params: dict[str, Any] = Field(default_factory=dict, description="overrides of the champion's params")
    num_cpus: float = Field(1.0, ge=0, description="Ray CPUs the job reserves")

    @model_validator(mode="after")
    def _split(self) -> RetrainSettings:
        if self.validation_bars * 2 > self.window_bars:
            raise ValueError(f"validation_bars ({self.validation_bars}) must be at most half of window_bars "
                             f"({self.window_bars}): the model fits on the rest")
        return self


class PromotionSettings(_Strict):
    mode: Literal["auto", "approval"] = Field(
        "auto", description="auto: the controller promotes when the rule passes; approval: it waits for "
        "`titan-ray registry promote` or POST /v1/registry/{model}/promote")
    min_bars: int = Field(300, ge=30, description="live bars the challenger trades beside the champion before a look")
    max_looks: int = Field(5, ge=1, description="the rule is judged every min_bars, at most this many times; the "
                           "challenger is rejected after the last failed look (alpha is split over the looks)")
    alpha: float = Field(0.05, gt=0, lt=1, description="one-sided level of the bootstrap test of the Sharpe difference")
    max_drawdown_worse: float = Field(0.0, ge=0, description="how much deeper (fraction of equity) the "
                                      "challenger's max drawdown may be than the champion's")
    latency_p99_ms: float = Field(250.0, gt=0, description="the challenger's p99 latency of one prediction")
    n_resamples: int = Field(1000, ge=100, description="bootstrap resamples of the test")


class LifecycleSettings(_Strict):
    """The ``lifecycle`` section of a model application (``build_model_app``)."""

    model: str | None = Field(None, description="the registry name; default: the name in the app's artifact")
    served: str | None = Field(None, description="the served model name; set by the model app")
    registry: str | None = Field(None, description="registry folder; default: the model app's")
    feed: dict[str, Any] = Field(description="the live feed: an arena `data` section (titan_ray/config.py)")
    start_bar: int = Field(0, ge=0, description="the feed's bars before this one are history (the buffer the "
                           "first retraining may use); the live period starts here")
    speed: float = Field(0.0, ge=0, description="live bars a second; 0: as fast as the models decide")
    chunk_bars: int = Field(10, ge=1, description="bars decided and booked together")
    seed: int = 7
    drift: DriftSettings = DriftSettings()
    alerts: AlertSettings = AlertSettings()
    retrain: RetrainSettings = RetrainSettings()
    promotion: PromotionSettings = PromotionSettings()
    ledger: LedgerConfig = LedgerConfig()
    risk: RiskConfig = RiskConfig()
    tracking: dict[str, str | None] = Field(default_factory=dict, description="{mlflow_uri: http://...}")
    num_cpus: float = Field(0.25, ge=0, description="Ray CPUs the controller reserves")

    @field_validator("feed")
    @classmethod
    def _feed(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            DataConfig.model_validate(v)
        except ValidationError as err:
            text = format_validation_error(err, DataConfig).replace("invalid arena config:", "").strip()
            raise ValueError(text.replace("`data.", "`feed.").replace("(top level): ", "")) from None
        return v

    @field_validator("tracking")
    @classmethod
    def _tracking(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        unknown = sorted(set(v) - {"mlflow_uri"})
        if unknown:
            raise ValueError(f"unknown keys {unknown}; the one key is mlflow_uri")
        return v

    def data(self) -> DataConfig:
        return DataConfig.model_validate(self.feed)


def parse_lifecycle(raw: dict[str, Any]) -> LifecycleSettings:
    try:
        return LifecycleSettings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, LifecycleSettings)
                          .replace("invalid arena config", "invalid lifecycle settings")) from None


def controller_name(served: str) -> str:
    """The named, detached Ray actor of a served model's lifecycle (namespace titan-ray)."""
    return f"titan-ray-lifecycle-{served}"
