"""What a tournament runs: its YAML, read strictly, and the grid of arenas it expands to.

A tournament config (``titan-ray tournament --config T.yaml``)::

    base: {...}                  # an arena config (or base_config: path/to/arena.yaml)
    markets:                     # each an arena ``data`` section over the base's, or a named scenario
      - {scenario: random_walk, seeds: [1, 2, 3]}
      - {name: lean, provider: csv, path: ../shared/data/lean, frequency: 1D}
    windows: {mode: rolling, train_bars: 2000, test_bars: 500}   # optional walk-forward
    variants: {sma: {fast: [5, 10], slow: [30, 50]}}            # parameter grids per model name
    max_in_flight: 2

The parts:

- ``TournamentConfig`` and its ``MarketSpec``, ``WindowSpec``: strict pydantic, unknown keys rejected
  with the dotted path and the fix, as the arena's config is.
- ``expand_models``: the base's models with each ``variants`` entry replaced by one model per point
  of its grid (``sma-fast5-slow30``, or ``sma-v3`` when that name would be too long), and which base
  model each came from.
- ``market_seeds`` / ``market_id``: a market entry with ``seeds`` is one market per seed (the
  arena's ``seed``: the synthetic generator's and the random models').
- ``windows``: the walk-forward windows over a market of ``n`` timestamps: ``rolling`` (the training
  part slides), ``anchored`` (it grows from the first bar); each window's arena sees its training
  part as ``replay.warmup_bars`` (learned models fit on it, nothing is booked) and trades its test part.

Nothing here touches Ray or the disk but ``base_config``'s file.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from titan_ray.config import ArenaConfig, ConfigError, format_validation_error, parse_config, read_yaml

_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,40}$")  # a model's name, as the arena's config allows it


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarketSpec(BaseModel):
    """One market entry: a data section (any key of the arena's ``data``) plus ``name``, ``scenario``, ``seeds``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_\-]{1,40}$", description="label in the verdict")
    scenario: str | None = Field(None, description="a named synthetic scenario (data.synthetic.scenario)")
    seeds: list[int] | None = Field(None, min_length=1, description="one market per seed (the arena's seed)")

    def data(self) -> dict[str, Any]:
        """The arena ``data`` keys this entry sets."""
        out = dict(self.model_extra or {})
        if self.scenario is not None:
            out.setdefault("provider", "synthetic")
            out["synthetic"] = {**out.get("synthetic", {}), "scenario": self.scenario}
        return out


class WindowSpec(_Strict):
    mode: Literal["rolling", "anchored"] = Field("rolling", description="rolling: the training part slides; "
                                                 "anchored: it starts at the first bar and grows")
    train_bars: int = Field(ge=1, description="bars each window's models fit on (the arena's warm-up)")
    test_bars: int = Field(ge=2, description="bars each window trades")
    step_bars: int | None = Field(None, ge=1, description="bars between windows' starts (default test_bars)")
    max_windows: int | None = Field(None, ge=1, description="at most this many windows per market (the first ones)")


class TournamentConfig(_Strict):
    base: dict[str, Any] | None = Field(None, description="the arena config every arena starts from")
    base_config: str | None = Field(None, description="or a path to an arena YAML (relative to the tournament file)")
    markets: list[MarketSpec] = Field(min_length=1)
    windows: WindowSpec | None = Field(None, description="walk-forward windows; null = each market whole")
    variants: dict[str, dict[str, list[Any]]] = Field(
        default_factory=dict, description="model name -> {param: [values]}: one model per point of the grid")
    max_in_flight: int = Field(2, ge=1, description="arenas running at once")
    significance_level: float = Field(0.95, gt=0, lt=1, description="a DSR at least this is significant")

    @model_validator(mode="after")
    def _one_base(self) -> TournamentConfig:
        if (self.base is None) == (self.base_config is None):
            raise ValueError("set exactly one of base (an arena config) and base_config (its path)")
        return self


@dataclass(frozen=True)
class Tournament:
    """A validated tournament: its config, the base arena config and the models after the variants."""

    config: TournamentConfig
    base: dict[str, Any]  # the arena config (raw), models expanded
    origin: dict[str, str]  # model name -> the base model it is a variant of (itself when not varied)
    params: dict[str, dict[str, Any]]  # model name -> its params


def load_tournament(path: str | Path) -> Tournament:
    src = Path(path)
    return parse_tournament(read_yaml(src, "tournament file"), source=str(src), root=src.parent)


def parse_tournament(raw: Any, *, source: str = "tournament", root: Path = Path()) -> Tournament:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping (base, markets, windows, variants, ...)")
    try:
        config = TournamentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err, TournamentConfig)}".replace(
            "invalid arena config", "invalid tournament config", 1)) from None
    base = config.base
    if base is None:
        path = Path(config.base_config).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.exists():
            raise ConfigError(f"{source}: base_config {config.base_config} does not exist (looked at {path})")
        base = read_yaml(path, "base_config")
    if not isinstance(base, dict) or not base.get("models"):
        raise ConfigError(f"{source}: the base arena config needs `models`")
    models, origin = expand_models(base["models"], config.variants, source)
    base = {**base, "models": models}
    arena = parse_config(base, source=f"{source}: base")  # every model's params checked once, here
    _no_refits(arena, source)
    return Tournament(config, base, origin, {m.name: dict(m.params) for m in arena.models})


