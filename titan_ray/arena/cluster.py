"""The arena on Ray: its actors, where they run, and every Ray call the runner and the pipeline make.

``arena_cluster`` joins Ray (or starts a private one) and yields an ``ArenaCluster``, whose
construction creates the actors in this order: one ``MarketDataActor``, one ``ModelActor`` per
competitor (or one ``ModelGroupActor`` per ``replay.models_per_actor`` rule models), one ``LedgerActor``, and, when configured, the ``WatchdogActor`` (driven by a
``HeartbeatMonitor`` thread, ``arena/monitor.py``) and an Alpaca ``PaperBrokerActor``. On the way
out every actor is killed, the monitor stopped and the Ray it started shut down, however the run
ended.

``ArenaCluster`` is the pipeline's ``ReplayPort`` (``arena/pipeline.py``): a chunk is one object
in Ray's object store, its reference fanned out to every model and handed to the ledger with the
models' decision references; the driver never holds bars. ``RemoteMarket`` is the live feed of
``arena/live.py`` on the market actor, ``PaperCheck`` the pipeline's ``PaperHook`` on the broker
actor. ``finish`` collects what the actors have to say at the end (``ClusterFinish``).

Fault tolerance: every actor restarts on its own (``max_restarts``, with retried calls): the
ledger from its journal, a model from the market's history. A live feed cannot be rebuilt (the
stream has moved on), so a live market actor is not restarted: it fails loudly instead.

Placement: before any actor is created, what each reserves (a model's ``num_cpus`` and
``memory_mb``; the arena's own actors reserve nothing) is checked against the cluster's nodes
(``arena/capacity.py``), and the models' reservations are made together as one placement group
with a timeout (``replay.placement_timeout_s``): an arena that does not fit stops with a
``PlacementError`` naming the model, its request, the cluster and the fix, never a silent queue.
A model that reserves nothing holds a token bundle in that group, so every model actor is placed
by the group and they spread across the nodes (``SPREAD``), and nothing is written to a local path that
another node must read: an actor that touches the driver's files (the market reading
``data.path`` or the bar cache, the ledger journaling to ``journal.sqlite`` in the results folder)
is pinned to the driver's node; a Redis journal leaves the ledger free to go anywhere. Where each
actor started is kept in ``placement`` (run.json); what each model actor's process costs at the
end, in ``ClusterFinish.models``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from titan_ray.arena.capacity import (
    MIB,
    SERVICE_CPUS,
    Node,
    PlacementError,
    Request,
    arena_requests,
    check,
    model_label,
    pending,
)
from titan_ray.arena.live import alpaca_environ
from titan_ray.arena.monitor import HeartbeatMonitor
from titan_ray.arena.pipeline import Snapshot
from titan_ray.arena.report import Placement
from titan_ray.arena.watchdog import WatchdogActor
from titan_ray.broker.actor import PaperBrokerActor
from titan_ray.config import ArenaConfig, PaperCheckConfig
from titan_ray.data.actor import MarketDataActor
from titan_ray.data.market import DataError
from titan_ray.domain.calendar import periods_per_year
from titan_ray.domain.decisions import AnswerPart
from titan_ray.domain.events import EventSink
from titan_ray.ledger.actor import LedgerActor
from titan_ray.ledger.engine import ModelResults
from titan_ray.models.actor import GroupMember, ModelActor, ModelGroupActor
from titan_ray.ray_session import ensure_ray
from titan_ray.registry import registered_models
from titan_ray.train.ppo import startup_models

Ref = ray.ObjectRef


@contextmanager
def arena_cluster(
    config: ArenaConfig, *, address: str | None, run_id: str, journal: dict[str, Any] | None,
    sink: EventSink | None,
) -> Iterator[ArenaCluster]:
    """The arena's actors on Ray (``address``, or a private local Ray that ends with the block)."""
    started = ensure_ray(address)
    try:
        with ExitStack() as cleanup:
            yield ArenaCluster(config, run_id=run_id, journal=journal, sink=sink, cleanup=cleanup)
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class ClusterFinish:
    results: dict[str, ModelResults]
    busy: dict[str, float]  # seconds each actor spent working: the ledger, then each model
    journal_seconds: float  # seconds the ledger's journal writer spent, beside the booking
    failures: dict[str, list[str]]  # the model errors the ledger recorded
    info: dict[str, Any]  # the market's info; a live run's refreshed at the end (the bars that arrived)
    paper_report: dict[str, Any] | None
    alerts: list[dict[str, Any]]  # the watchdog's
    # each model actor at the end: node_id, pid, memory {rss, uss} in bytes, heavy_libraries loaded
    models: dict[str, dict[str, Any]]
    # the ledger's process (rss, uss) and records (in RAM, in all) at the end of the replay, before the results
    ledger_memory: dict[str, int | None]
    # every market bar's timestamp and regime label (metrics/regimes.py); None for a live stream
    regimes: tuple[Any, Any] | None = None
    # each model's ``account()`` at the end, for those that keep one (an LLM's tokens, cost, requests)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)


