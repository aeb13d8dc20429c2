"""The dashboard package: what mount() serves over real HTTP, what the wheel ships, how a report is inlined."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from servers import free_port

from titan_ray.dashboard import INDEX, STATIC_DIR, mount
from titan_ray.dashboard.report import DATA_ID, render

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def served():
    """A FastAPI app with the dashboard mounted and a route added after it, on uvicorn."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    mount(app)

    @app.get("/v1/ping")
    def ping() -> dict:
        return {"pong": True}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    else:
        pytest.fail("uvicorn did not start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_mount_serves_the_page_and_every_asset_it_names(served):
    status, headers, body = _get(served + "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers.get("cache-control") == "no-cache"
    page = body.decode()
    assets = re.findall(r'(?:src|href)="(static/[^"]+)"', page)
    assert "static/vendor/lightweight-charts.standalone.production.js" in assets and "static/app.css" in assets
    for asset in assets:
        status, headers, body = _get(f"{served}/{asset}")
        assert status == 200 and body, asset
    assert _get(served + "/static/no-such-file.js")[0] == 404
    # routes added after mount() still answer: it adds routes, not a catch-all
    assert json.loads(_get(served + "/v1/ping")[2]) == {"pong": True}


def test_vendored_chart_library_has_its_licence_and_ships_as_package_data():
    vendor = STATIC_DIR / "vendor"
    lib = (vendor / "lightweight-charts.standalone.production.js").read_text()
    assert "Lightweight Charts" in lib[:400] and "Apache License 2.0" in lib[:400]
    assert "Apache License" in (vendor / "lightweight-charts.LICENSE").read_text()
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["titan_ray"]
    package = ROOT / "titan_ray"
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            rel = path.relative_to(package).as_posix()
            assert any(fnmatch.fnmatch(rel, p) and rel.count("/") == p.count("/") for p in patterns), \
                f"{rel} is not in pyproject's package-data: an installed wheel would lack it"


def test_report_inlines_everything_and_keeps_hostile_text_inside_its_data():
    hostile = "</script><script>alert(1)</script><!-- & \u2028"
    payload = {"leaderboard": {"run_id": "r", "status": "finished", "benchmark": "", "progress": {"bars_done": 1,
               "bars_total": 1}, "rows": [{"model": hostile}]}, "equity": {"timestamps": [], "models": {}},
               "why": {"m:A:1": {"sentence": hostile}}, "meta": {"run_id": "<b>r</b>"}}
    page = render(payload)
    assert not re.search(r'(src|href)="static/', page), "a report must not load files beside it"
    index = INDEX.read_text()
    scripts = re.findall(r'<script src="static/([^"]+)"></script>', index)
    assert page.lower().count("</script") == 1 + len(scripts)  # the data, then each script: none cut short
    data = re.search(rf'<script id="{DATA_ID}" type="application/json">(.*?)</script>', page, re.DOTALL)
    assert data is not None and json.loads(data[1]) == payload
    assert "<b>r</b>" not in page.split("<body")[0]  # the title is escaped
    for src in scripts:
        assert f"/* static/{src} */" in page


def test_report_command_names_the_problem(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "titan_ray", "report", *args], check=False,
                              capture_output=True, text=True,
                              timeout=60)

    missing = run(str(tmp_path / "nope"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr and "--out folder" in missing.stderr
    empty = run(str(tmp_path))
    assert empty.returncode == 2 and "leaderboard.json is missing" in empty.stderr
    bad = run(str(tmp_path), "--trades", "0")
    assert bad.returncode == 2 and "--trades must be at least 1" in bad.stderr
    helped = run("--help")
    assert helped.returncode == 0 and "DIR/report.html" in helped.stdout
