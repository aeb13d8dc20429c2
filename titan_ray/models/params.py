"""Every model kind's parameters, apart from the code that trades them: pydantic and numbers only.

``MODEL_PARAMS`` maps a model kind (the ``kind`` key of a model in the arena config) to its
parameter class. Validating a config reads only this module, so it never imports torch, LightGBM
or RLlib; the implementations (``titan_ray.models.kinds``, loaded by name on first use) point
their ``Params`` at these classes.

Each class is strict (unknown keys rejected) and frozen. ``min_history()`` is the fewest warm-up
bars a model with these parameters needs before its first decision: 0 for the rule models and
for a policy loaded from the registry; a learned model fits on its warm-up bars and needs enough
for its features' lookback, its label horizon and 100 rows to learn from.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from titan_ray.features.pipeline import FeatureEngine


class ModelParams(BaseModel):
    """Base of every model's parameters: strict, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def min_history(self) -> int:
        """Fewest warm-up bars before the first decision: none unless the model fits on them."""
        return 0

    def arena_inputs(self) -> tuple[str, ...]:
        """The other arena models whose decisions this model reads (a meta-model's); none for most."""
        return ()


# --- the rule-based baselines -----------------------------------------------------------------


class SmaParams(ModelParams):
    fast: int = Field(10, ge=1, description="bars in the fast average")
    slow: int = Field(30, ge=2, description="bars in the slow average")
    weight: float | None = Field(None, gt=0, le=1, description="weight of a long position; default 1/S")

    @model_validator(mode="after")
    def _order(self) -> SmaParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        return self


class RsiParams(ModelParams):
    period: int = Field(14, ge=2, description="bars in Wilder's RSI")
    low: float = Field(30, gt=0, lt=100, description="go long when RSI falls below this (oversold)")
    high: float = Field(70, gt=0, lt=100, description="go flat when RSI rises above this (overbought)")
    weight: float | None = Field(None, gt=0, le=1, description="weight of a long position; default 1/S")

    @model_validator(mode="after")
    def _order(self) -> RsiParams:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class HoldParams(ModelParams):
    weight: float | None = Field(None, gt=0, le=1, description="weight of each symbol; default 1/S")


class RandomParams(ModelParams):
    every: int = Field(26, ge=1, description="bars between fresh random draws")
    p_long: float = Field(0.5, ge=0, le=1, description="chance of holding each symbol after a draw")
    allow_short: bool = Field(False, description="draw short positions too (with the same chance)")
    weight: float | None = Field(None, gt=0, le=1, description="weight of a position; default 1/S")


# --- learned models -----------------------------------------------------------------------------


class LearnedParams(ModelParams):
    """Parameters every learned model has (subclasses add their own)."""

    features: list[str] | None = Field(None, description="feature names (titan_ray.features); default all")
    label: Literal["forward_return", "triple_barrier"] = Field(
        "forward_return", description="training target: forward log return or triple-barrier label")
    horizon: int = Field(5, ge=1, le=500, description="bars ahead the label looks")
    barrier_width: float = Field(1.0, gt=0,
                                 description="triple_barrier: barrier at width x sigma x sqrt(horizon)")
    demean: bool = Field(True, description="forward_return: subtract the cross-sectional mean of each row")
    refit_every: int | None = Field(None, ge=1, description="bars between rolling refits while trading; "
                                    "null = fit once on the warm-up bars")
    train_window: int | None = Field(None, ge=50, description="bars a (re)fit trains on: the last N; "
                                     "null = every bar seen")
    entry: float = Field(1.0, ge=0, description="go long when the standardised score exceeds this")
    exit: float = Field(0.0, description="leave a long when the standardised score falls below this")
    allow_short: bool = Field(False, description="go short when the standardised score is below -entry")
    weight: float | None = Field(None, gt=0, le=1, description="weight of a position; default 1/S")
    decide_every: int = Field(1, ge=1, description="re-evaluate positions every N bars (global index)")

    @model_validator(mode="after")
    def _check(self) -> LearnedParams:
        lookback = FeatureEngine(self.features).lookback  # names an unknown feature
        if self.train_window is not None and self.train_window < lookback + self.horizon + 100:
            raise ValueError(f"train_window ({self.train_window}) must be at least "
                             f"{lookback + self.horizon + 100} bars (features' lookback + horizon + 100)")
        if self.exit > self.entry:
            raise ValueError(f"exit ({self.exit}) must not be above entry ({self.entry})")
        return self

    def min_history(self) -> int:
        """The first fit's need: the features' lookback, the label horizon and 100 rows."""
        return FeatureEngine(self.features).lookback + self.horizon + 100