class ArenaCluster:
    """The run's actors, created in the constructor (each registered with ``cleanup`` to be killed).

    Before any actor exists, what they reserve is checked against the cluster (``arena/capacity.py``)
    and the models' reservations are made at once, as one placement group: all of them are granted
    together or the run stops after ``replay.placement_timeout_s`` saying what is pending, so a
    model can never wait for a CPU that another model of the same arena holds.
    """

    def __init__(
        self, config: ArenaConfig, *, run_id: str, journal: dict[str, Any] | None, sink: EventSink | None,
        cleanup: ExitStack,
    ) -> None:
        self._live = config.live is not None
        self._timeout = config.replay.decision_timeout_s
        self._cleanup = cleanup
        data = config.data
        market_on_driver = data.path is not None or data.provider == "alpaca"
        # a SQLite journal is a file in the driver's results folder: the ledger (and any restart of it)
        # must run where that file is, and --resume reads it there
        ledger_on_driver = journal is not None and journal["backend"] == "sqlite"
        requests = arena_requests(config, market_on_driver=market_on_driver, ledger_on_driver=ledger_on_driver)
        bundles = _reserve(requests, config.replay.placement_timeout_s, cleanup)
        environ = alpaca_environ() if data.provider == "alpaca" else None
        restarts = 0 if self._live else -1
        # Start-up overlaps where nothing depends: the watchdog's process starts with the market's, and
        # the ledger's while the models are built (it reads their long_only from their info itself).
        watchdog = None
        if config.watchdog.enabled:
            w = config.watchdog
            watchdog = self._spawn(WatchdogActor.options(num_cpus=SERVICE_CPUS).remote(
                stall_after=w.stall_after_s, max_restarts=w.max_restarts, window=w.window_s,
                webhook_url=os.environ.get(w.webhook_env) or None,  # webhook URLs are secrets: never in a file
            ))
        self.market = self._spawn(MarketDataActor.options(
            num_cpus=SERVICE_CPUS, max_restarts=restarts, max_task_retries=restarts,
            scheduling_strategy=_on_driver_node() if market_on_driver else "DEFAULT",
        ).remote(data, config.seed, config.replay, sink, config.live, environ))
        info = ray.get(self.market.info.remote())
        if "error" in info:
            raise DataError(info["error"])
        self.info: dict[str, Any] = info
        self.symbols: tuple[str, ...] = tuple(info["symbols"])
        self.periods = periods_per_year(info["frequency"], info["calendar"])
        trained = registered_models(config, self.symbols)  # models given as `artifact:`, loaded on the driver
        trained |= startup_models(config, self.symbols, info["calendar"])  # ppo with none: trains in its actor
        # stacking: a meta-model's actor is created, and decides, after the actors of the models it stacks
        # (its `inputs`), whose handles it is given; those keep their signals for it (`record`)
        self._stacks = config.stacking_inputs
        self._order = config.decision_order
        stacked = {n for inputs in self._stacks.values() for n in inputs}
        index = {spec.name: i for i, spec in enumerate(config.models)}
        # A trained model goes into the object store once, its reference held for the run: Ray reads an
        # actor's constructor arguments again when it restarts it, and an argument too large to inline
        # (a fitted net or booster) is gone once nobody holds it (ray-project/ray#53727), after which
        # the model's actor could never come back from a crash.
        self._prototypes = {name: ray.put(model) for name, model in trained.items()}
        actors: dict[str, Any] = {}
        # rule models by the dozen share an actor (replay.models_per_actor): one process, one call a chunk
        self._groups = self._spawn_groups(config, bundles, index, stacked | set(self._stacks), trained, info)
        packed = {m.name for _, members in self._groups for m in members}
        for _, members in self._groups:
            actors.update({m.name: m for m in members})
        for name in self._order:
            if name in packed:
                continue
            i, spec = index[name], config.models[index[name]]
            actors[name] = self._spawn(ModelActor.options(
                num_cpus=spec.num_cpus, memory=spec.memory_mb * MIB, max_restarts=-1, max_task_retries=-1,
                scheduling_strategy=bundles.get(f"models[{i}]", "SPREAD"),
            ).remote(spec, self.symbols, config.seed, self.market, info["warmup_bars"],
                     prototype=self._prototypes.get(spec.name), record=name in stacked,
                     inputs={n: actors[n] for n in self._stacks.get(name, ())}))
        self.models = {spec.name: actors[spec.name] for spec in config.models}
        # each model is built by its info() call, in its actor (a learned one loads torch or LightGBM)
        infos = {name: m.info.remote() for name, m in self.models.items()}
        # held for the run: a restarted ledger reads them again (Ray keeps nested references in an
        # actor's arguments alive only as long as someone else holds them)
        self._model_infos = infos
        self.ledger = self._spawn(LedgerActor.options(
            num_cpus=SERVICE_CPUS, max_restarts=-1, max_task_retries=-1,
            scheduling_strategy=_on_driver_node() if ledger_on_driver else "DEFAULT",
        ).remote(config.ledger, config.risk, self.symbols, info["calendar"], infos, self.periods, journal, sink))
        labels = {spec.name: model_label(i, spec) for i, spec in enumerate(config.models)}
        wait_until_up(self.models, labels, config.replay.placement_timeout_s)
        model_info = dict(zip(infos, ray.get(list(infos.values())), strict=True))
        self.placement = Placement(
            driver=ray.get_runtime_context().get_node_id(),
            market=info["node_id"],
            ledger=ray.get(self.ledger.node_id.remote()),
            models={name: mi["node_id"] for name, mi in model_info.items()},
        )
        self._monitor: HeartbeatMonitor | None = None
        if watchdog is not None:
            self._monitor = HeartbeatMonitor(watchdog, self.models, self.ledger, interval_s=config.watchdog.interval_s)
            self._monitor.start()
            cleanup.callback(self._stop_monitor)
        self.paper: PaperCheck | None = None
        if config.live is not None and config.live.paper is not None:
            paper = config.live.paper
            broker = self._spawn(PaperBrokerActor.options(num_cpus=SERVICE_CPUS).remote(
                paper.model, self.symbols, data.alpaca, environ or {}, config.ledger.fractional,
                int(info["frequency"].value), run_id,
            ))
            self.paper = PaperCheck(broker, paper)
        self.feed = RemoteMarket(self.market)

    def _spawn_groups(self, config: ArenaConfig, bundles: dict[str, Any], index: dict[str, int],
                      stacking: set[str], trained: dict[str, Any], info: dict[str, Any]) -> list[tuple[Any, list[GroupMember]]]:
        """The ``ModelGroupActor``s: models that reserve nothing, are given no trained model and take no
        part in stacking, ``replay.models_per_actor`` at a time in config order (a lone one keeps a
        ``ModelActor``). Each group runs in the first member's bundle (the members' bundles are tokens)."""
        size = config.replay.models_per_actor
        if size < 2:
            return []
        packable = [spec for spec in config.models if spec.num_cpus == 0 and not spec.memory_mb
                    and spec.artifact is None and spec.name not in trained and spec.name not in stacking]
        groups = []
        on_node: dict[str, int] = {}  # groups placed on each node so far
        for k in range(0, len(packable), size):
            specs = packable[k:k + size]
            if len(specs) < 2:
                break
            group = self._spawn(ModelGroupActor.options(
                num_cpus=0, max_restarts=-1, max_task_retries=-1,
                scheduling_strategy=_group_place([bundles.get(f"models[{index[s.name]}]") for s in specs], on_node),
            ).remote(specs, self.symbols, config.seed, self.market, info["warmup_bars"]))
            groups.append((group, [GroupMember(group, spec.name) for spec in specs]))
        return groups

    def handles(self) -> dict[str, Any]:
        """The actor handles, for operations tooling and chaos tests (``run_arena``'s ``on_actors``)."""
        return {"market": self.market, "ledger": self.ledger, "models": dict(self.models),
                "watchdog": self._monitor.watchdog if self._monitor else None}

    def last_seq(self) -> int:
        """The last chunk the ledger holds (-1: none): where a resumed run picks up."""
        return ray.get(self.ledger.last_seq.remote())

    # --- the pipeline's port --------------------------------------------------------------------

    def next_chunk(self, index: int) -> Ref:
        return self.market.next_chunk.remote(index)

    def observe(self, bars: Ref) -> None:
        for group, _ in self._groups:
            group.observe.remote(bars)
        for m in self.models.values():
            if not isinstance(m, GroupMember):
                m.observe.remote(bars)

    def decide(self, bars: Ref) -> dict[str, Ref | None]:
        """Every model's decision reference; a meta-model's call takes its inputs' references as arguments,
        so Ray runs it once they are decided and hands it their decisions (None: an input taken out).
        A group of models answers in one call and one object; each member's reference is its
        ``AnswerPart`` of it."""
        removed = self._monitor.removed if self._monitor else set()
        refs: dict[str, Ref | None] = {}
        for group, members in self._groups:
            answer = group.decide.remote(bars)
            refs.update((m.name, None if m.name in removed else AnswerPart(answer, i)) for i, m in enumerate(members))
        for n in self._order:
            if n in refs:
                continue
            inputs = [refs[i] for i in self._stacks.get(n, ())]
            refs[n] = None if n in removed else self.models[n].decide.remote(bars, *inputs)
        return {n: refs[n] for n in self.models}

    def wait_for_bars(self, bars: Ref) -> None:
        ray.wait([bars], fetch_local=False)

    def wait_for_decisions(self, decisions: list[Ref], timeout: float) -> set[Ref]:
        answers = list(dict.fromkeys(_answer(d) for d in decisions))  # a group's answer once
        ready, _ = ray.wait(answers, num_returns=len(answers), timeout=timeout, fetch_local=False)
        ready = set(ready)
        return {d for d in decisions if _answer(d) in ready}

    def apply(self, seq: int, bars: Ref, decisions: dict[str, Ref | None]) -> Ref:
        return self.ledger.apply.remote(seq, bars, decisions)

    def acknowledgement(self, ack: Ref) -> dict[str, Any]:
        return ray.get(ack)

    def snapshot(self) -> Snapshot:
        return ray.get(self.ledger.snapshot.remote())

    # --- the end --------------------------------------------------------------------------------

    def finish(self) -> ClusterFinish:
        """The results and the actors' accounts; the ledger (journal, sink) and a live feed closed."""
        busy = {"ledger": ray.get(self.ledger.busy_seconds.remote())}
        journal_seconds = ray.get(self.ledger.journal_seconds.remote())
        busy.update(zip(self.models, ray.get([m.busy_seconds.remote() for m in self.models.values()]), strict=True))
        ends = ray.get([m.info.remote() for m in self.models.values()])  # memory after the whole run
        keep = ("node_id", "pid", "memory", "heavy_libraries")
        models = {name: {k: mi[k] for k in keep} for name, mi in zip(self.models, ends, strict=True)}
        accounts = {name: mi["account"] for name, mi in zip(self.models, ends, strict=True)
                    if mi.get("account") is not None}
        failures = ray.get(self.ledger.failures.remote())
        ledger_memory = ray.get(self.ledger.memory.remote())  # before the results read every record back
        results: dict[str, ModelResults] = ray.get(self.ledger.results.remote())
        ray.get(self.ledger.close.remote())
        info = self.info
        if self._live:
            ray.get(self.market.close.remote())
            info = {**info, **ray.get(self.market.info.remote())}
        paper_report = self.paper.finish(results[self.paper.model].fills) if self.paper is not None else None
        alerts = self._stop_monitor()
        regimes = ray.get(self.market.regimes.remote())
        return ClusterFinish(results, busy, journal_seconds, failures, info, paper_report, alerts, models,
                             ledger_memory, regimes, accounts)

    def _spawn(self, actor: Any) -> Any:
        self._cleanup.callback(ray.kill, actor)
        return actor

    def _stop_monitor(self) -> list[dict[str, Any]]:
        """Stop the heartbeats (once); the watchdog's alerts."""
        monitor, self._monitor = self._monitor, None
        return monitor.stop() if monitor is not None else []


