"""`titan-ray serve`: start the Ray Serve app (predictions, A/B experiments, the live arena)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from contextlib import ExitStack, redirect_stderr, redirect_stdout
from pathlib import Path

import ray
import yaml
from pydantic import ValidationError
from ray import serve
from ray.exceptions import AuthenticationError
from ray.serve._private.api import serve_start
from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
from ray.serve.context import _disconnect, _get_global_client
from ray.serve.schema import ServeDeploySchema

from titan_ray.config import ConfigError
from titan_ray.serve.settings import ARENA_NAMESPACE, check_deploy_config, private_serve_environ

WORKER_NICENESS = 0  # of a private Ray's workers (the Serve replicas); Ray's own default is 15


def load_serve_config(path: Path) -> dict:
    """Read and validate a Serve config against Ray's own schema; errors name the field."""
    if not path.is_file():
        raise ConfigError(f"Serve config {path} does not exist; pass --config FILE (the repository ships "
                          "serve_configs/arena.yaml and serve_configs/production.yaml)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    try:
        ServeDeploySchema.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path} is not a valid Serve config: {problems}") from None
    check_deploy_config(raw, source=str(path))  # the apps' own args and how they fit, before anything starts
    return raw


def run(args: argparse.Namespace) -> int:
    raw = load_serve_config(args.config)
    if args.detach and not args.address:
        raise ConfigError("--detach needs --address: a private Ray ends with this command")
    http = dict(raw.get("http_options") or {})
    if args.host:
        http["host"] = args.host
    if args.port:
        http["port"] = args.port
    raw["http_options"] = http
    with ExitStack() as stack:
        if args.address is None:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local Ray needs no token
            # Ray starts its workers at niceness 15, below every other program on the machine; a serving
            # command's replicas run at the usual 0, and the live arena lowers itself (ArenaSettings.nice).
            os.environ.setdefault("RAY_worker_niceness", str(WORKER_NICENESS))
            if args.proxy == "haproxy":
                stack.enter_context(private_serve_environ())  # read by every Serve process at start
        return _deploy(args, raw)


