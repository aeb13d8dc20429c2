"""Serve latency: the same model behind Ray Serve and behind a bare FastAPI/uvicorn app.

What is measured
----------------
One load generator (this process: asyncio, one keep-alive HTTP/1.1 connection per concurrent
client, the request bytes encoded once) sends ``POST /v1/predict/{model}`` with the same body to

*bare*    a FastAPI app run by uvicorn in a child process (one worker, one OpenMP thread as Ray
          gives its workers): the same ``Predictor.answer_json`` (validate, predict, explain,
          encode) runs in-process;
*haproxy* the TitanRay Serve apps deployed from a config the way ``titan-ray serve`` deploys
          them: the main app (arena off) and the model's own app (``build_model_app`` at
          ``/v1/predict/NAME``), on a Ray started in Serve's throughput-optimized mode
          (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1 RAY_SERVE_ENABLE_HA_PROXY=1``): HAProxy -> the model
          replica's own HTTP server, which runs the same ``answer_json``;
*python*  the same apps on a Ray in Serve's default mode: Serve's Python HTTP proxy -> the model
          replica (an actor call), which runs the same ``answer_json``.

Each server runs in a child process of its own (a fresh Ray for each Serve mode), one after the
other, never together, on loopback. For each concurrency (default 1, 8, 32) the clients first warm
up for ``--warmup`` seconds, then run for ``--duration`` seconds; every answer must be 200. Printed
per server and concurrency: requests/s over the measured window, and p50/p99 latency (client side:
request written to last body byte read). The acceptance figure is Serve's requests/s at
concurrency 8 as a share of bare FastAPI's, and Serve's p99 there, for the mode ``titan-ray serve``
runs (haproxy).

This machine's speed drifts from minute to minute (a shared 2-core VM: the bare app alone has
measured anywhere from 480 to 590 req/s at concurrency 8). ``--rounds N`` measures every server N
times, interleaved (bare, haproxy, python, bare, ...), so a slow spell hits all of them, and the
verdict is the median over rounds of each round's share of bare.

Serve knobs (``--model-replicas``, ``--max-ongoing``) and the modes (``--servers``) are recorded
with the figures.

``--with-arena`` measures something else: ``titan-ray serve`` started as users run it (its own
private Ray, ``serve_configs/arena.yaml``, the live arena trading), once it trades, and the two
prediction routes a user calls, each with the example request the server publishes for it:
``/v1/predict/lgbm`` (``GET /v1/models/lgbm``) and ``/v1/experiments/lgbm-vs-sma/predict`` (``GET
/v1/experiments/lgbm-vs-sma``), in interleaved rounds (predict, experiment, predict, ...). Per round:
requests/s, p50, p99, the 1-minute load average, the bars the arena booked meanwhile and the CPU
seconds its processes and the Serve replicas used; then the median over rounds of each route, against
the targets (predict p99 <= 50 ms, experiment p99 <= 100 ms at concurrency 8). ``--window N`` posts the
last N rows of lgbm's example to both routes instead (to compare with a server that publishes other
examples).

    .venv/bin/python benchmarks/serve_latency.py                    # ~2 min
    .venv/bin/python benchmarks/serve_latency.py --concurrency 8 --rounds 5 --servers bare haproxy
    .venv/bin/python benchmarks/serve_latency.py --concurrency 8 --json results/serve.json
    .venv/bin/python benchmarks/serve_latency.py --with-arena --rounds 5 --concurrency 8   # ~4 min
    .venv/bin/python benchmarks/serve_latency.py --help
"""


import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from titan_ray.net import free_port
from titan_ray.serve.settings import model_app, model_route

MODELS = {
    # the LightGBM model that serve_configs/arena.yaml serves (trained into a temporary registry first)
    "lgbm": {"name": "lgbm", "artifact": "lgbm", "train": {
        "kind": "lightgbm", "params": {"horizon": 5, "entry": 1.0}, "seed": 11,
        "data": {"provider": "synthetic", "n_symbols": 8, "bars": 3000, "frequency": "1min", "calendar": "continuous"}}},
    # a rule model: almost no model work, so the figures show the serving overhead alone
    "sma": {"name": "sma", "kind": "sma_crossover", "params": {"fast": 10, "slow": 30}},
}


BARE_WINDOW = 64  # bars of the request of the bare/haproxy/python comparison


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the bare FastAPI app (run in a child process) ---------------------------------------------------