def _answer(decisions: Ref) -> Ref:
    """The object a model's decision reference stands in (its group's answer, for a model in a group)."""
    return decisions.answer if isinstance(decisions, AnswerPart) else decisions


@ray.remote(num_cpus=0)
def _part(answer: tuple, index: int) -> Any:
    """One model's item of its group's answer, as a reference of its own (its failure raised)."""
    item = answer[index]
    if isinstance(item, Exception):
        raise item
    return item


def _group_place(options: list[Any], on_node: dict[str, int]) -> Any:
    """A group's place: the bundle, among its members', on the node with the fewest groups so far. The
    models' bundles alternate over the nodes (SPREAD), so the first member's would put every group of
    an even size on the same node."""
    options = [o for o in options if o is not None]
    if not options:
        return "SPREAD"
    table = placement_group_table(options[0].placement_group).get("bundles_to_node_id", {})
    best = min(options, key=lambda o: on_node.get(table.get(o.placement_group_bundle_index, ""), 0))
    node = table.get(best.placement_group_bundle_index, "")
    on_node[node] = on_node.get(node, 0) + 1
    return best


def _on_driver_node() -> NodeAffinitySchedulingStrategy:
    """Pins an actor to the driver's node: for actors that read or write the driver's local files."""
    return NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)


# A model that reserves nothing still gets a bundle of its own: Ray has no empty bundles, so it holds
# one byte of memory. The bundle is what places it (Ray puts a task with no resources in a bundle on
# that bundle's node).
TOKEN_BUNDLE = {"memory": 1.0}


