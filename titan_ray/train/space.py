"""What ``tune_configs/*.yaml`` share: search-space domains, the Tune settings, strict loading.

A search space is a mapping ``parameter -> domain``; a domain is a one-key mapping:

    learning_rate: {loguniform: [0.01, 0.3]}   # low < high, both > 0
    dropout:       {uniform: [0.0, 0.5]}
    num_leaves:    {int: [8, 64]}              # integers, both ends included
    hidden:        {logint: [16, 256]}         # integers on a log scale, both ends included
    objective:     {choice: [regression, binary]}
    horizon:       {grid: [5, 10]}             # every value, for each of the num_samples draws

``Domain.to_tune()`` gives the Ray Tune object. ``TuneSettings`` holds how many trials, which
reported metric to optimise and in which direction, the scheduler (ASHA by default) and how many
trials run at once. ``load_yaml`` reads a file into a pydantic model and turns validation errors
into a ``ConfigError`` whose lines name each bad field and how to fix it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from titan_ray.config import ConfigError, format_validation_error

KINDS = ("loguniform", "uniform", "int", "logint", "choice", "grid")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Domain(Strict):
    """One parameter's search domain (see the module docstring for the forms)."""

    kind: Literal["loguniform", "uniform", "int", "logint", "choice", "grid"]
    values: tuple[Any, ...]

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and set(raw) == {"kind", "values"}:
            return raw
        if not isinstance(raw, dict) or len(raw) != 1:
            raise ValueError(f"a domain is a one-key mapping such as {{loguniform: [0.001, 0.1]}} or "
                             f"{{choice: [a, b]}}; got {raw!r}. Forms: {', '.join(KINDS)}")
        (kind, values), = raw.items()
        if kind not in KINDS:
            hint = difflib.get_close_matches(str(kind), KINDS, n=1)
            maybe = f"did you mean {hint[0]!r}? " if hint else ""
            raise ValueError(f"unknown domain {kind!r}; {maybe}use one of {', '.join(KINDS)}")
        if not isinstance(values, list | tuple):
            raise ValueError(f"{kind} takes a list, e.g. {{{kind}: [1, 2]}}; got {values!r}")  # noqa: TRY004 - pydantic
        return {"kind": kind, "values": tuple(values)}

    @model_validator(mode="after")
    def _bounds(self) -> Domain:
        v = self.values
        if self.kind in ("choice", "grid"):
            if not v:
                raise ValueError(f"{self.kind} needs at least one value")
            return self
        if len(v) != 2 or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
            raise ValueError(f"{self.kind} takes [low, high] numbers; got {list(v)}")
        low, high = v
        if self.kind in ("int", "logint") and not all(float(x).is_integer() for x in v):
            raise ValueError(f"{self.kind} takes integer bounds; got {list(v)}")
        if not low < high if self.kind in ("loguniform", "uniform") else not low <= high:
            raise ValueError(f"{self.kind}: low must be below high; got {list(v)}")
        if self.kind in ("loguniform", "logint") and low <= 0:
            raise ValueError(f"{self.kind} needs low > 0 (a log scale); got {list(v)}")
        return self

    def to_tune(self) -> Any:
        from ray import tune

        v = self.values
        if self.kind == "loguniform":
            return tune.loguniform(float(v[0]), float(v[1]))
        if self.kind == "uniform":
            return tune.uniform(float(v[0]), float(v[1]))
        if self.kind == "int":
            return tune.randint(int(v[0]), int(v[1]) + 1)  # Tune's upper bound is exclusive
        if self.kind == "logint":
            return tune.lograndint(int(v[0]), int(v[1]) + 1)
        if self.kind == "choice":
            return tune.choice(list(v))
        return tune.grid_search(list(v))

    def examples(self) -> list[Any]:
        """Values that stand for the domain when validating a config (its ends, or each value)."""
        if self.kind in ("choice", "grid"):
            return list(self.values)
        if self.kind in ("int", "logint"):
            return [int(x) for x in self.values]
        return [float(x) for x in self.values]


class AshaScheduler(Strict):
    """Asynchronous successive halving: a trial continues past a rung only when it is in the top
    1/reduction_factor of the trials that reached that rung."""

    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1, description="iterations every trial runs before it may be stopped")
    reduction_factor: float = Field(2.0, ge=2, description="keep the top 1/reduction_factor at each rung")
    max_t: int | None = Field(None, ge=1, description="iterations of a full trial; default: the config's own")


