"""Tournament throughput: arenas per minute, on one node and on a 2-node loopback cluster.

Runs ``titan-ray tournament`` as a user does, once per setting, on the shipped example
(``titan_ray/configs/tournament.yaml``: 6 scenario markets x 2 walk-forward windows = 12 arenas of
11 models, 6 symbols, 2,600 bars) or ``--config``: on a private Ray of this machine, then with
``--address`` of a head and a worker started with ``ray start`` (1 CPU each; the tests' loopback
cluster, as ``cost_curve.py`` uses it). For each it prints the whole command's wall clock, the
arenas run, arenas per minute, the seconds per arena and ``max_in_flight`` (``--in-flight`` sets
it). On one machine a second node adds processes, not cores; on a real cluster each node adds its
cores, and arenas spread across them as Ray tasks.

    .venv/bin/python benchmarks/tournament_scale.py
    .venv/bin/python benchmarks/tournament_scale.py --nodes 1 --in-flight 1 2 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import ray_env, two_node_cluster  # the tests' loopback cluster, shared

ROOT = Path(__file__).resolve().parents[1]
TITAN_RAY = Path(sys.executable).with_name("titan-ray")


@contextmanager
def _cluster(nodes: int):
    if nodes == 1:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="tt-", dir="/tmp"))
    try:
        with two_node_cluster(root, cpus=1) as cluster:
            yield cluster["address"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(config: Path, nodes: int, in_flight: int) -> dict:
    raw = yaml.safe_load(config.read_text())
    raw["max_in_flight"] = in_flight
    work = Path(tempfile.mkdtemp(prefix="tournament-bench-"))
    try:
        tconf = work / "t.yaml"
        base = raw.get("base_config")
        if base is not None and not Path(base).is_absolute():
            raw["base_config"] = str((config.parent / base).resolve())
        tconf.write_text(yaml.safe_dump(raw))
        with _cluster(nodes) if nodes > 1 else nullcontext() as address:
            cmd = [str(TITAN_RAY), "tournament", "--config", str(tconf), "--out", str(work / "out"), "--quiet"]
            if address:
                cmd += ["--address", address]
            start = time.perf_counter()
            done = subprocess.run(cmd, cwd=work, env=ray_env(), capture_output=True, text=True, check=False)
            wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"tournament failed ({nodes} node(s)): {done.stderr.strip().splitlines()[-3:]}")
        info = json.loads((work / "out" / "tournament_run.json").read_text())
        return {"nodes": nodes, "in_flight": info["in_flight"], "arenas": info["arenas_run"], "wall": wall,
                "inside": info["seconds"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "titan_ray" / "configs" / "tournament.yaml")
    parser.add_argument("--nodes", type=int, nargs="+", choices=[1, 2], default=[1, 2])
    parser.add_argument("--in-flight", type=int, nargs="+", default=[2], help="max_in_flight values to try")
    args = parser.parse_args()
    rows = []
    for nodes in args.nodes:
        for k in args.in_flight:
            print(f"... {nodes} node(s), max_in_flight {k}", file=sys.stderr, flush=True)
            rows.append(run(args.config, nodes, k))
    print(f"{'nodes':>5} {'in flight':>9} {'arenas':>6} {'wall s':>7} {'tournament s':>12} {'arenas/min':>10} "
          f"{'s/arena':>7}")
    for r in rows:
        print(f"{r['nodes']:>5} {r['in_flight']:>9} {r['arenas']:>6} {r['wall']:>7.1f} {r['inside']:>12.1f} "
              f"{60 * r['arenas'] / r['wall']:>10.1f} {r['wall'] / r['arenas']:>7.1f}")


if __name__ == "__main__":
    main()
