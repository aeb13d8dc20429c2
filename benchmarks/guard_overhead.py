"""What the HTTP API's guard costs a request: the ``titan_ray.serve.security.Guard`` middleware against
the same ASGI app without it, in-process (no network, no Serve), per request.

What is measured
----------------
A prediction request as a model app receives it (``POST /v1/predict/lgbm``, a declared body) goes
``--n`` times through the guard in front of a no-op ASGI app, then ``--n`` times straight to that
app; the difference per request is the guard's cost: request id, route class, body limit, the
credential check, the in-process rate limit (GCRA), security headers. Three credentials: none
(anonymous), the static API token, and an HS256 JWT (PyJWT's decode and claim checks). Best of
``--repeat``. ``--redis-url`` adds a line with the rate limits in that Redis (``auth.redis_url``: one
script call per request). Compare with a whole request through Serve in ``benchmarks/serve_latency.py`` (a
median of 10-20 ms at concurrency 8 on the 2-core machine).

    python benchmarks/guard_overhead.py
    python benchmarks/guard_overhead.py --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time
from types import SimpleNamespace
from typing import Any

from titan_ray.serve.security import Guard, Security, mint_token
from titan_ray.serve.settings import AuthSettings


async def _app(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict) -> None:
    pass


def _scope(app: Any, bearer: str | None) -> dict:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2000")]
    if bearer is not None:
        headers.append((b"authorization", f"Bearer {bearer}".encode()))
    return {"type": "http", "method": "POST", "path": "/v1/predict/lgbm", "root_path": "/v1/predict/lgbm",
            "headers": headers, "client": ("127.0.0.1", 50000), "app": app}


async def _per_request(handler: Any, app: Any, bearer: str | None, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await handler(_scope(app, bearer), _receive, _send)
    return (time.perf_counter() - start) / n


async def _measure(n: int, repeat: int, redis_url: str | None) -> dict[str, float]:
    os.environ.setdefault("TITAN_RAY_API_TOKEN", secrets.token_hex(16))
    os.environ.setdefault("TITAN_RAY_JWT_SECRET", secrets.token_hex(32))
    security = Security(AuthSettings(rate_limits={"predict": "100000000/second"}), app="model")
    app = SimpleNamespace(state=SimpleNamespace(security=security))
    guard = Guard(_app)
    credentials = {"anonymous": None, "API token": os.environ["TITAN_RAY_API_TOKEN"],
                   "HS256 JWT": mint_token(os.environ["TITAN_RAY_JWT_SECRET"], "bench", ["read"], 3600)}
    out = {}
    for name, bearer in credentials.items():
        best = min([await _per_request(guard, app, bearer, n) - await _per_request(_app, app, bearer, n)
                    for _ in range(repeat)])
        out[name] = best * 1e6
    await security.close()
    if redis_url is not None:
        shared = Security(AuthSettings(rate_limits={"predict": "100000000/second"}, redis_url=redis_url), app="model")
        app = SimpleNamespace(state=SimpleNamespace(security=shared))
        m = max(n // 10, 100)  # a network round trip each: fewer
        out["anonymous, limits in Redis"] = min(
            [await _per_request(guard, app, None, m) - await _per_request(_app, app, None, m)
             for _ in range(repeat)]) * 1e6
        await shared.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000, help="requests per measurement (default 20000)")
    p.add_argument("--repeat", type=int, default=3, help="best of this many measurements (default 3)")
    p.add_argument("--redis-url", metavar="URL", help="also measure with the rate limits in this Redis")
    args = p.parse_args()
    print(f"the guard's cost per request (best of {args.repeat} x {args.n}):")
    for name, us in asyncio.run(_measure(args.n, args.repeat, args.redis_url)).items():
        print(f"  {name:<28} {us:7.1f} µs")


if __name__ == "__main__":
    main()
