"""Where a result came from: the code version stamped on runs and registry entries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import titan_ray


def code_version() -> str:
    """The package version, with the git commit when the code runs from a checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5, check=False,
        ).stdout.strip()
    except OSError:
        sha = ""
    return f"{titan_ray.__version__}+{sha}" if sha else titan_ray.__version__
