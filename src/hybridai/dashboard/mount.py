"""Everything the cloud app serves for browsers: the dashboard and the offline API docs."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from hybridai.dashboard import offline_docs, pages

# Paths the app-wide bearer check leaves to the dashboard (it signs people in by cookie).
OPEN_PREFIX = "/ui"


def install(app: FastAPI) -> None:
    app.include_router(pages.router)
    app.mount("/ui/static", StaticFiles(directory=pages.HERE / "static"), name="dashboard-static")
    offline_docs.install(app)