def _reserve(requests: list[Request], timeout: float, cleanup: ExitStack) -> dict[str, Any]:
    """The models' places, made together: a model's key (``models[3]``) → its actor's bundle.

    Checked first against what the cluster has (a ``PlacementError`` at once when it can never fit);
    then one placement group, strategy ``SPREAD`` (the models' bundles on as many nodes as can hold
    them), granted whole or not at all, and a ``PlacementError`` after ``timeout`` seconds while
    other work holds what it needs. A model that reserves nothing (a rule model) gets a token bundle
    in the same group: the group is placed by Ray's control store, which knows every alive node, so
    the models spread the moment a node has joined. (Pinning them to nodes instead, even softly, is
    decided by the driver node's scheduler from its view of the cluster, which may not have heard of
    a node that joined a moment ago: then they all land on the driver's node.) When a node dies,
    Ray places its bundles again on the nodes left, and the models restart there.
    """
    driver = ray.get_runtime_context().get_node_id()
    nodes = [Node(n["NodeID"], n["Resources"]) for n in ray.nodes() if n["Alive"]]
    problems = check(requests, nodes, driver)
    if problems:
        raise PlacementError("the arena does not fit on this Ray cluster:\n" + "\n".join(f"  {p}" for p in problems))
    models = [r for r in requests if r.key is not None and r.key.startswith("models[")]
    if not models:
        return {}
    bundles = [{k: v for k, v in r.resources.items() if v > 0} or TOKEN_BUNDLE for r in models]
    group = placement_group(bundles, strategy="SPREAD")
    cleanup.callback(remove_placement_group, group)  # registered first, so removed after the actors are killed
    if not group.wait(timeout_seconds=timeout):
        raise PlacementError(pending(models, nodes, ray.available_resources(), timeout))
    return {
        r.key: PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=i)
        for i, r in enumerate(models) if r.key is not None
    }