def bare_app(model: dict[str, Any], registry: str) -> Any:
    """The same route as the Serve ingress, in one process: raw body in, the predictor's JSON out."""
    from fastapi import FastAPI, HTTPException, Request, Response

    from titan_ray.serve.loading import load_predictor
    from titan_ray.serve.settings import ServedModel

    predictor = load_predictor(ServedModel.model_validate(model), registry_root=registry)
    app = FastAPI()

    @app.post("/v1/predict/{name}")
    async def predict(name: str, request: Request) -> Response:
        if name != predictor.info.name:
            raise HTTPException(404, detail=f"unknown model {name!r}")
        status, body = predictor.answer_json(await request.body())
        return Response(body, status_code=status, media_type="application/json")

    return app


def run_bare(port: int, model: dict[str, Any], registry: str) -> None:
    import uvicorn

    uvicorn.run(bare_app(model, registry), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the load generator ------------------------------------------------------------------------------


async def _client(port: int, request: bytes, start: float, stop: float, out: list[float], errors: list[int],
                  reconnects: list[int]) -> None:
    """One keep-alive connection sending ``request`` until ``stop``. A connection the server closed
    between answers (HAProxy does on a reload) is opened again and the request sent again, as HTTP
    clients do: nothing was answered on it. The time lost counts in that request's latency."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            while True:
                writer.write(request)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    break
                except (asyncio.IncompleteReadError, ConnectionResetError) as err:
                    if getattr(err, "partial", b""):
                        raise
                    writer.close()
                    reconnects.append(1)
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
            status = int(head[9:12])
            length = None
            chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            elif length:
                await reader.readexactly(length)
            t1 = time.perf_counter()
            if status != 200:
                errors.append(status)
            elif t0 >= start:
                out.append(t1 - t0)
    finally:
        writer.close()


async def _load(port: int, request: bytes, concurrency: int, warmup: float, duration: float) -> dict[str, Any]:
    now = time.perf_counter()
    start, stop = now + warmup, now + warmup + duration
    latencies: list[float] = []
    errors: list[int] = []
    reconnects: list[int] = []
    await asyncio.gather(*(_client(port, request, start, stop, latencies, errors, reconnects)
                           for _ in range(concurrency)))
    lat = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "errors": len(errors),
        "reconnects": len(reconnects),
        "rps": len(lat) / duration,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
    }


def measure(port: int, body: bytes, path: str, levels: list[int], warmup: float, duration: float,
            label: str) -> list[dict[str, Any]]:
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    rows = []
    for c in levels:
        row = asyncio.run(_load(port, request, c, warmup, duration))
        if row["errors"]:
            raise SystemExit(f"{label} answered {row['errors']} requests with a status other than 200")
        again = f"  ({row['reconnects']} connections the server closed, opened again)" if row["reconnects"] else ""
        log(f"  {label:5s} c={c:<3d} {row['rps']:8.0f} req/s  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms"
            + again)
        rows.append({"server": label, **row})
    return rows


def wait_ready(port: int, path: str, body: bytes, timeout: float = 120.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the server on port {port} did not answer {path} within {timeout:.0f} s")
        time.sleep(0.3)


# --- main ---------------------------------------------------------------------------------------------


def serve_config(args: argparse.Namespace, model: dict[str, Any], registry: str) -> dict[str, Any]:
    """The main app (arena off) and the model's own app, as ``serve_configs/arena.yaml`` lays them out."""
    opts = {"num_cpus": 0}
    name = model["name"]
    return {"applications": [
        {"name": "titan-ray", "route_prefix": "/", "import_path": "titan_ray.serve.app:build_app",
         "args": {"models": [name], "arena": {"start": False, "actor": "titan-ray-bench-arena"}},
         "deployments": [{"name": "Ingress", "ray_actor_options": opts}]},
        {"name": model_app(name), "route_prefix": model_route(name),
         "import_path": "titan_ray.serve.app:build_model_app", "args": {**model, "registry": registry},
         "deployments": [{"name": model_app(name), "num_replicas": args.model_replicas,
                          "max_ongoing_requests": args.max_ongoing, "ray_actor_options": opts}]},
    ]}


SERVERS = ("bare", "haproxy", "python")


def measure_serve(args: argparse.Namespace, model: dict[str, Any], registry: str, body: bytes,
                  path: str) -> list[dict[str, Any]]:
    """In a child process: start Ray in ``args.serve_mode``, deploy, measure, stop."""
    from titan_ray.commands.serve import wait_running
    from titan_ray.serve.settings import private_serve_environ

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    with private_serve_environ() if args.serve_mode == "haproxy" else nullcontext():
        ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        port = free_port()
        try:
            client = serve_start(http_options={"host": "127.0.0.1", "port": port})
            config = serve_config(args, model, registry)
            client.deploy_apps(ServeDeploySchema.model_validate(config), _blocking=True)
            # Every app RUNNING first: HAProxy reloads when the routes change, closing keep-alive connections.
            wait_running([a["name"] for a in config["applications"]], 300.0)
            wait_ready(port, path, body)
            time.sleep(2.0)
            log(f"Ray Serve {ray.__version__}, {args.serve_mode} proxy (model x{args.model_replicas}, "
                f"max_ongoing_requests {args.max_ongoing}):")
            return measure(port, body, path, args.concurrency, args.warmup, args.duration, args.serve_mode)
        finally:
            serve.shutdown()
            ray.shutdown()


def _measure_server(server: str, args: argparse.Namespace, passed: list[str], path: str,
                    body: bytes) -> list[dict[str, Any]]:
    """One server started in a child process of its own, measured at every concurrency, stopped."""
    import tempfile

    if server == "bare":
        port = free_port()
        # One OpenMP thread, as Ray gives its workers (OMP_NUM_THREADS=1 unless num_cpus says more):
        # LightGBM and SHAP would otherwise spin threads against the load generator.
        child = subprocess.Popen([sys.executable, __file__, "--bare-server", str(port), *passed],
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            wait_ready(port, path, body)
            log("bare FastAPI/uvicorn (1 worker):")
            return measure(port, body, path, args.concurrency, args.warmup, args.duration, "bare")
        finally:
            child.terminate()
            child.wait(timeout=30)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "--serve-mode", server, "--rows", out.name, *passed], check=True)
        return json.loads(Path(out.name).read_text())


