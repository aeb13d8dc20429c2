"""Predictions of one served model: the request body, the answer, and the code between (no Ray).

A request carries either a window of recent bars or one feature row per symbol:

    {"bars": {"symbols": ["AAA"], "close": [[101.2], [101.9], ...],       # rows = timestamps
              "open": ..., "high": ..., "low": ..., "volume": ..., "timestamps": [...]}}
    {"features": {"AAA": {"ret_1": 0.001, "rsi_14": 41.0, ...}}}          # learned models only

Only ``close`` is required in ``bars``: ``open``, ``high`` and ``low`` default to the close and
``volume`` to unknown (NaN); ``timestamps`` (unix seconds or ISO 8601) default to one minute apart.
A ``null`` price is a missing bar. The model runs over the window from a fresh state, exactly as
the arena would have run it over those bars, and the answer is its decision at the last bar:

    {"model", "kind", "version", "method", "as_of",
     "predictions": [{"symbol", "target_weight", "previous_weight", "score",
                      "explanation": {"base_value", "features": [{"name","value","attribution"}],
                                      "sentence"}}]}

``score`` is the model's signal at that bar: a learned model's raw score; for a rule model the
sum of its features' attributions (the SMA gap in %, the RSI's distance past its threshold).

The model's own public entry points do the work (``TradingModel.explain`` for bars,
``explain_rows`` for feature rows, ``inputs()`` for what it reads); this module validates the
request against them and writes the answer.

A request the model cannot answer (a window too short for its features, feature rows sent to a
model that decides from bars) raises ``PredictError``: the HTTP layer answers 422 with its message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from titan_ray.config import DataConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Feature
from titan_ray.models.base import Inputs, Prediction, TradingModel

MAX_BARS = 5000
MAX_UNIX_S = 9 * 10**9  # nanoseconds in an int64 reach 2262: unix seconds up to 2255
MAX_SYMBOLS = 500
MIN_WINDOW = 2  # rows of the shortest example (the synthetic provider's fewest bars)
_MINUTE_NS = 60 * 10**9


class PredictError(ValueError):
    """A valid request that this model cannot answer; the message says what to send instead."""


Matrix = list[list[float | None]]


class BarsIn(BaseModel):
    """A window of bars: each price field is a list of rows, one per timestamp, one value per symbol."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[str] = Field(min_length=1, max_length=MAX_SYMBOLS)
    close: Matrix = Field(min_length=1, max_length=MAX_BARS)
    open: Matrix | None = None
    high: Matrix | None = None
    low: Matrix | None = None
    volume: Matrix | None = None
    timestamps: list[int | str] | None = Field(None, description="unix seconds or ISO 8601, increasing")

    @field_validator("symbols")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"symbols must be unique; repeated: {sorted({s for s in v if v.count(s) > 1})}")
        if any(not s or len(s) > 32 for s in v):
            raise ValueError("every symbol must be 1-32 characters")
        return v

    # The fields as arrays, made once while validating (``batch`` reads them): a null is NaN.
    _arrays: dict[str, np.ndarray] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _shapes(self) -> BarsIn:
        t, s = len(self.close), len(self.symbols)
        arrays: dict[str, np.ndarray] = {}
        for name in ("close", "open", "high", "low", "volume"):
            rows = getattr(self, name)
            if rows is None:
                continue
            if len(rows) != t:
                raise ValueError(f"bars.{name} has {len(rows)} rows but bars.close has {t}: one row per timestamp")
            bad = next((i for i, row in enumerate(rows) if len(row) != s), None)
            if bad is not None:
                raise ValueError(f"bars.{name}[{bad}] has {len(rows[bad])} values; give one per symbol ({s})")
            values = np.array(rows, dtype=np.float64).reshape(t, s)  # null -> NaN
            given = ~np.isnan(values)
            if name != "volume" and (given & ~(np.isfinite(values) & (values > 0))).any():
                raise ValueError(f"bars.{name}: prices must be finite and > 0 (null for a missing bar)")
            if name == "volume" and (given & ~(np.isfinite(values) & (values >= 0))).any():
                raise ValueError("bars.volume: volumes must be finite and >= 0 (null when unknown)")
            arrays[name] = values
        if self.timestamps is not None:
            if len(self.timestamps) != t:
                raise ValueError(f"bars.timestamps has {len(self.timestamps)} entries; give one per row ({t})")
            ns = _timestamps_ns(self.timestamps)
            if len(ns) > 1 and not (np.diff(ns) > 0).all():
                raise ValueError("bars.timestamps must be strictly increasing")
            arrays["timestamps"] = ns
        self._arrays = arrays
        return self

    def _array(self, name: str) -> np.ndarray | None:
        if name in self._arrays:
            return self._arrays[name]
        if name == "timestamps":
            return _timestamps_ns(self.timestamps) if self.timestamps is not None else None
        rows = getattr(self, name)
        return _matrix(rows) if rows is not None else None

    def batch(self) -> BarBatch:
        close = self._array("close")
        assert close is not None
        ts = self._array("timestamps")
        if ts is None:
            ts = np.arange(len(close), dtype=np.int64) * _MINUTE_NS
        volume, open_, high, low = (self._array(n) for n in ("volume", "open", "high", "low"))
        return BarBatch.from_arrays(
            ts, self.symbols, close=close, volume=volume if volume is not None else np.full(close.shape, np.nan),
            open=open_ if open_ is not None else close,
            high=high if high is not None else close,
            low=low if low is not None else close,
        )