def wait_until_up(models: dict[str, Any], labels: dict[str, str], timeout: float) -> None:
    """Returns once every model actor is up; a ``PlacementError`` when none came up for ``timeout`` s.

    Their CPUs are reserved by now, but a worker process may still fail to start (a node out of
    memory, its worker restarted over and over): that must not be a silent wait either. An actor is
    up when its process is (it builds its model on first use), so a learned model's libraries do
    not count against the timeout. The clock restarts with every actor that comes up, since a
    hundred of them start a few at a time.
    """
    left = {m.heartbeat.remote(): name for name, m in models.items()}
    while left:
        ready, _ = ray.wait(list(left), num_returns=1, timeout=timeout)
        if not ready:
            waiting = [labels[name] for name in models if name in left.values()]
            raise PlacementError(
                f"{len(waiting)} model actor{'s' if len(waiting) > 1 else ''} did not start within {timeout:g} s "
                f"({', '.join(waiting[:5])}{', ...' if len(waiting) > 5 else ''}): Ray could not start their "
                f"worker processes. Check the nodes' memory (`ray status`; a rule model's actor takes about "
                f"100 MB), or raise replay.placement_timeout_s if the machine is only slow"
            )
        ready, _ = ray.wait(list(left), num_returns=len(left), timeout=0)  # and all that came up meanwhile
        for ref in ready:
            del left[ref]


