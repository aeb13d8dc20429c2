"""The arena's run configuration: one YAML file per run, validated strictly.

Every key is optional except ``models``. Unknown keys are rejected, and every error names the
field's dotted path, what is wrong and, for a misspelt key, the key that was probably meant.
Defaults are sized for a laptop with 2 cores.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from titan_ray.domain.calendar import Calendar, parse_frequency
from titan_ray.lazy import load

if TYPE_CHECKING:
    from titan_ray.models.params import ModelParams


def _model_params() -> Mapping[str, type[ModelParams]]:
    """Model kind → its parameter class: ``titan_ray.models.params`` (pydantic only, never torch), loaded
    by name because the models sit above the config in the layers."""
    return load("titan_ray.models.params:MODEL_PARAMS")


class ConfigError(ValueError):
    """A configuration that cannot run; the message names each bad field and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --- data -----------------------------------------------------------------------------------


class SyntheticConfig(_Strict):
    """Parameters of the built-in synthetic market (used when ``data.provider`` is synthetic)."""

    annual_drift: float = Field(0.05, description="expected yearly log-return of the market factor")
    annual_volatility: float = Field(0.25, gt=0, description="yearly volatility of a typical symbol")
    market_correlation: float = Field(0.5, ge=0, lt=1, description="share of variance from the market factor")
    tail_dof: float = Field(4.0, gt=2, description="Student-t degrees of freedom of shocks (fat tails)")
    high_vol_multiplier: float = Field(2.5, ge=1, description="volatility in the turbulent regime / calm")
    regime_switch_prob: float = Field(0.002, ge=0, le=1, description="chance per bar of switching regime")
    start_price: float = Field(100.0, gt=0)
    base_volume: float = Field(100_000.0, gt=0, description="mean shares per bar")
    random_walk: bool = Field(
        False, description="a pure random walk: no drift, no regimes, Gaussian shocks (nothing to predict; "
        "annual_drift, regime_switch_prob and tail_dof are ignored)"
    )
    signal: float = Field(
        0.0, ge=-1, le=1, description="planted predictable component: each bar's idiosyncratic shock gains "
        "signal x (sum of the symbol's last `signal_lag` shocks) / sqrt(signal_lag); > 0 momentum, < 0 "
        "reversal, 0 none"
    )
    signal_lag: int = Field(5, ge=1, le=500, description="bars in the planted component's window")
    scenario: Literal[
        "default", "random_walk", "trending", "mean_reverting", "crash_and_recovery", "volatility_clustering"
    ] = Field(
        "default", description="a named market preset (titan_ray.data.synthetic documents each; "
        "true_regimes gives its true regime per bar): default = the fields above as set; random_walk = "
        "the random_walk option; trending = alternating up/down trend segments of ~600 bars, each drifting "
        "0.15 bar-volatilities per bar; mean_reverting = signal -0.4 (reversal); crash_and_recovery = "
        "calm drift, a turbulent crash of 0.45 log-points over the middle 4% of the bars, then a recovery of "
        "60% of it; volatility_clustering = regime_switch_prob 0.01 with high_vol_multiplier 4. A scenario "
        "owns the fields it sets: leave those at their defaults"
    )

    @model_validator(mode="after")
    def _scenario_owns_its_fields(self) -> SyntheticConfig:
        # A field the scenario sets itself would be silently ignored; say so instead. The values the
        # scenarios use live in titan_ray.data.synthetic; this is which fields each one takes over.
        owned: dict[str, tuple[str, ...]] = {
            "random_walk": (
                "random_walk", "signal", "annual_drift", "regime_switch_prob", "high_vol_multiplier", "tail_dof"
            ),
            "trending": ("random_walk", "annual_drift"),
            "mean_reverting": ("random_walk", "signal"),
            "crash_and_recovery": ("random_walk", "regime_switch_prob"),
            "volatility_clustering": ("random_walk", "regime_switch_prob", "high_vol_multiplier"),
        }
        fields = type(self).model_fields
        clash = [f for f in owned.get(self.scenario, ()) if getattr(self, f) != fields[f].default]
        if clash:
            shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in clash)
            raise ValueError(
                f"scenario {self.scenario!r} sets {', '.join(clash)} itself, but the config also sets {shown}; "
                f"remove {', '.join(clash)} or use scenario 'default'"
            )
        return self


STOCK_FEEDS = ("iex", "sip", "delayed_sip", "otc", "boats", "overnight")
CRYPTO_FEEDS = ("us",)


