"""`titan-ray serve`: start the Ray Serve app (predictions, A/B experiments, the live arena)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import ray
import yaml
from pydantic import ValidationError
from ray import serve
from ray.exceptions import AuthenticationError
from ray.serve._private.api import serve_start
from ray.serve.schema import ServeDeploySchema

from titan_ray.config import ConfigError
from titan_ray.serve.settings import check_deploy_config, private_serve_environ


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
    try:
        client = serve_start(http_options={"host": host, "port": port})
        client.deploy_apps(schema)
        names = [a.name for a in schema.applications]
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
        print("stopping ...", file=sys.stderr, flush=True)
        return 0
    finally:
        if not args.detach:
            serve.shutdown()
            ray.shutdown()


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