def expand_models(models: list[dict[str, Any]], variants: dict[str, dict[str, list[Any]]],
                  source: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The base's models with each varied one replaced by its grid (in the grid's order); name -> origin."""
    names = [m.get("name") for m in models]
    unknown = sorted(set(variants) - set(names))
    if unknown:
        raise ConfigError(f"{source}: variants name models that are not in the base: {unknown}; "
                          f"the base has {names}")
    out: list[dict[str, Any]] = []
    origin: dict[str, str] = {}
    for model in models:
        grid = variants.get(model["name"])
        if not grid:
            out.append(model)
            origin[model["name"]] = model["name"]
            continue
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{source}: variants.{model['name']}.{key} must be a non-empty list of values")
        keys = list(grid)
        points = list(itertools.product(*(grid[k] for k in keys)))
        for k, point in enumerate(points):
            params = {**model.get("params", {}), **dict(zip(keys, point, strict=True))}
            name = _variant_name(model["name"], keys, point, k)
            out.append({**model, "name": name, "params": params})
            origin[name] = model["name"]
    seen: set[str] = set()
    for m in out:
        if m["name"] in seen:
            raise ConfigError(f"{source}: two models are named {m['name']!r} after the variants; rename one")
        seen.add(m["name"])
    return out, origin


def _variant_name(name: str, keys: list[str], point: tuple[Any, ...], k: int) -> str:
    readable = "-".join([name, *(f"{key}{_token(v)}" for key, v in zip(keys, point, strict=True))])
    return readable if _NAME.match(readable) else f"{name}-v{k}"


def _token(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", str(value))


def _no_refits(arena: ArenaConfig, source: str) -> None:
    """Walk-forward's promise: a model fits on its window's training part only."""
    for i, m in enumerate(arena.models):
        if dict(m.params).get("refit_every") is not None:
            raise ConfigError(f"{source}: base models[{i}] ({m.name}).params.refit_every is set: in a tournament each "
                              "window's models fit on its training part only; remove refit_every")


def market_seeds(spec: MarketSpec, base_seed: int) -> list[int]:
    return list(spec.seeds) if spec.seeds else [base_seed]


def market_id(spec: MarketSpec, index: int, seed: int) -> str:
    """A market's id: its name (or scenario, or provider) and number in the config, and its seed."""
    label = spec.name or spec.scenario or spec.data().get("provider", "synthetic")
    return f"m{index}-{label}-s{seed}"


@dataclass(frozen=True)
class Window:
    index: int
    start: int  # first bar of the training part (the arena's first bar)
    train: int  # bars in the training part (the arena's warm-up)
    stop: int  # one past the last bar of the test part


def windows(spec: WindowSpec | None, n: int) -> list[Window]:
    """The windows over ``n`` timestamps (one: the whole market, when ``spec`` is None)."""
    if spec is None:
        return [Window(0, 0, 0, n)]
    step = spec.step_bars or spec.test_bars
    out: list[Window] = []
    k = 0
    while True:
        if spec.mode == "rolling":
            start, train = k * step, spec.train_bars
        else:
            start, train = 0, spec.train_bars + k * step
        stop = start + train + spec.test_bars
        if stop > n or (spec.max_windows is not None and k >= spec.max_windows):
            break
        out.append(Window(k, start, train, stop))
        k += 1
    if not out:
        raise ConfigError(f"windows: train_bars {spec.train_bars} + test_bars {spec.test_bars} is more than the "
                          f"market's {n} bars; shorten them or lengthen the market")
    return out