class AlpacaEndpoints(_Strict):
    """Where alpaca-py connects; null = the env override (in brackets), else Alpaca's own URL."""

    data: str | None = Field(None, description="market-data REST base URL [APCA_API_DATA_URL]")
    stream: str | None = Field(
        None, description="market-data WebSocket URL, feed path included [APCA_API_STREAM_URL]"
    )
    trading: str | None = Field(None, description="trading REST base URL (paper) [APCA_API_BASE_URL]")
    trading_stream: str | None = Field(
        None, description="trade_updates WebSocket URL [APCA_API_TRADING_STREAM_URL]"
    )

    @field_validator("data", "stream", "trading", "trading_stream")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("an endpoint is a URL starting with http(s):// (REST) or ws(s):// (streams)")
        return v.rstrip("/") if v is not None else v


class AlpacaConfig(_Strict):
    """Bars from Alpaca's market-data API (alpaca-py). Keys come only from APCA_API_KEY_ID and
    APCA_API_SECRET_KEY in the environment, never from this file."""

    asset_class: Literal["stocks", "crypto"] = Field("stocks", description="stocks | crypto (BTC/USD, ...)")
    feed: str | None = Field(
        None, description=f"stocks: {' | '.join(STOCK_FEEDS)} (default iex, free); crypto: "
        f"{' | '.join(CRYPTO_FEEDS)} (default us)"
    )
    adjustment: Literal["raw", "split", "dividend", "all"] = Field(
        "all", description="stocks: corporate-action adjustment of historical prices"
    )
    max_retries: int = Field(6, ge=0, le=20, description="retries of a rate-limited (429) or failed (5xx) request")
    backoff_s: float = Field(1.0, gt=0, description="first retry delay; doubles per retry (Retry-After wins)")
    max_backoff_s: float = Field(60.0, gt=0, description="longest single retry delay")
    timeout_s: float = Field(30.0, gt=0, description="live: seconds to wait for the stream to authenticate")
    endpoints: AlpacaEndpoints = AlpacaEndpoints()

    @model_validator(mode="after")
    def _feed(self) -> AlpacaConfig:
        allowed = STOCK_FEEDS if self.asset_class == "stocks" else CRYPTO_FEEDS
        if self.feed is not None and self.feed not in allowed:
            raise ValueError(f"feed {self.feed!r} is not a {self.asset_class} feed; use one of {list(allowed)}")
        return self

    @property
    def feed_name(self) -> str:
        return self.feed or ("iex" if self.asset_class == "stocks" else "us")


class CacheConfig(_Strict):
    """Downloaded bars kept as Parquet, so a rerun of the same window needs no network."""

    enabled: bool = Field(True, description="read and write the bar cache")
    path: str | None = Field(
        None, description="cache folder; default $TITAN_RAY_CACHE, else ~/.cache/titan-ray/bars"
    )
    offline: bool = Field(False, description="never reach the network: serve from the cache or fail")


class FallbackConfig(_Strict):
    """Where bars come from when Alpaca is not configured (no keys) or not reachable."""

    provider: Literal["none", "cache", "csv", "parquet"] = Field(
        "cache", description="none: fail; cache: whatever the bar cache holds for the window; csv/parquet: "
        "files at fallback.path"
    )
    path: str | None = Field(None, description="csv/parquet fallback: a file or a folder of files")

    @model_validator(mode="after")
    def _path(self) -> FallbackConfig:
        if self.provider in ("csv", "parquet") and not self.path:
            raise ValueError(f"fallback provider {self.provider!r} needs `path` (a file or a folder of files)")
        return self


class SessionConfig(_Strict):
    """What to do with bars outside the regular US equities session (equities calendar only)."""

    outside: Literal["keep", "drop", "reject"] | None = Field(
        None, description="keep | drop | reject (recorded as OUTSIDE_SESSION); default drop for alpaca "
        "stocks, keep for other providers"
    )
    extra_holidays: list[str] = Field(
        default_factory=list, description="one-off closures (YYYY-MM-DD) beyond the rule-based holidays"
    )

    @field_validator("extra_holidays")
    @classmethod
    def _dates(cls, v: list[str]) -> list[str]:
        import datetime as _dt

        for day in v:
            try:
                _dt.date.fromisoformat(str(day))
            except ValueError:
                raise ValueError(f"{day!r} is not a date; write it as YYYY-MM-DD") from None
        return v