class RemoteMarket:
    """The market-data actor's live feed, as ``arena/live.py`` asks for it (``LiveFeed``)."""

    def __init__(self, market: Any) -> None:
        self._market = market

    def wait_chunk(self, index: int, timeout: float) -> bool | None:
        return ray.get(self._market.wait_chunk.remote(index, timeout))

    def ended(self) -> str | None:
        return ray.get(self._market.info.remote()).get("ended")


class PaperCheck:
    """The driver's side of paper cross-validation, as the pipeline's ``PaperHook``.

    It hands the broker actor each chunk with the mirrored model's decisions and ledger equity, and
    at the end collects the report that the runner writes (``paper_divergence.parquet``,
    ``paper_fills.parquet``, and ``paper_check`` in run.json).
    """

    def __init__(self, broker: Any, cfg: PaperCheckConfig) -> None:
        self._broker, self._cfg = broker, cfg
        ray.get(broker.start.remote())  # fails here, before trading, on refused keys
        self._calls: list[Ref] = []

    @property
    def model(self) -> str:
        return self._cfg.model

    def on_chunk(self, bars: Ref, decisions: Ref | None, snapshot: Snapshot | None) -> None:
        equity = next((r["equity"] for r in snapshot or [] if r["model"] == self.model), None)
        if equity is None or decisions is None:
            return
        if isinstance(decisions, AnswerPart):  # the broker's call is handed the model's decisions alone
            decisions = _part.remote(decisions.answer, decisions.index)
        self._calls.append(self._broker.on_chunk.remote(bars, decisions, equity))

    def finish(self, ledger_fills: list[Any]) -> dict[str, Any]:
        errors = []
        for ref in self._calls:  # every order was sent (a chunk the model failed on sent none)
            try:
                ray.get(ref)
            except Exception as err:  # noqa: BLE001 - recorded; the report is still written
                errors.append(f"{type(err).__name__}: {err}"[:300])
        cfg = self._cfg
        report = ray.get(self._broker.finish.remote(ledger_fills, cfg.fill_wait_s, cfg.cancel_open_orders))
        report["summary"]["errors"] = errors + report["summary"]["errors"]
        return report
