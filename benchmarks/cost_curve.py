"""The arena's cost curve: what 1, 10, 32 and 100 rule models cost, on one node and on two.

Each point is the whole command a user runs, ``titan-ray arena --config ... --out ... --quiet``,
in its own process: a private Ray on this machine, or ``--address`` of a two-node loopback
cluster (a head and a worker started with ``ray start``, as tests/integration/test_two_node.py
does). All models are ``sma_crossover`` variants (fast 5-14, slow 20-59) on one synthetic universe,
so every point books the same bars. For each point it prints:

- ``wall``: the command's wall clock, seen from outside (process start to exit);
- ``replay``, ``ledger`` and ``journal``: run.json's ``replay_seconds``, the ledger actor's busy seconds
  and its journal writer's seconds (a thread beside the booking);
- ``bar·model/s``: bars × models / replay seconds (and over the ledger's busy seconds);
- ``peak RSS``: the largest sum of resident memory over every process of the run (the command, its
  Ray and every worker; on the cluster, the cluster's processes), sampled every 0.2 s;
- ``per model``: the median peak USS (the memory only that process holds: what it costs to add one)
  of one model actor's process (``ray::ModelActor``, or
  ``ray::ModelGroupActor`` with ``--models-per-actor``: then one process holds several models); on the
  loopback cluster the processes are those whose command line names its temporary folder (GCS,
  raylets, agents) and all their children (the workers); ``nan`` when no model actor was found.

``--plot PATH`` draws the curves (docs/images/cost_curve.png in the README). Run with ``--help``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import ray_env, two_node_cluster  # the tests' loopback cluster, shared

from titan_ray.ray_session import process_memory

TITAN_RAY = Path(sys.executable).with_name("titan-ray")


@dataclass(frozen=True)
class Point:
    nodes: int
    models: int
    wall: float
    replay: float
    ledger: float
    journal: float
    n_bars: int
    peak_rss: float  # bytes
    per_model_rss: float  # bytes, median over model actors

    @property
    def rate(self) -> float:
        return self.n_bars * self.models / self.replay

    @property
    def ledger_rate(self) -> float:
        return self.n_bars * self.models / self.ledger if self.ledger > 0 else float("nan")


def config(n_models: int, symbols: int, bars: int, chunk_size: int | str = "auto", per_actor: int = 1) -> dict:
    return {
        "seed": 11,
        "data": {"provider": "synthetic", "n_symbols": symbols, "bars": bars, "frequency": "15min"},
        "replay": {"chunk_size": int(chunk_size) if str(chunk_size).isdigit() else chunk_size,
                   "models_per_actor": per_actor},
        "ledger": {"commission_bps": 10},
        "models": [
            {"name": f"sma{i}", "kind": "sma_crossover", "params": {"fast": 5 + i % 10, "slow": 20 + i % 40}}
            for i in range(n_models)
        ],
        "significance": {"n_resamples": 200},
        "watchdog": {"enabled": False},
    }


MODEL_ACTORS = ("ModelActor", "ModelGroupActor")



class MemorySampler:
    """The peak of summed RSS over a set of processes, and the peak USS of each process of the
    actor classes in ``track`` (a model's by default): ``peaks[class][pid]``."""

    def __init__(self, roots: list[int], marker: str | None, track: tuple[str, ...] = MODEL_ACTORS) -> None:
        self._roots, self._marker, self._track = roots, marker, track
        self.peak = 0.0
        self.peaks: dict[str, dict[int, float]] = {k: {} for k in track}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _processes(self) -> Iterator[psutil.Process]:
        seen: set[int] = set()
        for pid in self._roots:
            try:
                root = psutil.Process(pid)
                for p in [root, *root.children(recursive=True)]:
                    if p.pid not in seen:
                        seen.add(p.pid)
                        yield p
            except psutil.NoSuchProcess:
                continue
        if self._marker:  # a cluster's processes, found by their private temp folder, and their children:
            # the raylet's workers rename themselves (ray::ModelActor) and name no folder
            for p in psutil.process_iter(["cmdline"]):
                if any(self._marker in part for part in (p.info["cmdline"] or ())):
                    try:
                        family = [p, *p.children(recursive=True)]
                    except psutil.NoSuchProcess:
                        continue
                    for q in family:
                        if q.pid not in seen:
                            seen.add(q.pid)
                            yield q

    @property
    def actors(self) -> dict[int, float]:
        """Each model actor's peak USS, by process."""
        return {pid: v for k in MODEL_ACTORS for pid, v in self.peaks.get(k, {}).items()}

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            total = 0.0
            for p in self._processes():
                try:
                    total += p.memory_info().rss
                    title = " ".join(p.cmdline()[:1])  # ray::ModelActor.decide, ray::LedgerActor, ...
                    for k in self._track:
                        if f"ray::{k}" in title or p.name().startswith(f"ray::{k}"):
                            # smaps_rollup: psutil's memory_full_info reads every mapping, and sampling that
                            # every 0.2 s took enough of a core to slow the replay it measured
                            uss = process_memory(p.pid)["uss"] or 0
                            self.peaks[k][p.pid] = max(self.peaks[k].get(p.pid, 0.0), uss)
                except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, ProcessLookupError):
                    continue
            self.peak = max(self.peak, total)


