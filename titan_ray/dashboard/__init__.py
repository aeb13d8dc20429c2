"""The web dashboard: a static single-page app that the FastAPI ingress serves at ``/``.

``static/`` holds plain HTML, CSS and JavaScript (no build step) and a vendored copy of
TradingView's lightweight-charts (``static/vendor/``, with its licence), so the page needs no network
beyond the ingress itself. The page reads the JSON API (``v1/leaderboard``, ``v1/equity``, ...) with
URLs relative to itself, so it works under any Serve route prefix, and follows ``v1/events``
(server-sent events) for live updates.

``mount(app)`` adds two things to an app: ``GET /`` (the page) and ``/static`` (its assets). It adds
routes, not a catch-all mount at ``/``, so routes the ingress defines after calling it still match.
``titan-ray report`` inlines the same files into one self-contained HTML file
(``titan_ray.dashboard.report``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import fastapi

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = STATIC_DIR / "index.html"


def mount(app: fastapi.FastAPI) -> None:
    """Serve the dashboard page at ``/`` and its assets under ``/static`` of ``app``."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    if not INDEX.is_file():
        raise RuntimeError(f"the dashboard's {INDEX} is missing: reinstall titan-ray (it ships as package data)")

    async def dashboard() -> FileResponse:
        # no-cache: a new version of the package must not be hidden behind an old cached page
        return FileResponse(INDEX, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.add_api_route("/", dashboard, methods=["GET"], include_in_schema=False, name="dashboard")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
