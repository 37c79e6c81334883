"""Liveness, readiness and metrics for orchestrators and Prometheus."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from hub import __version__
from hub.api.deps import get_metrics, get_mqtt, get_store, get_writer
from hub.api.problems import Problem
from hub.auth.guards import metrics_access
from hub.metrics import Metrics
from hub.mqtt.service import MqttService
from hub.storage import SqlStore, StorageError
from hub.writer import EventWriter

__all__ = ["router"]

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    """The process answers."""

    status: str
    version: str


class MqttReadiness(BaseModel):
    """The MQTT broker connection (reported; it does not decide readiness)."""

    enabled: bool
    connected: bool
    state: str
    since: datetime | None = None
    reason: str | None = None
    devices: int = 0


class Readiness(BaseModel):
    """Storage answers and the writer keeps up."""

    status: str
    storage: str
    schema_version: int
    writer_pending: int
    mqtt: MqttReadiness | None = None


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    """200 while the process runs."""
    return Liveness(status="ok", version=__version__)


@router.get("/readyz", response_model=Readiness, responses={503: {"description": "not ready"}})
async def readyz(
    store: Annotated[SqlStore, Depends(get_store)],
    writer: Annotated[EventWriter, Depends(get_writer)],
    mqtt: Annotated[MqttService | None, Depends(get_mqtt)],
) -> Readiness:
    """200 when storage is reachable; 503 with the reason otherwise."""
    try:
        await store.ping()
        version = await store.schema_version()
    except StorageError as exc:
        raise Problem(503, "Storage unreachable", str(exc)) from exc
    return Readiness(
        status="ready",
        storage=store.backend,
        schema_version=version,
        writer_pending=writer.pending,
        # A broker outage is shown, not made a readiness failure: the console and API still
        # serve, and gridwatch_mqtt_connected is the signal to alert on.
        mqtt=MqttReadiness(**asdict(mqtt.status())) if mqtt is not None else None,
    )


@router.get(
    "/metrics",
    response_class=Response,
    # Loopback scrapers without login; others need an admin/maintenance login or key.
    dependencies=[Depends(metrics_access)],
)
async def metrics(metrics: Annotated[Metrics, Depends(get_metrics)]) -> Response:
    """Prometheus text exposition."""
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
