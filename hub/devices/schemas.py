"""Request and response bodies of the device registry and jurisdiction endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from camera_registry.jurisdiction import JurisdictionLevel, JurisdictionNode
from camera_registry.models import Device, DeviceIn
from hub.devices.storage import StoredDevice, SubtreeCounts

__all__ = [
    "BulkIn",
    "BulkOut",
    "DeviceOut",
    "DevicePageOut",
    "DeviceWrite",
    "ImportErrorOut",
    "ImportOut",
    "JurisdictionOut",
    "JurisdictionTreeOut",
    "NearbyCameraOut",
    "NearbyOut",
    "NextIdOut",
    "SubtreeCountsOut",
    "device_out",
]

SortField = Literal["id", "name", "kind", "project", "jurisdiction", "updated_at", "health"]


class DeviceWrite(DeviceIn):
    """A device as written; `credentials` are write-only, `clear_credentials` removes them."""

    clear_credentials: bool = Field(
        default=False, description="remove stored credentials (ignored on create)"
    )

    def fields(self) -> DeviceIn:
        """The device without the write options."""
        data = self.model_dump(exclude={"clear_credentials"})
        return DeviceIn.model_validate({**data, "credentials": self.credentials})


class DeviceOut(Device):
    """A device as read: never credentials, only `has_credentials`."""

    snapshot_url: str | None = None
    jurisdiction_path: str | None = Field(
        default=None, description="materialized path of the device's jurisdiction node"
    )


def device_out(stored: StoredDevice) -> DeviceOut:
    """The response body of one stored device."""
    data = dict(stored.device)
    return DeviceOut.model_construct(
        **data, snapshot_url=stored.snapshot_url, jurisdiction_path=stored.jurisdiction_path
    )


class DevicePageOut(BaseModel):
    """One page of a device listing."""

    items: list[DeviceOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")


class BulkIn(BaseModel):
    """Devices to create or update by id, all or nothing."""

    model_config = ConfigDict(extra="forbid")

    devices: list[DeviceWrite] = Field(min_length=1, max_length=5000)
    dry_run: bool = False


class BulkOut(BaseModel):
    """What a bulk upsert did (or would do)."""

    created: int
    updated: int
    unchanged: int
    dry_run: bool


class ImportErrorOut(BaseModel):
    """One bad cell or row of an imported sheet (the header is row 1)."""

    row: int
    column: str | None
    value: str | None
    reason: str


class ImportOut(BaseModel):
    """The result of an import or a dry run."""

    dry_run: bool
    written: bool
    format: str
    encoding: str | None
    rows: int
    created: int
    updated: int
    unchanged: int
    errors: list[ImportErrorOut]


class NearbyCameraOut(BaseModel):
    """A camera near a device."""

    id: str
    name: str
    distance_m: float


class NearbyOut(BaseModel):
    """Linked cameras of a device, and the nearest cameras within the radius."""

    linked_cameras: list[str]
    radius_m: float
    nearby: list[NearbyCameraOut]


class NextIdOut(BaseModel):
    """The lowest free GB/T 28181 id for a jurisdiction and type."""

    id: str


class JurisdictionOut(JurisdictionNode):
    """A jurisdiction node with its materialized path."""

    path: str


class JurisdictionTreeOut(BaseModel):
    """A node and its children."""

    code: str
    name: str
    level: JurisdictionLevel
    parent_code: str | None
    path: str
    children: list[JurisdictionTreeOut] = Field(default_factory=list)


class SubtreeCountsOut(BaseModel):
    """Device counts under a node."""

    path: str | None
    total: int
    by_kind: dict[str, int]
    by_health: dict[str, int]
    by_child: dict[str, int]

    @classmethod
    def of(cls, path: str | None, counts: SubtreeCounts) -> SubtreeCountsOut:
        """Build from the repository's counts."""
        return cls(
            path=path,
            total=counts.total,
            by_kind=counts.by_kind,
            by_health=counts.by_health,
            by_child=counts.by_child,
        )
