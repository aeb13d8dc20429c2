"""Write serve_configs/production.yaml into k8s/rayservice.yaml as its serveConfigV2.

The Serve config has one source, serve_configs/production.yaml; the RayService manifest embeds a copy
(Kubernetes has no include), and tests/deploy/test_k8s_manifests.py fails when the two differ.
Run this after editing the Serve config:

    python k8s/sync_serve_config.py

The copy listens on 0.0.0.0:8000, the port KubeRay's <name>-serve-svc sends traffic to; the rest
is the Serve config as written (comments dropped): every application (the main app, one per served
model, one per experiment), in the file's order. Before writing, the applications are checked
together (titan_ray.serve.settings.check_deploy_config: names, route prefixes, arms) when TitanRay
is importable, so a broken config never reaches the manifest. Everything else in the manifest is
kept.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "serve_configs" / "production.yaml"
MANIFEST = ROOT / "k8s" / "rayservice.yaml"
KEY = "  serveConfigV2: |"


def for_kubernetes(config: dict[str, Any]) -> dict[str, Any]:
    """The Serve config as a RayService runs it: HTTP on every address, port 8000."""
    config = dict(config)
    config["http_options"] = {**(config.get("http_options") or {}), "host": "0.0.0.0", "port": 8000}
    return config


def check(config: dict[str, Any]) -> str | None:
    """Why TitanRay refuses the Serve config's applications, or None (also when it is not installed)."""
    try:
        from titan_ray.config import ConfigError
        from titan_ray.serve.settings import check_deploy_config
    except ImportError:
        return None
    try:
        check_deploy_config(config, source=str(SOURCE.relative_to(ROOT)))
    except ConfigError as err:
        return str(err)
    return None


def main() -> int:
    raw = yaml.safe_load(SOURCE.read_text())
    if not isinstance(raw, dict) or not raw.get("applications"):
        print(f"{SOURCE}: no `applications` to embed", file=sys.stderr)
        return 1
    problem = check(raw)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    config = for_kubernetes(raw)
    body = yaml.safe_dump(config, sort_keys=False, width=100)
    lines = MANIFEST.read_text().splitlines()
    if KEY not in lines:
        print(f"{MANIFEST}: no line {KEY!r} to fill", file=sys.stderr)
        return 1
    start = lines.index(KEY) + 1
    end = start
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("    ")):
        end += 1
    block = ["    " + line if line else "" for line in body.splitlines()]
    MANIFEST.write_text("\n".join(lines[:start] + block + lines[end:]) + "\n")
    print(f"{MANIFEST.relative_to(ROOT)}: serveConfigV2 is now {SOURCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