class FifoScheduler(Strict):
    """No early stopping: every trial runs to the end."""

    type: Literal["fifo"]


class TuneSettings(Strict):
    num_samples: int = Field(8, ge=1, description="trials (each grid value is tried num_samples times)")
    metric: str = Field(description="reported metric to optimise")
    mode: Literal["max", "min"] = Field("max", description="max or min of the metric")
    scheduler: Annotated[AshaScheduler | FifoScheduler, Field(discriminator="type")] = AshaScheduler()
    max_concurrent_trials: int = Field(1, ge=1, description="trials at once (1 on a 2-core machine)")
    cpus_per_trial: float = Field(1.0, gt=0, description="Ray CPUs one trial reserves")

    def scheduler_for(self, max_t: int) -> Any:
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

        s = self.scheduler
        if isinstance(s, FifoScheduler):
            return FIFOScheduler()
        top = s.max_t or max_t
        return ASHAScheduler(time_attr="training_iteration", max_t=top, grace_period=min(s.grace_period, top),
                             reduction_factor=s.reduction_factor)


def search_space(search: dict[str, Domain]) -> dict[str, Any]:
    return {name: domain.to_tune() for name, domain in search.items()}


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], raw: Any, *, source: str, what: str) -> M:
    """Validate ``raw`` as ``model``; a ``ConfigError`` naming each bad field on failure."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        text = format_validation_error(err, root=model).replace("invalid arena config", f"invalid {what} config", 1)
        text = text.replace("  (top level): ", "  ")  # whole-config checks name their own fields
        raise ConfigError(f"{source}: {text}") from None


def load_yaml(path: str | Path, model: type[M], *, what: str, overrides: dict[str, Any] | None = None) -> M:
    src = Path(path)
    if not src.exists():
        raise ConfigError(f"config file {src} does not exist; pass --config with a YAML file from tune_configs/")
    try:
        raw = yaml.safe_load(src.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{src}: not valid YAML: {err}") from None
    if overrides:
        raw = merge(raw, overrides)
    return parse(model, raw, source=str(src), what=what)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def param_cells(config: dict[str, Any], params: list[str]) -> list[str]:
    """A trial's searched parameter values as table cells (floats to 4 significant digits)."""
    return [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (config.get(p) for p in params)]


def text_table(head: list[str], body: list[list[str]]) -> str:
    """Left-aligned plain-text columns under a dashed rule, for the summaries printed and saved."""
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def echo(text: str) -> None:
    print(text, flush=True)


def progress_callback(metric: str, total: int, print_fn: Any = None, unit: str = "iteration") -> Any:
    """A Tune callback that prints one line per trial event: start, each result, the end.

    Tune pickles its callbacks with the experiment's state, so the default printer is a module-level
    function (pickled by reference), never the ``print`` builtin captured in a closure: a builtin
    that something has wrapped (pytest, a notebook) cannot be pickled.
    """
    import time

    print_fn = print_fn or echo

    from ray.tune import Callback

    class _Progress(Callback):
        def __init__(self) -> None:
            self.t0 = time.monotonic()

        def _say(self, text: str) -> None:
            print_fn(f"[{time.monotonic() - self.t0:6.0f}s] {text}")

        def on_trial_start(self, iteration, trials, trial, **info):
            searched = {k: v for k, v in (trial.evaluated_params or {}).items()}
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in searched.items())
            self._say(f"trial {trial.trial_id} started{': ' + shown if shown else ''}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            value = lookup(result, metric)
            shown = f"{value:.4g}" if isinstance(value, int | float) else "n/a"
            self._say(f"trial {trial.trial_id} {unit} {result.get('training_iteration')}/{total}: {metric} = {shown}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            done = (trial.last_result or {}).get("training_iteration", 0)
            how = "finished" if done >= total else f"stopped early by the scheduler after {done}"
            self._say(f"trial {trial.trial_id} {how}")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._say(f"trial {trial.trial_id} FAILED: {trial.error_file}")

    return _Progress()


def lookup(d: dict[str, Any] | None, key: str, default: Any = None) -> Any:
    """``d[key]``, or a nested lookup of 'a/b' (Tune flattens nested results with '/'); ``default``
    when it is not there."""
    if d is None:
        return default
    if key in d:
        return d[key]
    cur: Any = d
    for part in key.split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur
