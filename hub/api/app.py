"""The app factory: every service is passed in, keyword-only, built by the hub."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from camera_registry.events import DeviceEvent
from hub import __version__
from hub.alarms import drill_routes
from hub.alarms import routes as alarm_routes
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.drill import DrillRunner
from hub.alarms.drill_service import DrillService
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.api.deps import Services
from hub.api.docs import JsonAnswerHeaders, install_api_docs
from hub.api.problems import install_problem_handlers
from hub.api.routes import console, health
from hub.api.validation import reject_nul_text
from hub.auth import apikey_routes, audit_routes, user_routes
from hub.auth import routes as auth_routes
from hub.auth.guards import OriginGuard, authenticate_connection
from hub.auth.service import Authenticator
from hub.broadcast import routes as broadcast_routes
from hub.broadcast.service import BroadcastService
from hub.bus import EventBus
from hub.cluster import routes as cluster_routes
from hub.cluster.service import Cluster
from hub.config import Settings
from hub.departments import routes as department_routes
from hub.departments.service import DepartmentService
from hub.devices import health_routes, jurisdiction_routes, kpi_routes, patrol_routes
from hub.devices import routes as device_routes
from hub.devices.patrol import PatrolService
from hub.devices.registry import Registry
from hub.evidence import routes as evidence_routes
from hub.evidence.service import EvidenceService
from hub.gb28181 import routes as gb28181_routes
from hub.gb28181.service import Gb28181Service
from hub.live import routes as live_view
from hub.live.service import LiveViews
from hub.metrics import Metrics
from hub.mqtt.service import MqttService
from hub.onvif import routes as onvif_routes
from hub.onvif.service import OnvifService
from hub.storage import SqlStore
from hub.writer import EventWriter

__all__ = ["create_app"]


def _drills(
    settings: Settings,
    store: SqlStore,
    events: EventBus[DeviceEvent],
    alarms: AlarmEngine | None,
    alarm_changes: EventBus[AlarmChange] | None,
) -> DrillService | None:
    """The drill service over the hub's real path (none without the alarm engine)."""
    if alarms is None or alarm_changes is None:
        return None
    runner = DrillRunner(
        store=store,
        mqtt=settings.mqtt,
        events=events,
        alarm_changes=alarm_changes,
        alarms=alarms,
        sinks=[(sink.name, sink.drill) for sink in settings.alarms.sinks],
    )
    return DrillService(store, runner)


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
    departments: DepartmentService | None = None,
    evidence: EvidenceService | None = None,
    gb28181: Gb28181Service | None = None,
    cluster: Cluster | None = None,
) -> FastAPI:
    """Build the HTTP API around already-built services (the caller owns their lifecycle)."""
    app = FastAPI(
        title="GridWatch",
        version=__version__,
        description="Video-surveillance and alarm integration hub",
        docs_url=None,  # served by install_api_docs from local assets
        redoc_url=None,
        openapi_url="/openapi.json",
        # Before any route code: text the database cannot hold answers 422.
        dependencies=[Depends(reject_nul_text)],
    )
    install_api_docs(app)
    app.add_middleware(JsonAnswerHeaders)
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
        departments=departments,
        evidence=evidence,
        gb28181=gb28181,
        drills=_drills(settings, store, events, alarm_engine, alarm_changes),
        cluster=cluster,
    )
    app.state.authenticate = authenticate_connection
    app.add_middleware(OriginGuard, extra_origins=settings.auth.allowed_origins)
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(device_routes.router)
    app.include_router(jurisdiction_routes.router)
    app.include_router(alarm_routes.router)
    app.include_router(broadcast_routes.router)
    app.include_router(auth_routes.router)
    app.include_router(user_routes.router)
    app.include_router(apikey_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(live_view.router)
    app.include_router(health_routes.router)
    app.include_router(patrol_routes.router)
    app.include_router(onvif_routes.router)
    app.include_router(gb28181_routes.router)
    app.include_router(kpi_routes.router)
    app.include_router(drill_routes.router)
    app.include_router(department_routes.router)
    app.include_router(evidence_routes.router)
    app.include_router(cluster_routes.router)
    app.include_router(console.router)
    app.include_router(console.api_router)
    return app