class PredictRequest(BaseModel):
    """A window of recent ``bars``, or one ``features`` row per symbol (learned models)."""

    model_config = ConfigDict(extra="forbid")

    bars: BarsIn | None = None
    features: dict[str, dict[str, float]] | None = Field(
        None, description="symbol -> {feature name: value}; the model's feature names are in GET /v1/models")

    @model_validator(mode="after")
    def _one(self) -> PredictRequest:
        if (self.bars is None) == (self.features is None):
            raise ValueError("send exactly one of `bars` (a window of recent bars) or `features` (one row per symbol)")
        if self.features is not None:
            if not self.features or len(self.features) > MAX_SYMBOLS:
                raise ValueError(f"features: give 1 to {MAX_SYMBOLS} symbols")
            for sym, row in self.features.items():
                bad = [k for k, v in row.items() if not math.isfinite(v)]
                if bad:
                    raise ValueError(f"features.{sym}: values must be finite numbers; not: {bad}")
        return self


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str
    method: str
    version: int | None  # the registry version; None for a rule model built from kind + params
    artifact: str | None  # NAME@VERSION when it came from the registry
    params: dict[str, Any]
    features: list[str] | None  # the feature names a `features` request must give (learned models)
    accepts: tuple[str, ...]  # "bars", and "features" for learned models with a one-row context

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["accepts"] = list(self.accepts)
        return out