# --- --with-arena: `titan-ray serve` as users run it, its live arena trading ---------------------------

ARENA_PROCESSES = (b"ray::ArenaService", b"ray::ModelActor", b"ray::LedgerActor", b"ray::MarketDataActor",
                   b"ray::WatchdogActor")
TARGETS_MS = {"predict": 50.0, "experiment": 100.0}  # p99 at concurrency 8, with the arena trading


def _get_json(port: int, path: str, timeout: float = 60.0) -> Any:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds used so far by the live arena's processes and by the Serve replicas under ``root``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"arena": 0.0, "replicas": 0.0}
    for pid in _process_tree(root):
        try:
            name = Path(f"/proc/{pid}/cmdline").read_bytes()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = ("arena" if name.startswith(ARENA_PROCESSES) else
                "replicas" if name.startswith(b"ray::ServeReplica") else None)
        if kind:
            out[kind] += (int(fields[11]) + int(fields[12])) / tick
    return out


def with_arena(args: argparse.Namespace) -> int:
    """``titan-ray serve`` (a private Ray, its live arena) in a child process, measured, stopped."""
    import signal
    import tempfile
    import threading

    before = os.getloadavg()
    port = free_port()
    registry = tempfile.mkdtemp(prefix="titan-ray-bench-registry-")  # lgbm trained at start-up, as on a fresh clone
    env = {**os.environ, "TITAN_RAY_REGISTRY": registry}
    command = [sys.executable, "-m", "titan_ray.cli", "serve", "--config", str(args.serve_config),
               "--port", str(port)]
    log(f"load average before the server starts: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f} "
        f"({os.cpu_count()} CPUs)")
    log("starting: " + " ".join(command[1:]))
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(server.stdout), daemon=True)
    reader.start()
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 600
        while not any(line.startswith("Ctrl-C") for line in output):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("titan-ray serve did not come up:\n" + "".join(output))
            time.sleep(0.5)
        while (arena := _get_json(port, "/healthz")["arena"])["bars_done"] < args.arena_bars:
            if arena["status"] != "running" or time.monotonic() > deadline:
                raise SystemExit(f"the live arena is not trading: {arena}")
            time.sleep(1)
        experiment = _get_json(port, f"/v1/experiments/{args.experiment}")
        routes = {"predict": (model_route(args.model), _get_json(port, f"/v1/models/{args.model}")["example_request"]),
                  "experiment": (f"/v1/experiments/{args.experiment}/predict", experiment["example_request"])}
        if args.window:
            bars = routes["predict"][1]["bars"]
            if len(bars["close"]) < args.window:
                raise SystemExit(f"--window {args.window}: the server's example has {len(bars['close'])} rows")
            cut = {"bars": {k: v if k == "symbols" else v[-args.window:] for k, v in bars.items()}}
            routes = {name: (path, cut) for name, (path, _) in routes.items()}
        bodies = {name: json.dumps(body).encode() for name, (_, body) in routes.items()}
        for name, (path, _) in routes.items():
            wait_ready(port, path, bodies[name])
        deadline = time.monotonic() + 60  # the router loads its arms' models (where it does) before we measure
        while any(a.get("answered_in", "router") != "router" for a in experiment["arms"] if not a["shadow"]):
            if time.monotonic() > deadline:
                break
            time.sleep(1)
            experiment = _get_json(port, f"/v1/experiments/{args.experiment}")
        windows = {name: len(body["bars"]["close"]) for name, (_, body) in routes.items()}
        log(f"titan-ray serve on port {port}, the arena at bar {arena['bars_done']}; request windows {windows} rows")
        for round_ in range(1, args.rounds + 1):
            for name, (path, _) in routes.items():
                load = os.getloadavg()[0]
                bars0, cpu0 = _get_json(port, "/healthz")["arena"]["bars_done"], _cpu_seconds(server.pid)
                (row,) = measure(port, bodies[name], path, args.concurrency[:1], args.warmup, args.duration, name[:5])
                bars1, cpu1 = _get_json(port, "/healthz")["arena"]["bars_done"], _cpu_seconds(server.pid)
                span = args.warmup + args.duration
                rows.append({**row, "route": name, "path": path, "round": round_, "loadavg_1m": load,
                             "arena_bars": bars1 - bars0,
                             "arena_cpu_share": (cpu1["arena"] - cpu0["arena"]) / span,
                             "replicas_cpu_share": (cpu1["replicas"] - cpu0["replicas"]) / span})
                log(f"    round {round_}: load average {load:.2f}, arena +{bars1 - bars0} bars, CPU: arena "
                    f"{rows[-1]['arena_cpu_share']:.2f} cores, replicas {rows[-1]['replicas_cpu_share']:.2f} cores")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        reader.join(timeout=10)
    print(f"{'route':12s}{'round':>6s}{'conc':>6s}{'req/s':>9s}{'p50 ms':>9s}{'p99 ms':>9s}{'load':>7s}"
          f"{'bars':>6s}{'arena':>7s}{'replicas':>9s}")
    for r in rows:
        print(f"{r['route']:12s}{r['round']:6d}{r['concurrency']:6d}{r['rps']:9.0f}{r['p50_ms']:9.2f}{r['p99_ms']:9.2f}"
              f"{r['loadavg_1m']:7.2f}{r['arena_bars']:6d}{r['arena_cpu_share']:7.2f}{r['replicas_cpu_share']:9.2f}")
    summary: dict[str, Any] = {}
    for name, target in TARGETS_MS.items():
        mine = [r for r in rows if r["route"] == name]
        med = {k: float(np.median([r[k] for r in mine])) for k in ("rps", "p50_ms", "p99_ms", "loadavg_1m")}
        summary[name] = {**med, "target_p99_ms": target, "meets_target": med["p99_ms"] <= target,
                         "p99s_ms": [r["p99_ms"] for r in mine], "rounds": len(mine)}
        print(f"{name} ({mine[0]['path']}) at concurrency {mine[0]['concurrency']}, live arena trading: median of "
              f"{len(mine)} rounds {med['rps']:.0f} req/s, p50 {med['p50_ms']:.1f} ms, p99 {med['p99_ms']:.1f} ms "
              f"(target <= {target:.0f} ms: {'met' if med['p99_ms'] <= target else 'NOT met'}; rounds "
              f"{min(summary[name]['p99s_ms']):.1f}-{max(summary[name]['p99s_ms']):.1f} ms), load average "
              f"{med['loadavg_1m']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"mode": "with-arena", "rows": rows, "summary": summary,
                                         "load_before": before, "cpus": os.cpu_count(),
                                         "settings": {k: v for k, v in vars(args).items() if k != "json"}},
                                        indent=2, default=str) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="lgbm",
                   help="lgbm: the LightGBM model of arena.yaml (SHAP explanation per request); sma: a rule model")
    p.add_argument("--concurrency", type=int, nargs="+", metavar="N",
                   help="concurrent clients (default 1 8 32; --with-arena: 8)")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per concurrency (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)")
    p.add_argument("--model-replicas", type=int, default=1)
    p.add_argument("--max-ongoing", type=int, default=64, help="max_ongoing_requests of the model replicas")
    p.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS),
                   help="what to measure (default: all three, one after the other)")
    p.add_argument("--rounds", type=int, default=1, metavar="N",
                   help="measure every server N times, interleaved; the verdict is the median (default 1)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--with-arena", action="store_true",
                   help="measure `titan-ray serve` as users run it, its live arena trading: /v1/predict/MODEL and "
                        "the experiment's route, interleaved rounds (only the first --concurrency is used)")
    p.add_argument("--serve-config", type=Path, default=Path("serve_configs/arena.yaml"),
                   help="--with-arena: the Serve config titan-ray serve runs (default serve_configs/arena.yaml)")
    p.add_argument("--experiment", default="lgbm-vs-sma", help="--with-arena: the experiment measured")
    p.add_argument("--window", type=int, metavar="N",
                   help="--with-arena: post the last N rows of the model's example to both routes")
    p.add_argument("--arena-bars", type=int, default=20,
                   help="--with-arena: bars the live arena has booked before measuring (default 20)")
    p.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--serve-mode", choices=["haproxy", "python"], help=argparse.SUPPRESS)
    p.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--registry", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds: at least 1")
    args.concurrency = args.concurrency or ([8] if args.with_arena else [1, 8, 32])
    if args.with_arena:
        return with_arena(args)
    model = MODELS[args.model]
    if args.bare_server:
        run_bare(args.bare_server, model, args.registry)
        return 0

    import tempfile

    from titan_ray.serve.loading import load_predictor
    from titan_ray.serve.predictor import shortest_window, synthetic_window
    from titan_ray.serve.settings import ServedModel

    registry = args.registry or tempfile.mkdtemp(prefix="titan-ray-bench-registry-")
    predictor = load_predictor(ServedModel.model_validate(model), registry_root=registry)  # trains lgbm once
    # a 64-bar window (at least), as the figures in docs/serve.md were measured with
    body = json.dumps(synthetic_window(max(BARE_WINDOW, shortest_window(predictor)))).encode()
    path = model_route(model["name"])
    if args.serve_mode:
        args.rows.write_text(json.dumps(measure_serve(args, model, registry, body, path)))
        return 0
    log(f"model {predictor.info.kind} {predictor.info.artifact or ''}, request body {len(body)} bytes, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    rows: list[dict[str, Any]] = []
    passed = ["--model", args.model, "--registry", registry, "--duration", str(args.duration),
              "--warmup", str(args.warmup), "--model-replicas", str(args.model_replicas),
              "--max-ongoing", str(args.max_ongoing), "--concurrency", *map(str, args.concurrency)]
    for round_ in range(1, args.rounds + 1):
        if args.rounds > 1:
            log(f"round {round_} of {args.rounds}")
        for server in args.servers:
            new = _measure_server(server, args, passed, path, body)
            rows += [{**r, "round": round_} for r in new]

    many = args.rounds > 1
    print(f"{'server':10s}{'round' if many else '':>6s}{'conc':>6s}{'req/s':>10s}{'p50 ms':>10s}{'p99 ms':>10s}"
          f"{'vs bare':>10s}")
    by = {(r["server"], r["concurrency"], r["round"]): r for r in rows}
    for r in sorted(rows, key=lambda r: (args.servers.index(r["server"]), r["concurrency"], r["round"])):
        bare = by.get(("bare", r["concurrency"], r["round"]))
        share = f"{r['rps'] / bare['rps']:.0%}" if bare else "-"
        print(f"{r['server']:10s}{r['round'] if many else '':>6}{r['concurrency']:6d}{r['rps']:10.0f}"
              f"{r['p50_ms']:10.2f}{r['p99_ms']:10.2f}{share:>10s}")
    summary: dict[str, Any] = {}
    rounds = range(1, args.rounds + 1)
    for mode in ("haproxy", "python"):
        if all(("bare", 8, k) in by and (mode, 8, k) in by for k in rounds):
            shares = [by[(mode, 8, k)]["rps"] / by[("bare", 8, k)]["rps"] for k in rounds]
            p99s = [by[(mode, 8, k)]["p99_ms"] for k in rounds]
            share, p99 = float(np.median(shares)), float(np.median(p99s))
            summary[mode] = {"share_of_bare_rps_c8": share, "p99_ms_c8": p99, "rounds": args.rounds,
                             "shares": shares, "p99s_ms": p99s,
                             "meets_60pct": share >= 0.6, "meets_p99_50ms": p99 < 50}
            spread = (f" (median of {args.rounds} rounds; {min(shares):.0%}-{max(shares):.0%}, "
                      f"p99 {min(p99s):.1f}-{max(p99s):.1f} ms)" if many else "")
            print(f"Serve ({mode} proxy{', as titan-ray serve runs it' if mode == 'haproxy' else ''}) at "
                  f"concurrency 8: {share:.0%} of bare FastAPI's requests/s (target >= 60%), "
                  f"p99 {p99:.1f} ms (target < 50 ms){spread}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "settings": {
            k: v for k, v in vars(args).items() if k not in ("json", "bare_server", "registry", "serve_mode", "rows")},
            "model": model, "cpus": os.cpu_count()}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