def _deploy(args: argparse.Namespace, raw: dict) -> int:
    """Join or start Ray, deploy ``raw``, wait until it runs; then return (--detach) or hold it
    until Ctrl-C or SIGTERM and shut Serve (and a private Ray) down."""
    host, port = raw["http_options"].get("host", "127.0.0.1"), raw["http_options"].get("port", 8000)
    if args.address is None:
        mode = f"a private Ray, {args.proxy} proxy"
    else:
        mode = args.address
        if args.proxy != "haproxy":
            print("titan-ray serve: --proxy applies to a private Ray; on a cluster the nodes' environment "
                  "decides (docs/serve.md)", file=sys.stderr, flush=True)
    print(f"titan-ray serve: {args.config} on {mode}", flush=True)
    try:
        ray.init(address=args.address or "local", include_dashboard=False, logging_level="WARNING",
                 log_to_driver=True)
    except (AuthenticationError, ConnectionError) as exc:
        raise ConfigError(_unreachable(args.address, exc)) from exc
    # A service manager's stop, like Ctrl-C: Serve and a private Ray shut down. Set after ray.init,
    # which installs a handler of its own that aborts the process.
    signal.signal(signal.SIGTERM, _stop)
    schema = ServeDeploySchema.model_validate(raw)
    names = [a.name for a in schema.applications]
    try:
        client = serve_start(http_options={"host": host, "port": port})
        client.deploy_apps(schema)
        print(f"deploying {', '.join(names)} (models missing from the registry are trained first) ...", flush=True)
        wait_running(names, args.timeout)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://{shown}:{port}"
        print(f"ready: dashboard {url}/  API {url}/v1/leaderboard  OpenAPI {url}/openapi.json  "
              f"metrics {url}/metrics", flush=True)
        if args.detach:
            return 0
        print("Ctrl-C (or SIGTERM) stops it.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    finally:
        if not args.detach:
            print(_stop_everything(args, raw, names), flush=True)


def _stop_everything(args: argparse.Namespace, raw: dict, names: list[str]) -> str:
    """Shut down what this command started, quietly; the line that says what was stopped.

    Serve first (the applications, their replicas and proxies), then a private Ray, and with it the
    live arena: its actors end with their processes, none with a call in flight that Ray would
    retry and report. On a cluster the arena's detached actor keeps trading (a later deploy
    attaches to it; ``ray.kill`` ends it).
    """
    # A second Ctrl-C while stopping would leave processes behind and print a traceback: stopping goes on.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    arena = _arena_actor(raw)
    if arena is not None:
        try:
            ray.get_actor(arena, namespace=ARENA_NAMESPACE)
        except ValueError:  # no arena runs under that name
            arena = None
    # What Ray's processes print while they go down is not for the user who stopped them: a start-up
    # warning that Ray's log deduplication held back until the next line came, a dying replica's
    # last words. The line returned says what was stopped, and whether Serve went down in time.
    with open(os.devnull, "w") as sink, redirect_stdout(sink), redirect_stderr(sink):
        stopped = [f"the applications {', '.join(names)}",
                   "Serve" if shutdown_serve() else "Serve (its controller had not exited after 30 s)"]
        ray.shutdown()
    if args.address is None:
        stopped.append(f"the live arena {arena!r} and the private Ray" if arena else "the private Ray")
    elif arena:
        stopped[-1] += f" (the live arena {arena!r} keeps running on the cluster: `ray.kill` ends it)"
    return "stopped: " + "; ".join(stopped)


def _arena_actor(raw: dict) -> str | None:
    """The name of the live arena actor the main app of ``raw`` runs (or attaches to), if any."""
    checked = check_deploy_config(raw)
    main = checked["main"]
    return main.arena.actor if main is not None and main.arena.folder is None else None


def shutdown_serve(timeout_s: float = 30.0) -> bool:
    """``serve.shutdown()``, quietly: the controller is told to shut down without a call that waits
    for it (its own exit fails such a call, and Ray, retrying it, prints "Task
    ServeController.graceful_shutdown failed ... infinite retries"), then watched until it is gone.
    False when it is still there after ``timeout_s``."""
    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return True
    client.shutdown_cached_handles()
    client._controller.graceful_shutdown.remote(wait=False)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
            except ValueError:  # gone: its applications, replicas and proxies went first
                return True
            time.sleep(0.2)
        return False
    finally:
        _disconnect()


def _unreachable(address: str | None, exc: BaseException) -> str:
    """What to do when ``ray.init`` could not join the cluster: a missing token named as such."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    # A client without RAY_AUTH_MODE=token gets a ConnectionError over a RuntimeError naming the token.
    if any(isinstance(e, AuthenticationError) or "authentication token" in str(e).lower() for e in chain):
        return (f"the Ray cluster at {address} runs with token authentication and no token for it was found "
                "here: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH, or put it in "
                "~/.ray/auth_token), the same token its nodes have (docs/deploy.md)")
    return (f"could not join the Ray cluster at {address} ({exc}): check that it runs (`ray status`), or "
            "leave out --address for a private Ray")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def wait_running(names: list[str], timeout: float) -> None:
    """Until every application in ``names`` is RUNNING, printing each change of their states;
    ``ConfigError`` when one fails to deploy or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        status = serve.status()
        states = {n: str(getattr(status.applications[n].status, "value", status.applications[n].status))
                  if n in status.applications else "NOT_STARTED" for n in names}
        text = ", ".join(f"{n} {s}" for n, s in states.items())
        if text != last:
            print(f"  {text}", flush=True)
            last = text
        if all(s == "RUNNING" for s in states.values()):
            return
        failed = [n for n, s in states.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")]
        if failed:
            detail = "; ".join(status.applications[n].message for n in failed)
            raise ConfigError(f"the Serve app failed to deploy: {detail[:2000]}")
        if time.monotonic() > deadline:
            raise ConfigError(f"the Serve app is not RUNNING after {timeout:.0f} s ({text}); raise --timeout")
        time.sleep(1.0)
