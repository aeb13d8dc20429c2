"""ModelActor: one competitor in its own Ray worker; all logic lives in the ``TradingModel``.

``ModelHost`` is its body; ``ModelGroupActor`` hosts several of them in one worker
(``replay.models_per_actor``: rule models by the dozen), and ``GroupMember`` stands for one of those
where a model actor's handle is expected.

Ray restarts a dead model actor (``max_restarts``) by running ``__init__`` again, which restores
nothing. So a restarted actor rebuilds its model before its next decision: it asks the market-data
actor for every bar before that decision's chunk and runs the model through them (warm-up bars
observed, the rest decided and discarded). Models are chunk-size invariant, so the rebuilt state is
the state the model had, and its decisions from then on are the ones it would have made. A run
resumed from its journal uses the same path (``catch_up``).

Stacking: an actor whose model other models stack (``record``) keeps its signals and answers
``signals(start, stop, oof)``; a meta-model's actor gets the handles of its input actors
(``inputs``), is handed their decisions on each chunk as arguments of ``decide`` (Ray resolves them
before the call runs), and reads their ``signals`` where it was not (the warm-up bars it fits on,
a replayed history). The inputs never call the meta-model, so the waits cannot form a cycle. A
meta-model blocks in ``ray.get`` while its learned inputs compute out-of-fold signals (at its
first fit); its heartbeat still answers, on its own thread.

``info()`` also says what the actor's process costs (``process_memory``) and which heavy libraries
it has loaded: a rule model's actor loads none of torch, shap or LightGBM (the model kinds are
loaded by name, ``models/kinds.py``), so a hundred of them fit where a few learned ones do.
"""

from __future__ import annotations

import copy
import os
import sys
import time
import uuid
import warnings
from typing import Any

import ray

from titan_ray.config import ModelSpec
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions
from titan_ray.models.base import OutOfFold, Stacker, TradingModel
from titan_ray.models.kinds import build_model
from titan_ray.ray_session import process_memory

HEAVY_LIBRARIES = ("torch", "shap", "lightgbm")  # each adds hundreds of MB to a process that imports it


# Heartbeats have a thread of their own ("health"): a model busy for a minute (a PPO policy training
# at its first decision, a large refit) is alive, and answers; one that is slow to decide is left out
# of its chunks by replay.decision_timeout_s instead. Every other method runs on the one default
# thread, in the order called.
class ModelHost:
    """One model and its bookkeeping (bars seen, restarts, busy time): the body of a ``ModelActor``,
    and each of the models a ``ModelGroupActor`` hosts."""

    def __init__(self, spec: ModelSpec, symbols: tuple[str, ...], seed: int, market: Any, warmup_bars: int,
                 prototype: TradingModel | None = None, *, record: bool = False,
                 inputs: dict[str, Any] | None = None) -> None:
        # ``prototype``: a model loaded from the registry on the driver (``artifact:``), already fitted;
        # the actor trades a copy of it, and a restart copies it again, so no node reads the registry.
        # ``record``: a meta-model stacks this one; ``inputs``: the actors of the models this one stacks.
        self._spec, self._symbols, self._seed = spec, tuple(symbols), seed
        self._record, self._inputs = record, dict(inputs or {})
        self._market, self._warmup, self._prototype = market, warmup_bars, prototype
        # built on first use, not here: the actor is up as soon as its process is, so the arena can
        # tell a model that cannot be placed from one still loading its libraries (torch takes seconds)
        self._model: TradingModel | None = None
        self._seen = 0  # global index of the next bar the model expects
        with warnings.catch_warnings():  # Ray's own property reads its deprecated `actor_id` and warns
            warnings.simplefilter("ignore", DeprecationWarning)
            self._rebuild = ray.get_runtime_context().was_current_actor_reconstructed
        self._incarnation = uuid.uuid4().hex  # changes with every restart: how the watchdog sees one
        self._busy = 0.0  # seconds spent deciding

    @property
    def model(self) -> TradingModel:
        if self._model is None:
            self._model = self._build()
        return self._model

    def info(self) -> dict[str, Any]:
        m = self.model
        return {"name": m.name, "kind": m.kind, "method": m.method, "long_only": m.long_only,
                "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "memory": process_memory(), "heavy_libraries": [n for n in HEAVY_LIBRARIES if n in sys.modules],
                "account": m.account()}

    @ray.method(concurrency_group="health")
    def heartbeat(self) -> dict[str, Any]:
        return {"incarnation": self._incarnation, "pid": os.getpid(), "seen": self._seen}

    def busy_seconds(self) -> float:
        return self._busy

    def catch_up(self, stop: int) -> int:
        """Bring a fresh model to the state it had after bar ``stop - 1`` (resume, restart)."""
        if stop > self._seen:
            history: BarBatch = ray.get(self._market.history.remote(self._seen, stop))
            warm = min(self._warmup, stop)
            if self._seen < warm:
                self.model.observe(history.slice(0, warm - self._seen))
            if stop > max(warm, self._seen):
                self.model.decide(history.slice(max(warm, self._seen) - self._seen, len(history)))
            self._seen = stop
        self._rebuild = False
        return self._seen

    def observe(self, bars: BarBatch) -> None:
        self._before(bars)
        self.model.observe(bars)
        self._seen = bars.stop

    def decide(self, bars: BarBatch, *inputs: Decisions | None) -> Decisions:
        """The model's decisions on ``bars``; a meta-model's ``inputs`` are its input models' decisions on
        them, in ``inputs`` order (None: left out of the chunk)."""
        self._before(bars)
        start = time.perf_counter()
        if self._inputs:
            stacker: Stacker = self.model  # type: ignore[assignment]  # checked when built
            stacker.feed(bars.start, bars.stop, dict(zip(self._inputs, inputs, strict=True)))
        decisions = self.model.decide(bars)
        self._seen = bars.stop
        self._busy += time.perf_counter() - start
        return decisions

    def signals(self, start: int, stop: int, oof: OutOfFold) -> Any:
        """The model's out-of-sample target weights over bars [start, stop), for a meta-model that stacks it."""
        began = time.perf_counter()
        # over warm-up bars a learned model answers out of fold, from the fit it makes on the whole warm-up
        need = max(stop, self._warmup) if start < self._warmup else stop
        if need > self._seen:
            self.catch_up(need)
        out = self.model.signals(start, stop, oof)  # a learned model's out-of-fold fits run here, once
        self._busy += time.perf_counter() - began
        return out

    def _read_inputs(self, start: int, stop: int, oof: OutOfFold) -> dict[str, Any]:
        names = list(self._inputs)
        return dict(zip(names, ray.get([self._inputs[n].signals.remote(start, stop, oof) for n in names]),
                        strict=True))

    def _build(self) -> TradingModel:
        if self._prototype is not None:
            model = copy.deepcopy(self._prototype)
        else:
            model = build_model(self._spec.name, self._spec.kind, self._spec.params, self._symbols, seed=self._seed)
        if self._record:
            model.record_signals()
        if self._inputs:
            if not isinstance(model, Stacker):
                raise TypeError(f"model {model.name!r} ({model.kind}) stacks no other models; it was given "
                                f"inputs {list(self._inputs)}")
            model.attach(self._read_inputs)
        return model

    def _before(self, bars: BarBatch) -> None:
        if self._rebuild or bars.start != self._seen:
            if bars.start < self._seen:
                # A retried call for bars already seen: start the model again from scratch.
                self._model = self._build()
                self._seen = 0
            self.catch_up(bars.start)