class DataConfig(_Strict):
    provider: Literal["synthetic", "csv", "parquet", "alpaca"] = Field(
        "synthetic", description="where bars come from"
    )
    symbols: list[str] | None = Field(
        None, description="synthetic: names to generate; csv/parquet: which files/symbols to use"
    )
    n_symbols: int = Field(12, ge=1, le=5000, description="synthetic: how many symbols when `symbols` is unset")
    bars: int = Field(5000, ge=2, description="synthetic: number of timestamps to generate")
    path: str | None = Field(None, description="csv/parquet: one file (one symbol) or a folder of files")
    frequency: str | None = Field(
        None, description="bar size (15min, 1h, 1D); synthetic default 15min, inferred from files"
    )
    calendar: Calendar = Field(Calendar.EQUITIES, description="equities (6.5 h, 252 days) | continuous")
    timezone: str | None = Field(
        None,
        description="time zone of naive file timestamps; default America/New_York on the equities "
        "calendar, UTC on continuous",
    )
    start: str | None = Field(None, description="first timestamp to use (inclusive), or synthetic start")
    end: str | None = Field(None, description="last timestamp to use (inclusive)")
    synthetic: SyntheticConfig = SyntheticConfig()
    alpaca: AlpacaConfig = AlpacaConfig()
    cache: CacheConfig = CacheConfig()
    fallback: FallbackConfig = FallbackConfig()
    session: SessionConfig = SessionConfig()

    @property
    def session_rule(self) -> str:
        """``session.outside`` with its provider-dependent default."""
        if self.session.outside is not None:
            return self.session.outside
        return "drop" if self.provider == "alpaca" and self.alpaca.asset_class == "stocks" else "keep"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_text(cls, v: Any) -> Any:
        # YAML reads an unquoted 2024-01-02 as a date: keep the text the user meant
        import datetime as _dt

        return v.isoformat() if isinstance(v, _dt.date) else v

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, v: str | None) -> str | None:
        if v is not None:
            parse_frequency(v)
        return v

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("give at least one symbol, or leave `symbols` out")
            dupes = sorted({s for s in v if v.count(s) > 1})
            if dupes:
                raise ValueError(f"symbols listed twice: {dupes}")
        return v

    @model_validator(mode="after")
    def _path_needed(self) -> DataConfig:
        if self.provider in ("csv", "parquet") and not self.path:
            raise ValueError(f"provider {self.provider!r} needs `data.path` (a file or a folder of files)")
        return self

    @model_validator(mode="after")
    def _crypto_is_continuous(self) -> DataConfig:
        if self.provider == "alpaca" and self.alpaca.asset_class == "crypto" and self.calendar is Calendar.EQUITIES:
            raise ValueError("alpaca crypto trades 24/7: set `data.calendar: continuous`")
        return self


# --- replay ---------------------------------------------------------------------------------


class PaceConfig(_Strict):
    """Live-like pacing: bar time advances ``speed`` times faster than the wall clock."""

    speed: float = Field(1.0, gt=0, description="1 = real time, 60 = one bar-minute per wall second")


AUTO_CHUNK_MIN = 256  # timestamps: the smallest automatic chunk (and the warm-up's, and a live warm-up's)
AUTO_CHUNK_COUNT = 16  # automatic chunks over the traded bars: enough to pipeline models and ledger
AUTO_CHUNK_CELLS = 1 << 20  # at most this many timestamps x symbols in one automatic chunk


