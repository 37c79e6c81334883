"""The app factory: every service is passed in, keyword-only, built by the hub."""

from __future__ import annotations

from fastapi import FastAPI

from camera_registry.events import DeviceEvent
from hub import __version__
from hub.alarm_engine import AlarmChange, AlarmEngine
from hub.api.auth import OriginGuard, authenticate_connection
from hub.api.deps import Services
from hub.api.problems import install_problem_handlers
from hub.api.routes import (
    alarms,
    apikeys,
    audit,
    auth,
    broadcast,
    console,
    device_health,
    devices,
    drills,
    health,
    jurisdictions,
    kpi,
    patrol,
    users,
)
from hub.api.routes import live as live_view
from hub.api.routes import onvif as onvif_routes
from hub.auth import Authenticator
from hub.broadcast import BroadcastService
from hub.bus import EventBus
from hub.config import Settings
from hub.dispatcher import Dispatcher
from hub.live import LiveViews
from hub.metrics import Metrics
from hub.mqtt import MqttService
from hub.onvif_service import OnvifService
from hub.patrol import PatrolService
from hub.registry import Registry
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
    registry: Registry | None = None,
    mqtt: MqttService | None = None,
    broadcast_service: BroadcastService | None = None,
    auth_service: Authenticator | None = None,
    live: LiveViews | None = None,
    alarm_engine: AlarmEngine | None = None,
    alarm_changes: EventBus[AlarmChange] | None = None,
    dispatcher: Dispatcher | None = None,
    patrol_service: PatrolService | None = None,
    onvif: OnvifService | None = None,
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
        settings=settings,
        store=store,
        writer=writer,
        events=events,
        metrics=metrics,
        registry=registry,
        mqtt=mqtt,
        broadcast=broadcast_service,
        auth=auth_service,
        live=live,
        alarms=alarm_engine,
        alarm_changes=alarm_changes,
        dispatcher=dispatcher,
        patrol=patrol_service,
        onvif=onvif,
    )
    app.state.authenticate = authenticate_connection
    app.add_middleware(OriginGuard, extra_origins=settings.auth.allowed_origins)
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(devices.router)
    app.include_router(jurisdictions.router)
    app.include_router(alarms.router)
    app.include_router(broadcast.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(apikeys.router)
    app.include_router(audit.router)
    app.include_router(live_view.router)
    app.include_router(device_health.router)
    app.include_router(patrol.router)
    app.include_router(onvif_routes.router)
    app.include_router(kpi.router)
    app.include_router(drills.router)
    app.include_router(console.router)
    return app
