"""The web pages: the softphone at `/`, the dashboard at `/dashboard`, their files at `/static`.

The pages are plain HTML, CSS and JavaScript modules in `static/`, served as they are: no build
step and nothing fetched from elsewhere. They hold no data of their own; what the dashboard shows
comes from API routes that need the API key when one is set (the page asks for it).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"
SOFTPHONE_PATH = "/"
DASHBOARD_PATH = "/dashboard"


def mount_pages(app: FastAPI) -> None:
    """Serve the softphone, the dashboard and their static files on `app`."""

    @app.get(SOFTPHONE_PATH, include_in_schema=False)
    async def softphone() -> FileResponse:
        return FileResponse(STATIC_DIR / "softphone.html")

    @app.get(DASHBOARD_PATH, include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "dashboard.html")

    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")
