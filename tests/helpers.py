"""Small builders for test data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from camera_registry.events import DeviceEvent, Severity

BASE_TIME = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def make_event(
    n: int = 0,
    *,
    device_id: str = "cam-001",
    kind: str = "onvif.motion",
    key: str | None = None,
    at: datetime | None = None,
    severity: Severity = Severity.INFO,
    source: str = "test",
    payload: dict[str, Any] | None = None,
) -> DeviceEvent:
    """The n-th test event, one second apart from BASE_TIME unless `at` is given."""
    return DeviceEvent(
        time=at or BASE_TIME + timedelta(seconds=n),
        device_id=device_id,
        kind=kind,
        severity=severity,
        source=source,
        payload=payload if payload is not None else {"n": n},
        dedup_key=key,
    )


def act_as(
    app: Any, role: str = "admin", scope: tuple[str, ...] = ("/",), subject: str = "tester"
) -> Any:
    """Make every request to `app` come from this principal (overrides authentication)."""
    from hub.auth.guards import Principal, Role, current_principal

    principal = Principal(subject=subject, role=Role(role), scope_paths=scope)

    async def fixed() -> Principal:
        return principal

    app.dependency_overrides[current_principal] = fixed
    return principal