class LightGBMParams(LearnedParams):
    objective: Literal["regression", "binary"] = Field(
        "regression", description="regression: predict the label; binary: probability it is positive")
    n_estimators: int = Field(200, ge=1, description="most boosting rounds (early stopping may use fewer)")
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(50, ge=1, description="fewest training rows in a leaf")
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    cv_folds: int = Field(3, ge=0, description="purged K-fold splits for choosing the rounds; 0 or 1 = none")
    embargo: float = Field(0.01, ge=0, description="bars (or, below 1, share of the window) embargoed after "
                           "each test fold")
    early_stopping: int = Field(20, ge=1, description="rounds without improvement before a fold stops")
    num_threads: int = Field(1, ge=1, description="LightGBM threads (1 keeps arenas of many models fair)")


StackingBase = Literal["lightgbm", "ridge", "momentum", "reversion"]
_RULE_INPUT = {"momentum": "ret_20", "reversion": "rsi_14"}  # the feature each rule base reads


# keys that configure the internal base signals; a stack over arena models (``inputs``) has none
_INTERNAL_ONLY = ("bases", "ridge_l2", "lgb_rounds", "lgb_leaves", "features")


class StackingParams(LearnedParams):
    inputs: list[str] | None = Field(
        None, min_length=1, description="stack these arena models (their names): the meta-model's inputs are "
        "their decisions (out of fold over the warm-up bars, then live); null = the internal base signals")
    bases: list[StackingBase] = Field(["lightgbm", "ridge", "momentum", "reversion"], min_length=1,
                                      description="base signals: lightgbm, ridge, momentum, reversion")
    cv_folds: int = Field(4, ge=2, description="purged K-fold splits that make the out-of-fold signals (with "
                          "`inputs`: the folds each learned input refits on over the warm-up bars)")
    embargo: float = Field(0.01, ge=0, description="bars (or, below 1, share) embargoed after each test fold")
    meta_l2: float = Field(1.0, ge=0, description="ridge penalty of the meta-model (per row, scaled by n)")
    ridge_l2: float = Field(10.0, ge=0, description="ridge penalty of the ridge base (per row, scaled by n)")
    lgb_rounds: int = Field(80, ge=1, description="boosting rounds of the lightgbm base")
    lgb_leaves: int = Field(7, ge=2, description="leaves per tree of the lightgbm base")

    @model_validator(mode="after")
    def _bases(self) -> StackingParams:
        if self.inputs is not None:
            if len(set(self.inputs)) != len(self.inputs):
                raise ValueError(f"inputs listed twice: {self.inputs}")
            fields = type(self).model_fields
            internal = [k for k in _INTERNAL_ONLY if getattr(self, k) != fields[k].default]
            if internal:
                raise ValueError(f"{', '.join(internal)} configure the internal base signals, which a stack over "
                                 f"arena models (`inputs`) does not have: remove {', '.join(internal)}")
            return self
        if len(set(self.bases)) != len(self.bases):
            raise ValueError(f"bases listed twice: {self.bases}")
        if self.features is not None:
            missing = [f"{b} needs feature {_RULE_INPUT[b]}" for b in self.bases
                       if b in _RULE_INPUT and _RULE_INPUT[b] not in self.features]
            if missing:
                raise ValueError("; ".join(missing))
        return self

    def arena_inputs(self) -> tuple[str, ...]:
        return tuple(self.inputs or ())

    def min_history(self) -> int:
        """A stack over arena models reads no features: its label horizon and 100 rows."""
        return self.horizon + 100 if self.inputs is not None else super().min_history()


class SequenceParams(LearnedParams):
    window: int = Field(16, ge=2, le=256,
                        description="bars of features one prediction reads (the input window)")
    hidden: int = Field(32, ge=2, le=512, description="width of the net's hidden layers")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout while training")
    quantiles: list[float] | None = Field(
        None, description="train a quantile head (pinball loss) on these levels, e.g. [0.1, 0.5, 0.9]; the "
        "score is the 0.5 quantile, which must be listed; null = one point forecast (squared loss)")
    epochs: int = Field(12, ge=1, le=1000, description="most passes over the training windows")
    batch_size: int = Field(256, ge=8, description="windows per gradient step")
    lr: float = Field(2e-3, gt=0, le=1, description="AdamW learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    patience: int = Field(3, ge=1, description="epochs without a better validation loss before stopping")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="time-ordered tail of the training bars used "
                                "for early stopping (0 = none: train all epochs)")
    max_train_windows: int | None = Field(
        40_000, ge=100, description="train on at most about this many windows, thinned evenly over the "
        "training bars (every k-th bar); null = all")
    threads: int = Field(1, ge=1, le=64, description="torch threads (1 keeps arenas of many models fair and "
                         "results repeatable)")
    block: int = Field(64, ge=1, le=4096, description="windows per forward pass when scoring (fixed, padded: "
                       "scores never depend on the chunk size)")

    @model_validator(mode="after")
    def _check_quantiles(self) -> SequenceParams:
        q = self.quantiles
        if q is not None:
            if not q or any(not 0 < x < 1 for x in q) or sorted(set(q)) != list(q):
                raise ValueError(f"quantiles must be increasing levels strictly between 0 and 1, got {q}")
            if 0.5 not in q:
                raise ValueError(f"quantiles must include 0.5 (the score is the median), got {q}")
        return self