def run_point(work: Path, n_models: int, args: argparse.Namespace, cluster: dict | None) -> Point | str:
    """One point, or why the command failed (the last lines of its error output)."""
    folder = work / f"{'2n' if cluster else '1n'}-{n_models}"
    folder.mkdir()
    (folder / "arena.yaml").write_text(yaml.safe_dump(config(n_models, args.symbols, args.bars, args.chunk_size,
                                                                 args.models_per_actor)))
    cmd = [str(TITAN_RAY), "arena", "--config", "arena.yaml", "--out", "out", "--quiet"]
    if cluster is not None:
        cmd += ["--address", str(cluster["address"])]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=folder, env=ray_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with MemorySampler([proc.pid], str(cluster["root"]) if cluster else None) as memory:
        _out, err = proc.communicate(timeout=args.timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return " ".join(err.strip().splitlines()[-1:])[:400]
    run = json.loads((folder / "out" / "run.json").read_text())
    per_model = statistics.median(memory.actors.values()) if memory.actors else float("nan")
    return Point(2 if cluster else 1, n_models, wall, run["replay_seconds"], run["busy_seconds"]["ledger"],
                 run["journal_seconds"], run["n_bars"], memory.peak, per_model)


@contextmanager
def loopback_cluster(cpus: int) -> Iterator[dict]:
    root = Path(tempfile.mkdtemp(prefix="trcc-", dir="/tmp"))  # unix socket paths must stay short
    try:
        with two_node_cluster(root, cpus=cpus) as cluster:
            yield {**cluster, "root": root}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def table(points: list[Point]) -> str:
    head = (f"{'nodes':>5} {'models':>6} {'wall s':>7} {'replay s':>8} {'ledger s':>8} {'journal s':>9} {'bar·model/s':>12} "
            f"{'(ledger)':>12} {'peak RSS':>9} {'model USS':>9}")
    rows = [head, "-" * len(head)]
    for p in points:
        rows.append(f"{p.nodes:>5} {p.models:>6} {p.wall:>7.1f} {p.replay:>8.2f} {p.ledger:>8.2f} {p.journal:>9.2f} "
                    f"{p.rate:>12,.0f} {p.ledger_rate:>12,.0f} {p.peak_rss / 2**30:>7.2f}Gi "
                    f"{p.per_model_rss / 2**20:>7.0f}Mi")
    return "\n".join(rows)


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    for nodes, style in ((1, "o-"), (2, "s--")):
        ps = [p for p in points if p.nodes == nodes]
        if not ps:
            continue
        n = [p.models for p in ps]
        label = f"{nodes} node{'s' if nodes > 1 else ''}"
        axes[0].plot(n, [p.wall for p in ps], style, label=f"wall, {label}")
        axes[0].plot(n, [p.replay for p in ps], style, alpha=0.5, label=f"replay, {label}")
        axes[1].plot(n, [p.rate / 1e6 for p in ps], style, label=label)
        seen = [p for p in ps if p.per_model_rss == p.per_model_rss]  # model actors found: memory complete
        if seen:
            axes[2].plot([p.models for p in seen], [p.peak_rss / 2**30 for p in seen], style, label=label)
    for ax, title in zip(axes, ("seconds", "M bar·model/s (replay)", "peak RSS, GiB (all processes)"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("rule models")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, nargs="+", default=[1, 10, 32, 100])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--bars", type=int, default=20_000, help="timestamps per symbol")
    parser.add_argument("--chunk-size", default="auto", help="replay.chunk_size of every point (auto, or timestamps)")
    parser.add_argument("--models-per-actor", type=int, default=1,
                        help="replay.models_per_actor of every point: 16 puts the rule models 16 to an actor")
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    parser.add_argument("--cpus-per-node", type=int, default=1, help="the loopback cluster's CPUs per node")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one point may take")
    parser.add_argument("--plot", type=Path, help="draw the curves into this PNG")
    parser.add_argument("--json", type=Path, help="also write the points as JSON")
    args = parser.parse_args()
    points: list[Point] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="titan-cost-") as tmp:
        for nodes in args.nodes:
            with loopback_cluster(args.cpus_per_node) if nodes == 2 else nullcontext() as cluster:
                for n in args.models:
                    print(f"{nodes} node(s), {n} models ...", file=sys.stderr, flush=True)
                    point = run_point(Path(tmp), n, args, cluster)
                    if isinstance(point, str):
                        failures.append(f"{nodes} node(s), {n} models: {point}")
                    else:
                        points.append(point)
    print(f"{args.symbols} symbols × {args.bars:,} 15-min timestamps, sma_crossover variants, whole command each")
    print(table(points))
    for failure in failures:
        print(f"FAILED {failure}")
    if args.json:
        args.json.write_text(json.dumps([p.__dict__ for p in points], indent=2))
    if args.plot:
        plot(points, args.plot)


if __name__ == "__main__":
    main()
