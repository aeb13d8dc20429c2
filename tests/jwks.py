"""An OIDC provider's signing keys for tests: an RSA and an EC P-256 key, their JWKS served over real HTTP
on loopback (what a provider's ``jwks_uri`` answers), and tokens signed with either."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://issuer.titan-ray.test"
AUDIENCE = "titan-ray-test"


@dataclass
class Provider:
    url: str  # the JWKS
    keys: dict[str, Any]  # alg -> private key
    requests: list[str]  # paths the server was asked for

    def sign(self, alg: str, sub: str, scope: str, *, ttl_s: float = 600, issuer: str | None = ISSUER,
             audience: str | None = AUDIENCE, kid: str | None = None, **claims: Any) -> str:
        """A token of the ``alg`` key, its header naming ``kid`` (default that key's id)."""
        now = time.time()
        body = {"sub": sub, "scope": scope, "iat": int(now), "exp": int(now + ttl_s), "jti": uuid.uuid4().hex,
                **({"iss": issuer} if issuer else {}), **({"aud": audience} if audience else {}), **claims}
        return jwt.encode(body, self.keys[alg], algorithm=alg, headers={"kid": kid or f"key-{alg.lower()}"})


def jwks_document(keys: dict[str, Any]) -> dict[str, Any]:
    out = []
    for alg, key in keys.items():
        algorithm = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
        jwk = algorithm.to_jwk(key.public_key(), as_dict=True)
        out.append({**jwk, "kid": f"key-{alg.lower()}", "alg": alg, "use": "sig"})
    return {"keys": out}


@contextmanager
def serve_jwks(document: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """``document`` at http://127.0.0.1:PORT/.well-known/jwks.json from a real HTTP server in a thread;
    yields (url, the paths it was asked for)."""
    body = json.dumps(document).encode()
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path != "/.well-known/jwks.json":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def jwks_provider() -> Iterator[Provider]:
    keys = {"RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": ec.generate_private_key(ec.SECP256R1())}
    with serve_jwks(jwks_document(keys)) as (url, seen):
        yield Provider(url, keys, seen)
