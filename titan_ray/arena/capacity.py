"""Will the arena fit? Checked before any actor starts, so that nothing queues forever.

Ray queues an actor that no node can hold and says nothing: an arena whose models reserve more
CPUs than the cluster has would wait for ever after printing its banner. The parts:

- ``Request``: what one of the arena's actors reserves (Ray resources: ``CPU``, ``memory`` in
  bytes), the config keys that set it, and whether it must run on the driver's node;
  ``arena_requests`` lists them for a config, in the order the actors are created;
- ``Node``: one alive node of the cluster and the resources it has;
- ``check``: compares the requests with the nodes and answers with the problems, each naming the
  actor, its request, what the cluster has and the fix. It looks at what the cluster *has*, not at
  what is free now: work that holds resources may end, and the placement group that reserves the
  models' resources (``arena/cluster.py``) waits for it, up to ``replay.placement_timeout_s``;
- ``pending``: the message for that timeout, naming what is still waiting and what holds the rest;
- ``PlacementError``: what both become, a ``ConfigError`` (the CLI prints it, exit 2).

Pure code on plain numbers: ``arena/cluster.py`` reads the cluster from Ray and calls it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from titan_ray.config import ArenaConfig, ConfigError, ModelSpec

MIB = 1024 * 1024
# The arena's own actors (market, ledger, watchdog, paper broker) reserve no CPU: each mostly waits
# on the others, and a reserved core apiece would leave a 2-core laptop none for the models.
SERVICE_CPUS = 0.0
# The resources an arena reserves: Ray's name → the model's config key that sets it
_KEYS = {"CPU": "num_cpus", "memory": "memory_mb"}
_RULE_HINT = " (a rule model needs no reserved core: 0)"


class PlacementError(ConfigError):
    """The arena's actors cannot be placed on this Ray cluster; the message says which and the fix."""


@dataclass(frozen=True)
class Request:
    """What one actor of the arena reserves."""

    actor: str  # "models[3] (sma9, sma_crossover)", "the market-data actor", ...
    resources: Mapping[str, float]  # Ray resource → amount: {"CPU": 0.25, "memory": 2**30}
    key: str | None = None  # the config entry that sets them ("models[3]"), when the user can change it
    on_driver: bool = False  # pinned to the driver's node (it reads or writes the driver's files)

    @property
    def reserves(self) -> bool:
        return any(v > 0 for v in self.resources.values())


@dataclass(frozen=True)
class Node:
    """One alive node of the Ray cluster."""

    node_id: str
    resources: Mapping[str, float] = field(default_factory=dict)  # its total, as Ray reports it


def model_label(index: int, spec: ModelSpec) -> str:
    """How errors name a model: ``models[3] (sma9, sma_crossover)``, as the config's validation does."""
    return f"models[{index}] ({spec.name}, {spec.kind})"


def arena_requests(config: ArenaConfig, *, market_on_driver: bool, ledger_on_driver: bool) -> list[Request]:
    """What each of the arena's actors reserves, in the order they are created; a model's ``key`` is
    its place in the config (``models[3]``)."""
    service = {"CPU": SERVICE_CPUS}
    requests = [Request("the market-data actor", service, on_driver=market_on_driver)]
    requests += [
        Request(model_label(i, m), {"CPU": m.num_cpus, "memory": float(m.memory_mb * MIB)}, key=f"models[{i}]")
        for i, m in enumerate(config.models)
    ]
    requests.append(Request("the ledger actor", service, on_driver=ledger_on_driver))
    if config.watchdog.enabled:
        requests.append(Request("the watchdog actor", service))
    if config.live is not None and config.live.paper is not None:
        requests.append(Request("the paper-broker actor", service))
    return requests


def number(resource: str, value: float) -> str:
    """An amount of a Ray resource in the unit the config uses (memory in MiB, not bytes)."""
    return f"{value / MIB:g}" if resource == "memory" else f"{value:g}"


def amount(resource: str, value: float) -> str:
    """``2 CPUs``, ``512 MiB memory``: an amount of a Ray resource, as a person reads it."""
    if resource == "memory":
        return f"{number(resource, value)} MiB memory"
    if resource == "CPU":
        return f"{value:g} CPU" + ("" if value == 1 else "s")
    return f"{value:g} {resource}"


def asked(request: Request) -> str:
    """``num_cpus=4, memory_mb=512``: a request as the config writes it."""
    parts = [f"{_KEYS.get(res, res)}={number(res, v)}" for res, v in request.resources.items() if v > 0]
    return ", ".join(parts) or "nothing"