class Predictor:
    """Answers requests for one model version. ``factory(symbols)`` builds the model; one instance
    answers every request (its ``explain`` starts from a fresh trading state each time)."""

    def __init__(self, info: ModelInfo, factory: Callable[[tuple[str, ...]], TradingModel]) -> None:
        self.info = info
        self._model = factory(("AAA",))
        self._inputs = self._model.inputs()
        self._head = {"model": info.name, "kind": info.kind, "version": info.version, "method": info.method}

    @property
    def inputs(self) -> Inputs:
        """What one decision of the model reads (its features, their lookback and context)."""
        return self._inputs

    def answer_json(self, raw: bytes, extra: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """HTTP status and JSON body for a raw request body: parse, validate, predict, encode.

        The whole request's work in one call, so a Serve ingress forwards bytes and a model
        replica answers bytes (nothing parsed or encoded twice); ``extra`` keys join the answer.
        """
        try:
            request = PredictRequest.model_validate_json(raw)
        except ValidationError as err:
            return 422, _dumps(validation_body(err.errors(include_url=False), prefix=("body",)))
        try:
            answer = self.predict(request)
        except PredictError as err:
            return 422, _dumps({"detail": str(err), "message": str(err)})
        if extra:
            answer.update(extra)
        return 200, _dumps(answer)

    def predict(self, request: PredictRequest) -> dict[str, Any]:
        if request.features is not None:
            return self._predict_rows(request.features)
        bars = request.bars.batch()  # type: ignore[union-attr]
        inputs = self._inputs
        if inputs.features and len(bars) < inputs.context:
            raise PredictError(f"bars: {len(bars)} rows; model {self.info.name!r} looks at {inputs.context} "
                               f"feature rows, and its features need {inputs.lookback} bars before the "
                               f"first: send at least {inputs.lookback + inputs.context} rows")
        prediction = self._model.explain(bars)
        lookback = inputs.lookback + inputs.context if inputs.features else None
        self._check_defined(bars, prediction, lookback)
        return self._answer(prediction, bars)

    def _predict_rows(self, rows: dict[str, dict[str, float]]) -> dict[str, Any]:
        inputs = self._inputs
        if not inputs.accepts_rows:
            why = f"looks at {inputs.context} rows of features" if inputs.features else "decides from bars"
            raise PredictError(f"model {self.info.name!r} ({self.info.kind}) {why}: send {{\"bars\": ...}} with a "
                               "window of recent bars instead of `features`")
        names = inputs.features
        symbols = tuple(rows)
        X = np.empty((len(symbols), len(names)))
        for s, sym in enumerate(symbols):
            row = rows[sym]
            missing = [n for n in names if n not in row]
            extra = sorted(set(row) - set(names))
            if missing or extra:
                raise PredictError(f"features.{sym}: missing {missing}, unknown {extra}; model {self.info.name!r} "
                                   f"takes exactly {list(names)}")
            X[s] = [row[n] for n in names]
        return self._answer(self._model.explain_rows(symbols, X), None)

    def _check_defined(self, bars: BarBatch, prediction: Prediction, lookback: int | None) -> None:
        bad = ~np.isfinite(prediction.values)
        if not bad.any():
            return
        s = int(np.argwhere(bad)[0][0])
        symbol = bars.symbols[s]
        if not np.isfinite(bars.close[-1, s]):
            raise PredictError(f"bars.close: {symbol} has no close on the last row; the model decides at the last bar")
        need = f" (at least {lookback} rows)" if lookback else ""
        undefined = ", ".join(n for n, b in zip(prediction.feature_names, bad[s], strict=True) if b)
        raise PredictError(f"bars: {len(bars)} rows are too few for model {self.info.name!r}: at the last bar its "
                           f"features {undefined} are not defined yet for {symbol}; send a longer window{need}")

    def _answer(self, prediction: Prediction, bars: BarBatch | None) -> dict[str, Any]:
        out = []
        old, new = prediction.previous, prediction.target
        for s, sym in enumerate(prediction.symbols):
            feats = prediction.features(s)
            n = float(new[s])
            sentence = prediction.sentences[s]
            out.append({
                "symbol": sym, "target_weight": n, "previous_weight": float(old[s]),
                "score": _num(prediction.score[s]),
                "explanation": {"base_value": _num(prediction.base_value[s]),
                                "features": [{"name": f.name, "value": _num(f.value), "attribution": _num(f.attribution)}
                                             for f in feats],
                                "sentence": sentence if sentence is not None else _holding(sym, n, feats)},
            })
        as_of = pd.Timestamp(int(bars.timestamps[-1]), unit="ns", tz="UTC").isoformat() if bars is not None else None
        return {**self._head, "as_of": as_of, "predictions": out}


def validation_body(errors: list[dict[str, Any]], prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """A 422 body: FastAPI's ``detail`` list, plus ``message`` naming each bad field and the fix."""
    detail = []
    for e in errors:
        e = {k: v for k, v in e.items() if k != "ctx"} | {"loc": [*prefix, *e["loc"]]}
        if "input" in e:
            e["input"] = _json_safe(e["input"])
        detail.append(e)
    message = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}" for e in detail)
    return {"detail": detail, "message": message}


def _json_safe(value: Any, depth: int = 0) -> Any:
    """The input a 422 quotes, as strict JSON: NaN and infinities as text ("NaN"), bytes left out, and
    nothing nested deeper than 20 levels (a body may be anything the client sent)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool | None):
        return value
    if depth >= 20 or isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in value]
    return str(value)


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, allow_nan=False, separators=(",", ":"), default=str).encode()


def _holding(symbol: str, weight: float, features: tuple[Feature, ...]) -> str:
    what = "Stays flat in" if weight == 0 else f"Keeps {'long' if weight > 0 else 'short'}"
    shown = ", ".join(f"{f.name} {f.value:.4g}" for f in features[:4])
    tail = f" (weight {weight:.4g})" if weight != 0 else ""
    return f"{what} {symbol}{tail}: no signal to change it at the last bar; {shown}."


def _timestamps_ns(values: list[int | str]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if isinstance(v, int):
            if not 0 <= v < MAX_UNIX_S:
                raise ValueError(f"bars.timestamps[{i}] = {v}: give unix seconds from 0 to {MAX_UNIX_S - 1} "
                                 "(or ISO 8601 text)")
            out[i] = v * 10**9
        else:
            try:
                stamp = pd.Timestamp(v)
            except ValueError:
                raise ValueError(f"bars.timestamps[{i}] = {v!r} is not ISO 8601 (2024-01-02T14:30:00Z)") from None
            if stamp is pd.NaT:
                raise ValueError(f"bars.timestamps[{i}] is empty")
            try:
                stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
                out[i] = stamp.as_unit("ns").value
            except (OverflowError, ValueError):
                raise ValueError(f"bars.timestamps[{i}] = {v!r} is out of range: give a time from 1678 to "
                                 "2262") from None
    return out


def _matrix(rows: Matrix) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def synthetic_window(rows: int, *, seed: int = 7, symbols: int = 2) -> dict[str, Any]:
    """A request body of ``rows`` synthetic 1-minute bars of ``symbols`` symbols (the examples' bars)."""
    cfg = DataConfig(provider="synthetic", n_symbols=symbols, bars=rows, frequency="1min", calendar="continuous",
                     start="2024-01-02T14:30:00Z")
    b = SyntheticProvider(cfg, seed).load().bars
    return {"bars": {
        "symbols": list(b.symbols),
        "timestamps": (b.timestamps // 10**9).tolist(),
        **{f: np.round(getattr(b, f), 4).tolist() for f in ("open", "high", "low", "close")},
        "volume": np.round(b.volume).tolist(),
    }}


def answers(predictor: Predictor, body: dict[str, Any]) -> bool:
    """Whether ``predictor`` answers ``body`` (a request it refuses is a ``PredictError``)."""
    try:
        predictor.predict(PredictRequest.model_validate(body))
    except PredictError:
        return False
    return True


def shortest_window(predictor: Predictor, *, seed: int = 7, symbols: int = 2) -> int:
    """The fewest rows of ``synthetic_window`` that ``predictor`` answers (its minimum-rows requirement):
    doubling from ``MIN_WINDOW`` until it answers, then bisecting; always a row count it answered."""
    refused, n = MIN_WINDOW - 1, MIN_WINDOW
    while not answers(predictor, synthetic_window(n, seed=seed, symbols=symbols)):
        if n >= MAX_BARS:
            raise PredictError(f"model {predictor.info.name!r} answers no window up to {MAX_BARS} bars")
        refused, n = n, min(2 * n, MAX_BARS)
    while n - refused > 1:
        mid = (refused + n) // 2
        if answers(predictor, synthetic_window(mid, seed=seed, symbols=symbols)):
            n = mid
        else:
            refused = mid
    return n


def example_request(predictor: Predictor, *, seed: int = 7, symbols: int = 2) -> dict[str, Any]:
    """The shortest synthetic window that ``predictor`` answers (``shortest_window`` rows)."""
    return synthetic_window(shortest_window(predictor, seed=seed, symbols=symbols), seed=seed, symbols=symbols)
