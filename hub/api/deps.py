"""The services a route may depend on, as `Depends()` providers tests can override."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from camera_registry.events import DeviceEvent
from hub.bus import EventBus
from hub.config import Settings
from hub.metrics import Metrics
from hub.storage import SqlStore
from hub.writer import EventWriter

__all__ = ["Services", "get_metrics", "get_services", "get_settings", "get_store", "get_writer"]


@dataclass(frozen=True)
class Services:
    """Everything the HTTP layer uses, built once by the hub."""

    settings: Settings
    store: SqlStore
    writer: EventWriter
    events: EventBus[DeviceEvent]
    metrics: Metrics


def get_services(request: Request) -> Services:
    """The hub's services."""
    services: Services = request.app.state.services
    return services


def get_settings(request: Request) -> Settings:
    """The hub's settings."""
    return get_services(request).settings


def get_store(request: Request) -> SqlStore:
    """The storage backend."""
    return get_services(request).store


def get_writer(request: Request) -> EventWriter:
    """The event writer."""
    return get_services(request).writer


def get_metrics(request: Request) -> Metrics:
    """The hub's metrics."""
    return get_services(request).metrics