def check(requests: Sequence[Request], nodes: Sequence[Node], driver: str) -> list[str]:
    """The reasons the arena cannot be placed on this cluster (empty when it can).

    Each request must fit on one node (the driver's node for a pinned one), and all of them
    together in the cluster's total. Whether they also pack onto the nodes as they are is left
    to the placement group, which knows what is free.
    """
    too_large = [(r, _no_node(r, nodes, driver)) for r in requests if r.reserves]
    problems = [p for _, p in too_large if p is not None]
    named = {res for r, p in too_large if p is not None for res, v in r.resources.items() if v > 0}
    for resource in sorted({res for r in requests for res in r.resources} - named):  # not said twice
        total = sum(n.resources.get(resource, 0.0) for n in nodes)
        wanted = [r for r in requests if r.resources.get(resource, 0.0) > 0]
        need = sum(r.resources[resource] for r in wanted)
        if need > total * (1 + 1e-9):
            wanted.sort(key=lambda r: -r.resources[resource])
            listed = ", ".join(f"{r.actor} {asked(r)}" for r in wanted[:5]) + (", ..." if len(wanted) > 5 else "")
            problems.append(
                f"the arena's actors reserve {amount(resource, need)} in all ({len(wanted)} actors: {listed}), "
                f"but {_cluster(nodes, resource)}: lower the models' {_KEYS.get(resource, resource)}"
                f"{_RULE_HINT if resource == 'CPU' else ''}, run fewer models, or join a larger cluster (--address)"
            )
    return problems


def pending(requests: Sequence[Request], nodes: Sequence[Node], available: Mapping[str, float],
            waited: float) -> str:
    """Why the placement group still waits after ``waited`` seconds: its requests, and who holds the rest."""
    waiting = [r for r in requests if r.reserves]
    named = "; ".join(f"{r.actor} {asked(r)}" for r in waiting[:8]) + ("; ..." if len(waiting) > 8 else "")
    held = []
    for resource in sorted({res for r in waiting for res, v in r.resources.items() if v > 0}):
        need = sum(r.resources.get(resource, 0.0) for r in waiting)
        total, free = sum(n.resources.get(resource, 0.0) for n in nodes), available.get(resource, 0.0)
        if free < need:
            held.append(f"They reserve {amount(resource, need)}; {_cluster(nodes, resource)}, of which "
                        f"{number(resource, free)} are free now: other work holds {number(resource, total - free)}")
    why = ". ".join(held) if held else (
        "Enough is free in all, but split across the nodes in pieces smaller than the reservations")
    return (
        f"the arena's actors could not be placed within {waited:g} s. Still pending: {named}. {why}. Wait for "
        f"that work to end (`ray status` shows it), lower the models' num_cpus (0 for rule models), or raise "
        f"replay.placement_timeout_s"
    )


def _no_node(request: Request, nodes: Sequence[Node], driver: str) -> str | None:
    """Why no node can hold ``request`` on its own (None when one can)."""
    candidates = [n for n in nodes if n.node_id == driver] if request.on_driver else list(nodes)

    def fits(node: Node) -> bool:
        return all(node.resources.get(res, 0.0) >= v for res, v in request.resources.items() if v > 0)

    if any(fits(n) for n in candidates):
        return None
    where = "the driver's node (it must run there)" if request.on_driver else "the largest node of this Ray cluster"
    wanted = [res for res, v in request.resources.items() if v > 0]
    # the resource no candidate has enough of; when each exists somewhere but never together, the first
    short = [res for res in wanted if all(n.resources.get(res, 0.0) < request.resources[res] for n in candidates)]
    resource = (short or wanted)[0]
    largest = max((n.resources.get(resource, 0.0) for n in candidates), default=0.0)
    key = _KEYS.get(resource, resource)
    fix = f"lower {request.key}.{key}" if request.key else f"lower its {key}"
    return (
        f"{request.actor} reserves {asked(request)}, but {where} has {amount(resource, largest)}: {fix}"
        + (_RULE_HINT if resource == "CPU" else "")
        + " or join a cluster with larger nodes (--address)"
    )


def _cluster(nodes: Sequence[Node], resource: str) -> str:
    """``this Ray cluster has 2 CPUs (2 nodes, at most 1 CPU on one)``."""
    amounts = [n.resources.get(resource, 0.0) for n in nodes]
    text = f"this Ray cluster has {amount(resource, sum(amounts))}"
    if len(nodes) > 1:
        text += f" ({len(nodes)} nodes, at most {amount(resource, max(amounts))} on one)"
    return text
