"""The services a route may depend on, as `Depends()` providers tests can override."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import HTTPConnection

from camera_registry.events import DeviceEvent
from hub.alarms.actions import AlarmActions
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.drill_service import DrillService
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.api.problems import Problem
from hub.auth.service import Authenticator
from hub.broadcast.service import BroadcastService
from hub.bus import EventBus
from hub.cluster.service import Cluster
from hub.config import Settings
from hub.departments.service import DepartmentService
from hub.devices.patrol import PatrolService
from hub.devices.registry import Registry
from hub.evidence.service import EvidenceService
from hub.gb28181.service import Gb28181Service
from hub.live.service import LiveViews
from hub.metrics import Metrics
from hub.mqtt.service import MqttService
from hub.onvif.service import OnvifService
from hub.storage import SqlStore
from hub.writer import EventWriter

__all__ = [
    "Services",
    "get_alarm_actions",
    "get_alarm_changes",
    "get_alarms",
    "get_auth",
    "get_broadcast",
    "get_cluster",
    "get_departments",
    "get_dispatcher",
    "get_drills",
    "get_evidence",
    "get_gb28181",
    "get_live",
    "get_metrics",
    "get_mqtt",
    "get_onvif",
    "get_patrol",
    "get_registry",
    "get_services",
    "get_settings",
    "get_store",
    "get_writer",
]

_S = TypeVar("_S")


@dataclass(frozen=True)
class Services:
    """Everything the HTTP layer uses, built once by the hub."""

    settings: Settings
    store: SqlStore
    writer: EventWriter
    events: EventBus[DeviceEvent]
    metrics: Metrics
    registry: Registry | None = None
    mqtt: MqttService | None = None
    broadcast: BroadcastService | None = None
    auth: Authenticator | None = None
    live: LiveViews | None = None
    alarms: AlarmEngine | None = None
    alarm_changes: EventBus[AlarmChange] | None = None
    dispatcher: Dispatcher | None = None
    patrol: PatrolService | None = None
    onvif: OnvifService | None = None
    departments: DepartmentService | None = None
    evidence: EvidenceService | None = None
    gb28181: Gb28181Service | None = None
    drills: DrillService | None = None
    cluster: Cluster | None = None


def get_services(request: HTTPConnection) -> Services:
    """The hub's services."""
    services: Services = request.app.state.services
    return services


def _present(service: _S | None, title: str, detail: str) -> _S:
    """`service`, or a 503 problem when the hub was built without it."""
    if service is None:
        raise Problem(503, title, detail)
    return service


def get_settings(request: HTTPConnection) -> Settings:
    """The hub's settings."""
    return get_services(request).settings


def get_store(request: HTTPConnection) -> SqlStore:
    """The storage backend."""
    return get_services(request).store


def get_writer(request: HTTPConnection) -> EventWriter:
    """The event writer."""
    return get_services(request).writer


def get_metrics(request: HTTPConnection) -> Metrics:
    """The hub's metrics."""
    return get_services(request).metrics


def get_registry(request: HTTPConnection) -> Registry:
    """The device registry; 503 when the app was built without one."""
    return _present(
        get_services(request).registry, "Registry unavailable", "this hub runs no device registry"
    )


def get_mqtt(request: HTTPConnection) -> MqttService | None:
    """The MQTT device service (None when the app was built without one)."""
    return get_services(request).mqtt


def get_broadcast(request: HTTPConnection) -> BroadcastService:
    """The broadcast command service; 503 when the app was built without one."""
    return _present(
        get_services(request).broadcast,
        "Broadcast unavailable",
        "this hub runs no broadcast service",
    )


def get_auth(request: HTTPConnection) -> Authenticator:
    """Users, sessions and API keys; 503 when the app was built without them."""
    return _present(
        get_services(request).auth, "Authentication unavailable", "this hub runs no authentication"
    )


def get_alarms(request: HTTPConnection) -> AlarmEngine:
    """The alarm engine (503 when this app was built without one)."""
    return _present(
        get_services(request).alarms, "Alarms unavailable", "this hub runs without the alarm engine"
    )


def get_alarm_actions(request: HTTPConnection) -> AlarmActions:
    """Operator actions and the alarm API's reads (503 without the alarm engine)."""
    return get_alarms(request).actions


def get_drills(request: HTTPConnection) -> DrillService:
    """Drills (503 without the alarm engine)."""
    return _present(
        get_services(request).drills,
        "Alarms unavailable",
        "this hub runs without the alarm engine",
    )


def get_alarm_changes(request: HTTPConnection) -> EventBus[AlarmChange]:
    """The bus of committed alarm changes."""
    return _present(
        get_services(request).alarm_changes,
        "Alarms unavailable",
        "this hub runs without the alarm engine",
    )


def get_dispatcher(request: HTTPConnection) -> Dispatcher | None:
    """The outbox dispatcher, if this hub delivers alarms."""
    return get_services(request).dispatcher


def get_live(request: HTTPConnection) -> LiveViews:
    """The WebRTC live view; 503 when the app was built without it."""
    return _present(
        get_services(request).live, "Live view unavailable", "this hub runs no live view"
    )


def get_patrol(request: HTTPConnection) -> PatrolService:
    """The camera patrol; 503 when the app was built without it."""
    return _present(
        get_services(request).patrol, "Patrol unavailable", "this hub runs no camera patrol"
    )


def get_onvif(request: HTTPConnection) -> OnvifService:
    """ONVIF probe, discovery and event channels; 503 when the app was built without it."""
    return _present(
        get_services(request).onvif, "ONVIF unavailable", "this hub runs no ONVIF service"
    )


def get_departments(request: HTTPConnection) -> DepartmentService:
    """Departments and their tasks; 503 when the app was built without them."""
    return _present(
        get_services(request).departments,
        "Department tasks unavailable",
        "this hub runs no department tasks",
    )


def get_evidence(request: HTTPConnection) -> EvidenceService:
    """Evidence buffers and clips; 503 when the app was built without them."""
    return _present(
        get_services(request).evidence, "Evidence unavailable", "this hub keeps no evidence clips"
    )


def get_cluster(request: HTTPConnection) -> Cluster:
    """This node's cluster membership; 503 when the app was built without it."""
    return _present(
        get_services(request).cluster, "Cluster unavailable", "this hub runs no cluster membership"
    )


def get_gb28181(request: HTTPConnection) -> Gb28181Service:
    """The GB/T 28181 platform service; 503 when the app was built without it."""
    return _present(
        get_services(request).gb28181,
        "GB/T 28181 unavailable",
        "this hub runs no GB/T 28181 service",
    )
