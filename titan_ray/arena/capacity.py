"""Will the arena fit? Checked before any actor starts, so that nothing queues forever.

Ray queues an actor that no node can hold and says nothing: an arena whose models reserve more
CPUs than the cluster has would wait for ever after printing its banner. ``check`` compares what
each of the arena's actors reserves with what the cluster has (in all, and on its largest node)
and answers with the problems, each naming the model, its request, the cluster and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    """What one actor of the arena reserves."""

    actor: str  # "models[3] (sma9, sma_crossover)", "the market", ...
    num_cpus: float
    field: str | None = None  # the config key that sets it, when the user can change it


def check(requests: Sequence[Request], total: Mapping[str, float], largest_node: Mapping[str, float]) -> list[str]:
    """The reasons the arena cannot be placed on this cluster (empty when it can)."""
    cpus, node_cpus = float(total.get("CPU", 0.0)), float(largest_node.get("CPU", 0.0))
    problems = [
        f"{r.actor} reserves num_cpus={r.num_cpus:g}, but the largest node of this Ray cluster has "
        f"{node_cpus:g} CPUs: lower {r.field or 'its num_cpus'} (a rule model needs no reserved core: 0)"
        for r in requests if r.num_cpus > node_cpus
    ]
    asked = sum(r.num_cpus for r in requests)
    if asked > cpus + 1e-9:
        heavy = sorted((r for r in requests if r.num_cpus > 0), key=lambda r: -r.num_cpus)
        named = ", ".join(f"{r.actor} {r.num_cpus:g}" for r in heavy[:5]) + (", ..." if len(heavy) > 5 else "")
        problems.append(
            f"the arena's actors reserve {asked:g} CPUs in all ({named}), but this Ray cluster has {cpus:g}: "
            f"lower the models' num_cpus (0 for rule models), run fewer models, or join a larger cluster "
            f"(--address)"
        )
    return problems