class LstmAttentionParams(SequenceParams):
    layers: int = Field(1, ge=1, le=4, description="stacked LSTM layers")
    attention: Literal["additive", "dot"] = Field(
        "additive", description="attention scorer: additive (Bahdanau) or scaled dot product (Luong)")
    ig_steps: int = Field(32, ge=2, le=512,
                          description="Integrated Gradients steps (Gauss-Legendre) per decision")
    ig_block: int = Field(8, ge=1, le=256, description="decisions attributed per pass (fixed, padded)")


class TftParams(SequenceParams):
    # a TFT runs a small network per input variable and bar: smaller defaults than the LSTM's keep
    # a fit on the default arena (12 symbols, thousands of warm-up bars) within seconds on 2 cores
    window: int = Field(12, ge=2, le=256,
                        description="bars of features one prediction reads (the input window)")
    max_train_windows: int | None = Field(
        16_000, ge=100, description="train on at most about this many windows, thinned evenly over the "
        "training bars (every k-th bar); null = all")
    epochs: int = Field(10, ge=1, le=1000, description="most passes over the training windows")
    hidden: int = Field(16, ge=2, le=512,
                        description="width of the net's hidden layers (a multiple of heads)")
    heads: int = Field(2, ge=1, le=16, description="attention heads (they share one value projection)")

    @model_validator(mode="after")
    def _check_heads(self) -> TftParams:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        return self


# --- a trained RL policy ------------------------------------------------------------------------


class PpoParams(ModelParams):
    deterministic: bool = Field(True, description="take the most likely action; false = sample it (seeded)")
    ig_steps: int = Field(64, ge=2, le=512, description="Integrated Gradients steps per explanation")
    threads: int = Field(1, ge=1, le=64, description="torch threads while deciding (1 keeps arenas of many "
                         "models fair)")
    # start-up training: a `ppo` model with no `artifact` trains on the warm-up bars (titan_ray/train/ppo.py)
    train_steps: int = Field(32768, ge=256, description="no `artifact`: env steps of PPO on the warm-up bars at "
                             "start-up (about 1,400 per CPU-second); the policy is registered and reused")
    train_features: list[str] = Field(["ret_20", "vol_20", "rank_ret_20"], min_length=1,
                                      description="no `artifact`: the features the start-up policy observes")

    @model_validator(mode="after")
    def _train_features(self) -> PpoParams:
        FeatureEngine(self.train_features)  # an unknown name raises, listing the known ones
        return self

    def min_history(self) -> int:
        """Start-up training: the features' lookback, then room for several 64-bar episodes."""
        return FeatureEngine(self.train_features).lookback + 256


# --- a fund of models ------------------------------------------------------------------------


class AllocatorParams(ModelParams):
    inputs: list[str] = Field(..., min_length=1, description="the arena models (their names) it allocates "
                              "capital across: its weight is the allocation-weighted sum of their target weights")
    method: Literal["equal", "inverse_vol", "hrp"] = Field(
        "hrp", description="how the allocation is set from the members' returns: equal (1/M), inverse_vol "
        "(proportional to 1/volatility) or hrp (Hierarchical Risk Parity, single linkage)")
    lookback: int = Field(60, ge=2, description="member returns (bars) each allocation is estimated on; equal "
                          "weight until this many exist")
    rebalance_every: int = Field(20, ge=1, description="bars between allocations, from the first (once "
                                 "`lookback` member returns exist)")

    @model_validator(mode="after")
    def _unique(self) -> AllocatorParams:
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"inputs listed twice: {self.inputs}")
        return self

    def arena_inputs(self) -> tuple[str, ...]:
        return tuple(self.inputs)


# --- LLM competitors (titan_ray/models/llm.py) ----------------------------------------------------

DEFAULT_LLM_MODEL = "llama3.1:8b"
DEFAULT_LLM_FEATURES = ["ret_1", "ret_5", "ret_20", "vol_20", "rsi_14", "bb_pos_20"]


