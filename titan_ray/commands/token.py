"""`titan-ray token`: mint an HS256 JWT for the HTTP API, signed with $TITAN_RAY_JWT_SECRET.

For local use and scripts: the servers that hold the same secret accept it. The token goes to
stdout alone (so ``TOKEN=$(titan-ray token --scope read)`` works); what it grants goes to stderr.
An identity provider (RS256/ES256 through a JWKS) is the way for people on a shared deployment.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import time

from titan_ray.serve.security import mint_token


def run(args: argparse.Namespace) -> int:
    secret = os.environ.get(args.secret_env)
    if not secret:
        print(f"titan-ray token: ${args.secret_env} is not set; export the secret the servers hold "
              f"(make one with `openssl rand -hex 32`)", file=sys.stderr)
        return 2
    scopes = [s for part in args.scope for s in re.split(r"[\s,]+", part) if s]
    subject = args.sub or f"local:{getpass.getuser()}"
    try:
        token = mint_token(secret, subject, scopes, args.ttl, issuer=args.issuer, audience=args.audience)
    except ValueError as err:
        print(f"titan-ray token: {err}", file=sys.stderr)
        return 2
    expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + args.ttl))
    print(token)
    print(f"token for {subject!r}, scopes {' '.join(dict.fromkeys(scopes))}, expires {expires}", file=sys.stderr)
    return 0