def auto_chunk_size(n_trading: int, n_symbols: int) -> int:
    """``replay.chunk_size: auto``: the traded bars in about ``AUTO_CHUNK_COUNT`` chunks, no fewer than
    ``AUTO_CHUNK_MIN`` timestamps and no more than ``AUTO_CHUNK_CELLS`` cells each. Every chunk costs one
    call per model and one booking whatever its size, so a long replay in 256-bar chunks would spend
    its time on messages; 16 keep the models deciding one chunk while the ledger books the one before,
    and the progress bar moving. Results do not depend on the chunk size."""
    widest = max(AUTO_CHUNK_MIN, AUTO_CHUNK_CELLS // max(1, n_symbols))
    return int(min(widest, max(AUTO_CHUNK_MIN, -(-n_trading // AUTO_CHUNK_COUNT))))


class ReplayConfig(_Strict):
    chunk_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="timestamps per message; 1 = live-like; auto = the traded bars in about 16 chunks "
        "of 256 timestamps or more (the results do not depend on it)"
    )
    warmup_bars: int = Field(0, ge=0, description="bars that models see before trading starts")
    pace: PaceConfig | None = Field(None, description="null = as fast as possible")
    max_in_flight: int = Field(8, ge=1, description="chunks allowed in the pipeline at once")
    decision_timeout_s: float = Field(
        120.0, gt=0, description="a model that has not decided on a chunk by then skips it (recorded)"
    )
    models_per_actor: int = Field(
        1, ge=1, description="rule models that reserve nothing (num_cpus 0, no memory_mb, no artifact, not "
        "stacked) share a Ray actor this many at a time: one process and one call per chunk for the lot, so "
        "dozens fit on a laptop; 1 gives every model its own actor. A failing model skips its chunk alone; a "
        "dead process restarts its models together"
    )
    placement_timeout_s: float = Field(
        30.0, gt=0, description="how long the models' reserved CPUs (and memory) may wait for the cluster, "
        "and a model actor to start, before the run stops with what is still pending and why"
    )

    def chunk(self, n_trading: int, n_symbols: int) -> int:
        """Timestamps per chunk for a replay of ``n_trading`` traded timestamps of ``n_symbols`` symbols."""
        return auto_chunk_size(n_trading, n_symbols) if self.chunk_size == "auto" else self.chunk_size


# --- ledger ---------------------------------------------------------------------------------


class FixedBpsSlippage(_Strict):
    model: Literal["fixed_bps"] = "fixed_bps"
    bps: float = Field(0.0, ge=0, description="a buy fills at price*(1+bps/1e4), a sell at price*(1-bps/1e4)")


class SqrtImpactSlippage(_Strict):
    model: Literal["sqrt_impact"]
    coefficient: float = Field(
        0.01, ge=0, description="price impact = coefficient * sqrt(quantity / bar volume), as a fraction"
    )
    bps: float = Field(0.0, ge=0, description="fixed half-spread added to the impact")


class AlmgrenChrissSlippage(_Strict):
    """Almgren, Thum, Hauptmann and Li (2005), "Direct estimation of equity market impact": per fill,
    temporary impact eta * sigma * (q / V_bar)^beta against the fill, and a permanent shift
    gamma * sigma * (P + q/2) / ADV * liquidity_factor from the model's own position P (docs/risk.md)."""

    model: Literal["almgren_chriss"]
    eta: float = Field(0.142, ge=0, description="temporary impact coefficient (the paper's eta)")
    beta: float = Field(0.6, gt=0, le=2, description="temporary impact exponent (the paper's beta = 3/5)")
    gamma: float = Field(0.314, ge=0, description="permanent impact coefficient (the paper's gamma)")
    liquidity_factor: float = Field(
        1.0, gt=0, description="the paper's (shares outstanding / daily volume)^(1/4) in the permanent term; "
        "1 when unknown")
    window: int = Field(20, ge=2, description="bars of history in the causal daily volatility and volume estimates")
    bps: float = Field(0.0, ge=0, description="fixed half-spread added to the impact")


class TargetWeightSizing(_Strict):
    mode: Literal["target_weight"] = "target_weight"


class FixedQuantitySizing(_Strict):
    mode: Literal["fixed_quantity"]
    quantity: float = Field(100, gt=0, description="shares held while the weight is non-zero (sign from weight)")


class VolTargetSizing(_Strict):
    """weight x min(max_leverage, target_vol / sigma_annual), sigma from the last `window` returns."""

    mode: Literal["vol_target"]
    target_vol: float = Field(0.15, gt=0, description="annualised volatility each position is scaled to")
    window: int = Field(20, ge=2, description="bars of close-to-close returns in the causal volatility estimate")
    max_leverage: float = Field(1.0, gt=0, description="largest multiple of the model's weight the scale may reach")


class KellySizing(_Strict):
    """weight x clip(fraction x sign(weight) x mu / sigma^2, 0, cap), mu and sigma per bar over `window`."""

    mode: Literal["kelly"]
    fraction: float = Field(0.5, gt=0, le=1, description="share of the full Kelly stake (0.5: half Kelly)")
    cap: float = Field(1.0, gt=0, description="largest multiple of the model's weight the stake may reach")
    window: int = Field(60, ge=2, description="bars of close-to-close returns in the causal mean and variance")


class RiskParitySizing(_Strict):
    """The model's gross weight spread over the symbols it holds in proportion to 1 / sigma."""

    mode: Literal["risk_parity"]
    window: int = Field(20, ge=2, description="bars of close-to-close returns in the causal volatility estimate")


class StopsConfig(_Strict):
    """Protective exits evaluated on each bar's high and low (docs/risk.md: levels and the gap rule)."""

    stop_loss_pct: float | None = Field(None, gt=0, lt=1, description="exit when price falls this share below entry")
    stop_loss_atr: float | None = Field(None, gt=0, description="exit this many ATRs below entry")
    take_profit_pct: float | None = Field(None, gt=0, description="exit when price rises this share above entry")
    take_profit_atr: float | None = Field(None, gt=0, description="exit this many ATRs above entry")
    trailing_pct: float | None = Field(None, gt=0, lt=1, description="exit this share below the best price since entry")
    trailing_atr: float | None = Field(None, gt=0, description="exit this many ATRs below the best price since entry")
    atr_period: int = Field(14, ge=1, description="bars in the average true range (simple mean)")

    @model_validator(mode="after")
    def _one_unit_each(self) -> StopsConfig:
        for exit_ in ("stop_loss", "take_profit", "trailing"):
            if getattr(self, f"{exit_}_pct") is not None and getattr(self, f"{exit_}_atr") is not None:
                raise ValueError(f"{exit_}_pct and {exit_}_atr are both set: keep one of them")
        return self

    @property
    def active(self) -> bool:
        return any(getattr(self, k) is not None for k in type(self).model_fields if k != "atr_period")

    @property
    def uses_atr(self) -> bool:
        return any(getattr(self, f"{e}_atr") is not None for e in ("stop_loss", "take_profit", "trailing"))


class ExecutionConfig(_Strict):
    """How a parent order is worked: at once, or in child orders over several bars (docs/risk.md)."""

    algo: Literal["immediate", "twap", "vwap", "pov"] = Field(
        "immediate", description="immediate: all at the fill bar; twap/vwap: over `bars` bars; pov: `rate` of volume")
    bars: int = Field(4, ge=1, description="twap/vwap: bars the parent order is spread over")
    rate: float = Field(0.1, gt=0, le=1, description="pov: share of each bar's volume a child order takes")
    volume_window: int = Field(20, ge=1, description="vwap: bars of history in the expected bar volume")


class JournalConfig(_Strict):
    """Where the ledger writes each chunk before acknowledging it, to rebuild after a crash."""

    backend: Literal["sqlite", "redis", "memory"] = Field(
        "sqlite", description="sqlite: journal.sqlite in the results folder; redis: a Redis Stream "
        "(multi-node clusters); memory: none (no crash recovery)"
    )
    url: str | None = Field(
        None, description="redis backend: redis://host:port/db, or env:VAR to read it from the environment"
    )


class LedgerConfig(_Strict):
    initial_cash: Decimal = Field(Decimal(1_000_000), gt=0)
    commission_bps: Decimal = Field(Decimal(10), ge=0, description="of the slipped traded value, per fill")
    slippage: Annotated[FixedBpsSlippage | SqrtImpactSlippage | AlmgrenChrissSlippage, Field(discriminator="model")] = (
        FixedBpsSlippage()
    )
    sizing: Annotated[
        TargetWeightSizing | FixedQuantitySizing | VolTargetSizing | KellySizing | RiskParitySizing,
        Field(discriminator="mode"),
    ] = TargetWeightSizing()
    stops: StopsConfig = Field(StopsConfig(), description="stop-loss, take-profit and trailing exits")
    execution: ExecutionConfig = Field(ExecutionConfig(), description="how parent orders are worked")
    fill: Literal["next_open", "same_close"] = Field("next_open", description="when a decision's orders fill")
    fractional: bool = Field(False, description="allow fractional share quantities")
    max_participation: float | None = Field(
        None, gt=0, le=1, description="cap each fill at this share of the bar's volume; the rest keeps working"
    )
    journal: JournalConfig = JournalConfig()
    memory_rows: int = Field(
        16_384, ge=1, description="records of each kind (fills, orders, equity rows, ...) a model's book keeps "
        "in RAM, to twice that; older ones go to files the results read back, so a live ledger stays flat"
    )

    @field_validator("initial_cash", "commission_bps", mode="before")
    @classmethod
    def _decimal_from_text(cls, v: Any) -> Any:
        # YAML floats go through their shortest repr, so 0.1 stays 0.1 and not 0.1000000000000000055.
        return Decimal(repr(v)) if isinstance(v, float) else v


class RiskConfig(_Strict):
    max_position_pct: float = Field(1.0, gt=0, description="largest |position value| / equity after a fill")
    max_gross_exposure: float = Field(1.0, gt=0, description="largest sum of |position value| / equity")
    daily_loss_limit_pct: float | None = Field(
        None, gt=0, lt=1, description="flatten and stop adding risk for the day after losing this share"
    )
    max_drawdown_pct: float | None = Field(
        None, gt=0, lt=1, description="circuit breaker: flatten and halt the model past this drawdown"
    )
    max_var_pct: float | None = Field(
        None, gt=0, lt=1, description="no new risk while the model's rolling VaR (a loss, as a share of equity) "
        "is above this")
    var_level: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the VaR limit")
    var_window: int = Field(250, ge=10, description="bars of the model's own returns in the rolling VaR")
    var_method: Literal["historical", "parametric"] = Field(
        "historical", description="historical: the empirical quantile; parametric: normal mean - z x sd")
    max_group_pct: float | None = Field(
        None, gt=0, description="largest sum of |position value| / equity within one group of `groups`")
    groups: dict[str, str] = Field(
        default_factory=dict, description="symbol -> group (sector, asset class) for max_group_pct")

    @model_validator(mode="after")
    def _groups_for_cap(self) -> RiskConfig:
        if self.max_group_pct is not None and not self.groups:
            raise ValueError("max_group_pct caps groups of symbols: give `groups`, a map of symbol -> group name")
        return self


# --- models and scoring -----------------------------------------------------------------------


LEARNED_NUM_CPUS = 0.25  # ModelSpec.num_cpus when unset, for a model kind that is not a rule model


# The model registry's aliases (titan_ray.registry), and a reference to a registered model: NAME,
# NAME@VERSION or NAME@ALIAS; here because the arena's config validates its `artifact` keys with it.
MODEL_ALIASES = ("champion", "challenger")
REF_PATTERN = rf"^[A-Za-z0-9_.\-]{{1,80}}(@([1-9][0-9]*|{'|'.join(MODEL_ALIASES)}))?$"


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,40}$", description="unique name on the leaderboard")
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    num_cpus: float = Field(
        ge=0, description="Ray CPUs reserved by the model's actor; default 0 for a rule model (sma_crossover, "
        "rsi_reversion, buy_and_hold, random: cheap, single-threaded), 0.25 for the others"
    )
    memory_mb: int = Field(
        0, ge=0, description="memory (MiB) reserved for the model's actor: Ray places it on a node with that "
        "much unreserved; 0 = none reserved"
    )
    artifact: str | None = Field(
        None, pattern=REF_PATTERN,
        description="load a trained model from the registry instead of fitting: NAME (latest), "
        "NAME@VERSION or NAME@ALIAS (champion, challenger); `params` then override the registered ones",
    )

    @model_validator(mode="before")
    @classmethod
    def _cpus_by_kind(cls, data: Any) -> Any:
        # Ray queues an actor that cannot get its CPUs, so the default must let any number of rule
        # models run on a laptop: they reserve none and share the cores; a learned model (torch,
        # LightGBM; one thread each) keeps a quarter core, so the default arena's five take 1.25.
        if isinstance(data, dict) and data.get("num_cpus") is None:
            rule = data.get("kind") in load("titan_ray.models.kinds:BASELINE_KINDS")
            return {**data, "num_cpus": 0.0 if rule else LEARNED_NUM_CPUS}
        return data

    @model_validator(mode="after")
    def _kind_and_params(self) -> ModelSpec:
        kinds = _model_params()
        if self.kind not in kinds:
            hint = difflib.get_close_matches(self.kind, kinds, n=1)
            maybe = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(f"unknown model kind {self.kind!r}{maybe} Known kinds: {sorted(kinds)}")
        try:
            kinds[self.kind].model_validate(self.params)
        except ValidationError as err:
            allowed = ", ".join(kinds[self.kind].model_fields)

            def text(e: Any) -> str:
                where = "params" + "".join(f".{part}" for part in e["loc"])
                if e["type"] == "extra_forbidden":
                    return f"{where}: unknown key; allowed: {allowed}"
                return f"{where}: {e['msg'].removeprefix('Value error, ')}"

            problems = "; ".join(text(e) for e in err.errors())
            raise ValueError(f"{self.kind} {problems}") from None
        return self


class RedisConfig(_Strict):
    """Fan-out of bars, fills and leaderboard updates on Redis channels for outside consumers."""

    url: str | None = Field(None, description="redis://host:port/db or env:VAR; null = no fan-out")


class WatchdogConfig(_Strict):
    """Notices stalled or crash-looping model actors; restarts them or takes them out of the arena."""

    enabled: bool = True
    interval_s: float = Field(1.0, gt=0, description="how often heartbeats are collected")
    stall_after_s: float = Field(60.0, gt=0, description="no decision for this long: STALLED, restarted")
    max_restarts: int = Field(3, ge=0, description="restarts within window_s beyond which a model is removed")
    window_s: float = Field(300.0, gt=0)
    webhook_env: str = Field(
        "TITAN_RAY_ALERT_WEBHOOK", description="environment variable holding a Slack-compatible webhook URL"
    )


class SignificanceConfig(_Strict):
    n_resamples: int = Field(2000, ge=100, description="bootstrap resamples of the Sharpe difference")
    block: int | None = Field(None, ge=1, description="bootstrap block length in bars; default ~ n^(1/3)")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="significance level of the leaderboard marker")


class PaperCheckConfig(_Strict):
    """Cross-validation: one model's orders also go to an Alpaca paper account; the ledger stays the truth."""

    model: str = Field(description="the arena model whose orders are mirrored to the paper account")
    fill_wait_s: float = Field(30.0, ge=0, description="at the end, how long to wait for open paper orders")
    cancel_open_orders: bool = Field(True, description="cancel paper orders still open when the run ends")


class LiveConfig(_Strict):
    """Live mode: bars from the provider's stream, one chunk per bar, until a limit or Ctrl-C."""

    max_bars: int | None = Field(None, ge=1, description="stop after this many live bars (null = no limit)")
    max_seconds: float | None = Field(None, gt=0, description="stop after this long (null = no limit)")
    stop_at_close: bool = Field(False, description="equities: stop when the regular session closes")
    bar_grace_s: float = Field(
        5.0, gt=0, description="how long a bar time waits for the symbols that have not sent their bar yet"
    )
    history_days: int = Field(
        10, ge=1, description="warm-up: calendar days of history fetched when data.start is not set"
    )
    paper: PaperCheckConfig | None = Field(None, description="mirror one model to an Alpaca paper account")


class RegistryConfig(_Strict):
    """Where trained models are stored (``titan_ray.registry``)."""

    path: str | None = Field(
        None, description="registry folder; null = $TITAN_RAY_REGISTRY, else ./registry"
    )


class TrackingConfig(_Strict):
    """Where runs are logged (``titan_ray.tracking``): an `mlflow server`'s http(s) URL."""

    mlflow_uri: str | None = Field(
        None, description="MLflow tracking server, e.g. http://127.0.0.1:5000; null = $MLFLOW_TRACKING_URI, else off"
    )


class ArenaConfig(_Strict):
    seed: int = Field(7, description="seeds the data, random models and the bootstrap")
    data: DataConfig = DataConfig()
    replay: ReplayConfig = ReplayConfig()
    ledger: LedgerConfig = LedgerConfig()
    risk: RiskConfig = RiskConfig()
    models: list[ModelSpec] = Field(min_length=1)
    benchmark: str | None = Field(
        None, description="model the others are tested against; default: the first buy_and_hold"
    )
    significance: SignificanceConfig = SignificanceConfig()
    redis: RedisConfig = RedisConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig()
    live: LiveConfig | None = Field(None, description="null = replay history; set = trade a live stream")

    @model_validator(mode="after")
    def _live(self) -> ArenaConfig:
        if self.live is None:
            return self
        if self.data.provider != "alpaca":
            raise ValueError("live mode streams bars from Alpaca: set data.provider: alpaca (or remove `live`)")
        names = [m.name for m in self.models]
        if self.live.paper is not None and self.live.paper.model not in names:
            raise ValueError(f"live.paper.model {self.live.paper.model!r} is not one of the models {names}")
        return self

    @model_validator(mode="after")
    def _warmup_for_learned(self) -> ArenaConfig:
        kinds = _model_params()
        for i, m in enumerate(self.models):
            need = kinds[m.kind].model_validate(m.params).min_history()
            if m.artifact is None and self.replay.warmup_bars < need:
                raise ValueError(
                    f"models[{i}] ({m.name}, {m.kind}) fits on the warm-up bars and needs at least "
                    f"{need}; replay.warmup_bars is {self.replay.warmup_bars}: raise replay.warmup_bars "
                    f"or load a trained model with `artifact: NAME`"
                )
        return self

    @model_validator(mode="after")
    def _names(self) -> ArenaConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {dupes}")
        if self.benchmark is not None and self.benchmark not in names:
            raise ValueError(f"benchmark {self.benchmark!r} is not one of the models {names}")
        return self

    @model_validator(mode="after")
    def _stacked_inputs(self) -> ArenaConfig:
        names = [m.name for m in self.models]
        reads = self.stacking_inputs
        for i, m in enumerate(self.models):
            for j, n in enumerate(reads.get(m.name, ())):
                where = f"models[{i}] ({m.name}) params.inputs[{j}]"
                if n == m.name:
                    raise ValueError(f"{where}: a model cannot stack itself; remove {n!r}")
                if n not in names:
                    hint = difflib.get_close_matches(n, names, n=1)
                    maybe = f"; did you mean {hint[0]!r}?" if hint else ""
                    raise ValueError(f"{where}: {n!r} is not a model of this arena{maybe} Name one of {names}")
            if m.name in reads and m.artifact is not None:
                raise ValueError(f"models[{i}] ({m.name}) stacks arena models (params.inputs) and fits on their "
                                 "signals in the arena: remove `artifact`")
        _decision_order(self.models, reads)  # names a cycle
        return self

    @property
    def stacking_inputs(self) -> dict[str, tuple[str, ...]]:
        """Meta-model → the arena models whose decisions it reads (``params.inputs``), for those that have any."""
        kinds = _model_params()
        reads = {m.name: kinds[m.kind].model_validate(m.params).arena_inputs() for m in self.models}
        return {name: inputs for name, inputs in reads.items() if inputs}

    @property
    def decision_order(self) -> list[str]:
        """The model names, every meta-model after the models it stacks (otherwise in config order)."""
        return _decision_order(self.models, self.stacking_inputs)

    @property
    def benchmark_model(self) -> str | None:
        if self.benchmark is not None:
            return self.benchmark
        return next((m.name for m in self.models if m.kind == "buy_and_hold"), None)


def _decision_order(models: list[ModelSpec], reads: dict[str, tuple[str, ...]]) -> list[str]:
    """Depth first in config order: each model after the models it reads; a ValueError names a cycle."""
    index = {m.name: i for i, m in enumerate(models)}
    order: list[str] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in done:
            return
        if name in path:
            cycle = " → ".join([*path[path.index(name):], name])
            raise ValueError(f"models[{index[name]}] ({name}) params.inputs: the meta-models read each other in a "
                             f"cycle ({cycle}); a model cannot stack one that stacks it: remove one of these inputs")
        for n in reads.get(name, ()):
            visit(n, [*path, name])
        done.add(name)
        order.append(name)

    for m in models:
        visit(m.name, [])
    return order


# --- loading with readable errors -------------------------------------------------------------


def _path_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("FixedBpsSlippage", "SqrtImpactSlippage", "TargetWeightSizing", "FixedQuantitySizing"):
            continue  # union branch names pydantic inserts; the user never wrote them
        elif part in ("fixed_bps", "sqrt_impact", "target_weight", "fixed_quantity"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at the parent of ``loc``, found by walking the config models."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            # a union branch name inserted by pydantic
            branch = {
                "fixed_bps": FixedBpsSlippage,
                "sqrt_impact": SqrtImpactSlippage,
                "target_weight": TargetWeightSizing,
                "fixed_quantity": FixedQuantitySizing,
            }.get(part)
            if branch is None:
                return []
            current = branch
            continue
        ann = fields[part].annotation
        current = next(
            (a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)),
            ann,
        )
        if hasattr(ann, "__args__") and not isinstance(current, type):
            return []
    return list(getattr(current, "model_fields", {}))


def format_validation_error(err: ValidationError, root: type[BaseModel] = ArenaConfig) -> str:
    lines = []
    for e in err.errors():
        loc = e["loc"]
        where = _path_text(loc)
        if e["type"] == "extra_forbidden":
            known = _known_keys(root, loc)
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            fix = f"did you mean {hint[0]!r}? " if hint else ""
            lines.append(f"  {where}: unknown key; {fix}allowed keys here: {', '.join(known)}")
        elif e["type"] == "missing":
            lines.append(f"  {where}: required, but missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            lines.append(f"  {where}: {msg}{shown}")
    return "invalid arena config:\n" + "\n".join(lines)


def parse_config(raw: dict[str, Any], *, source: str = "config") -> ArenaConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (seed, data, models, ...)")
    try:
        return ArenaConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err)}") from None


def read_yaml(src: Path, what: str) -> Any:
    """The YAML document in ``src`` (None for an empty file read as {}); a ConfigError when it is
    missing or not YAML, ``what`` naming the file's role."""
    if not src.exists():
        raise ConfigError(f"{what} {src} does not exist; pass --config with a YAML file")
    try:
        return yaml.safe_load(src.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{src}: not valid YAML: {err}") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> ArenaConfig:
    """Read a YAML arena config (the packaged default when ``path`` is None)."""
    src = Path(path) if path is not None else default_config_path()
    raw = read_yaml(src, "config file")
    if overrides:
        raw = _deep_merge(raw, overrides)
    return parse_config(raw, source=str(src))


def default_config_path() -> Path:
    return Path(__file__).parent / "configs" / "default.yaml"


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_url(url: str | None, field: str) -> str | None:
    """A URL from the config, or from the environment for ``env:VAR`` (secrets stay out of files)."""
    if url is None or not url.startswith("env:"):
        return url
    import os

    var = url.removeprefix("env:")
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"{field} reads the environment variable {var}, which is not set; export {var}=redis://...")
    return value


def config_to_dict(config: ArenaConfig) -> dict[str, Any]:
    """JSON-safe dict of a config (Decimals as strings, so nothing is rounded on the way)."""
    return config.model_dump(mode="json")
