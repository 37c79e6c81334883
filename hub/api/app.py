"""The app factory: every service is passed in, keyword-only, built by the hub."""

from __future__ import annotations

from fastapi import FastAPI

from camera_registry.events import DeviceEvent
from hub import __version__
from hub.api.deps import Services
from hub.api.problems import install_problem_handlers
from hub.api.routes import health
from hub.bus import EventBus
from hub.config import Settings
from hub.metrics import Metrics
from hub.storage import SqlStore
from hub.writer import EventWriter

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    *,
    store: SqlStore,
    writer: EventWriter,
    events: EventBus[DeviceEvent],
    metrics: Metrics,
) -> FastAPI:
    """Build the HTTP API around already-built services (the caller owns their lifecycle)."""
    app = FastAPI(
        title="GridWatch",
        version=__version__,
        description="Video-surveillance and alarm integration hub",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.services = Services(
        settings=settings, store=store, writer=writer, events=events, metrics=metrics
    )
    install_problem_handlers(app)
    app.include_router(health.router)
    return app