class LlmMember(ModelParams):
    """One voter of an LLM committee: its model, and where to reach it when not at the committee's endpoint."""

    model: str = Field(..., min_length=1, description="the model's name at the endpoint, e.g. llama3.1:8b")
    base_url: str | None = Field(None, description="its OpenAI-compatible endpoint; null = the committee's")
    api_key_env: str | None = Field(None, description="the environment variable holding its key; null = the "
                                    "committee's")


class LlmParams(ModelParams):
    base_url: str = Field("http://localhost:11434/v1", description="an OpenAI-compatible endpoint (the part "
                          "before /chat/completions): Ollama, vLLM, llama.cpp server, OpenRouter")
    model: str | None = Field(None, description=f"the model's name at the endpoint (or give `members`); null "
                              f"and no members = {DEFAULT_LLM_MODEL} (Ollama's name)")
    api_key_env: str | None = Field(None, description="name of the environment variable that holds the API key "
                                    "(the key itself never goes in a config); null = no Authorization header")
    members: list[LlmMember] | None = Field(
        None, min_length=1, description="a committee: each member answers, the target is the mean of the valid "
        "answers' weights; null = one model (`model`)")
    every: int = Field(25, ge=1, description="decide on the global bars that are multiples of this (like `random`)")
    timeout_s: float = Field(30.0, gt=0, description="deadline of one request, retries and back-off included; "
                             "keep it well under replay.decision_timeout_s")
    max_retries: int = Field(4, ge=0, description="retries on 429 and 5xx (Retry-After honoured) and on a "
                             "dropped connection")
    backoff_s: float = Field(0.5, ge=0, description="first back-off without a Retry-After; doubles per retry")
    max_concurrency: int = Field(8, ge=1, le=256, description="requests in flight at once per model actor")
    symbols_per_request: int | None = Field(None, ge=1, description="symbols in one prompt; null = all")
    features: list[str] = Field(default_factory=lambda: list(DEFAULT_LLM_FEATURES), min_length=1,
                                description="causal features shown per symbol (titan_ray.features)")
    bars_shown: int = Field(10, ge=1, le=500, description="recent closes shown per symbol, the decision bar's last")
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(400, ge=16, description="most completion tokens per answer")
    allow_short: bool = Field(False, description="weights in -1..1 instead of 0..1")
    cache_dir: str | None = Field(None, description="response cache folder; null = llm_cache in the run's "
                                  "results folder (./llm_cache without one)")
    cache_only: bool = Field(False, description="answer from the cache only, fail on a miss (also "
                             "TITAN_RAY_LLM_CACHE_ONLY=1, or `titan-ray arena --llm-cache-only`)")
    knowledge_cutoff: str | None = Field(
        None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD: decisions on bars before it are "
        "flagged `contaminated` (the model may have seen what came next)")
    anonymise_symbols: bool = Field(False, description="show SYM1..SYMn instead of the tickers")
    shift_days: int = Field(0, ge=0, description="shift the dates shown back by this many days")
    cost_per_1k_prompt: float = Field(0.0, ge=0, description="price of 1,000 prompt tokens (any currency)")
    cost_per_1k_completion: float = Field(0.0, ge=0, description="price of 1,000 completion tokens")

    @model_validator(mode="after")
    def _check(self) -> LlmParams:
        if self.model is not None and self.members is not None:
            raise ValueError("give either `model` (one LLM) or `members` (a committee), not both")
        FeatureEngine(self.features)  # an unknown name raises, listing the known ones
        if self.knowledge_cutoff is not None:
            date.fromisoformat(self.knowledge_cutoff)  # 2024-02-30 raises
        return self

    def voters(self) -> list[LlmMember]:
        """The members, each with its endpoint and key variable filled in from the committee's."""
        if self.members is None:
            return [LlmMember(model=self.model or DEFAULT_LLM_MODEL, base_url=self.base_url, api_key_env=self.api_key_env)]
        return [LlmMember(model=m.model, base_url=m.base_url or self.base_url,
                          api_key_env=m.api_key_env if m.api_key_env is not None else self.api_key_env)
                for m in self.members]


MODEL_PARAMS: Mapping[str, type[ModelParams]] = {
    "sma_crossover": SmaParams,
    "rsi_reversion": RsiParams,
    "buy_and_hold": HoldParams,
    "random": RandomParams,
    "lightgbm": LightGBMParams,
    "stacking": StackingParams,
    "lstm_attention": LstmAttentionParams,
    "tft": TftParams,
    "ppo": PpoParams,
    "allocator": AllocatorParams,
    "llm": LlmParams,
}
