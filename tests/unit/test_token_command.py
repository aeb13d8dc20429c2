"""`titan-ray token`: an HS256 JWT the servers holding the same secret accept, on stdout alone."""

from __future__ import annotations

import time

import jwt
import pytest

from titan_ray.cli import main
from titan_ray.serve.security import Credentials
from titan_ray.serve.settings import AuthSettings

SECRET = "s" * 40


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TITAN_RAY_JWT_SECRET", SECRET)
    return SECRET


def test_the_token_is_what_the_server_accepts(secret, capsys):
    assert main(["token", "--scope", "read", "--scope", "trade", "--sub", "alice", "--ttl", "30m"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert out.count("\n") == 1 and token.count(".") == 2  # the token alone on stdout
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["scope"] == "read trade"
    assert claims["exp"] - claims["iat"] == 1800 and abs(claims["iat"] - time.time()) < 60
    assert "alice" in err and "read trade" in err and token not in err
    identity = Credentials(AuthSettings()).check(f"Bearer {token}")
    assert identity.subject == "alice" and identity.scopes == {"read", "trade"}


def test_issuer_audience_and_comma_separated_scopes(secret, capsys):
    assert main(["token", "--scope", "read,admin", "--issuer", "https://i", "--audience", "api", "--ttl", "90"]) == 0
    claims = jwt.decode(capsys.readouterr()[0].strip(), secret, algorithms=["HS256"], audience="api")
    assert claims["iss"] == "https://i" and claims["scope"] == "read admin" and claims["exp"] - claims["iat"] == 90
    assert claims["sub"].startswith("local:")


@pytest.mark.parametrize(("argv", "said"), [
    (["--scope", "root"], "choose from"),
    (["--scope", "read", "--ttl", "0s"], "ttl"),
])
def test_bad_requests_name_the_problem(secret, capsys, argv, said):
    assert main(["token", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and said in err


def test_no_secret_says_how_to_make_one(monkeypatch, capsys):
    monkeypatch.delenv("TITAN_RAY_JWT_SECRET", raising=False)
    assert main(["token", "--scope", "read"]) == 2
    assert "openssl rand -hex 32" in capsys.readouterr()[1]


def test_a_bad_duration_is_a_usage_error(secret, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["token", "--scope", "read", "--ttl", "soon"])
    assert exit_.value.code == 2 and "90s, 30m, 1h or 7d" in capsys.readouterr()[1]
