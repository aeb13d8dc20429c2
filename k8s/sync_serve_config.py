"""Write serve_configs/production.yaml into k8s/rayservice.yaml as its serveConfigV2.

The Serve config has one source, serve_configs/production.yaml; the RayService manifest embeds a copy
(Kubernetes has no include), and tests/deploy/test_k8s_manifests.py fails when the two differ.
Run this after editing the Serve config:

    python k8s/sync_serve_config.py

The copy listens on 0.0.0.0:8000, the port KubeRay's <name>-serve-svc sends traffic to; the rest
is the Serve config as written (comments dropped). Everything else in the manifest is kept.
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


def main() -> int:
    config = for_kubernetes(yaml.safe_load(SOURCE.read_text()))
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