@ray.remote(concurrency_groups={"health": 1})
class ModelActor(ModelHost):
    """A model in an actor of its own: the default."""


@ray.remote(concurrency_groups={"health": 1})
class ModelGroupActor:
    """Several models in one actor (``replay.models_per_actor``): one process, one call per chunk.

    ``decide`` answers every model's decisions in one tuple, one object (one object per model cost a
    rule model's chunk more than its decision: each is made, sealed, tracked and read apart); the
    arena hands the ledger each model's ``AnswerPart`` of it, one reference per model as for
    ``ModelActor``. A model that raises gets its exception as its item (the ledger records it as that
    model's failure and skips its chunk); the others trade on. Any other method
    of one model goes through ``call`` (``GroupMember`` makes that look like a model actor's handle).
    When the process dies Ray restarts it and every model catches up from the market, as a model
    actor does.
    """

    def __init__(self, specs: list[ModelSpec], symbols: tuple[str, ...], seed: int, market: Any,
                 warmup_bars: int) -> None:
        self._hosts = {spec.name: ModelHost(spec, symbols, seed, market, warmup_bars) for spec in specs}

    def decide(self, bars: BarBatch) -> tuple[Decisions | Exception, ...]:
        out: list[Decisions | Exception] = []
        for host in self._hosts.values():
            try:
                out.append(host.decide(bars))
            except Exception as err:  # noqa: BLE001 - one model's failure is its own
                out.append(err)
        return tuple(out)

    def observe(self, bars: BarBatch) -> None:
        for host in self._hosts.values():
            host.observe(bars)

    def call(self, name: str, method: str, *args: Any) -> Any:
        return getattr(self._hosts[name], method)(*args)

    @ray.method(concurrency_group="health")
    def heartbeat(self, name: str) -> dict[str, Any]:
        return self._hosts[name].heartbeat()


class GroupMember:
    """One model of a ``ModelGroupActor``, used as a model actor's handle: ``member.info.remote()``
    calls ``info`` on that model (heartbeats on the group's health thread)."""

    def __init__(self, group: Any, name: str) -> None:
        self.group, self.name = group, name

    def __getattr__(self, method: str) -> _MemberMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return _MemberMethod(self.group, self.name, method)


class _MemberMethod:
    def __init__(self, group: Any, name: str, method: str) -> None:
        self.group, self.name, self.method = group, name, method

    def remote(self, *args: Any) -> Any:
        if self.method == "heartbeat":
            return self.group.heartbeat.remote(self.name)
        return self.group.call.remote(self.name, self.method, *args)
