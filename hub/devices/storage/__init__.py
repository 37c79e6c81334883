"""Device registry storage, the one owner of the `devices` table: devices, their
jurisdiction tree, listing and counts, and the projections other features read.

No other module names the `devices` table in SQL (tests/unit/test_architecture.py
checks it). The registry reads and writes the one record (`StoredDevice`, written as
`DeviceRow`); every other feature reads a small typed view of it through a named
projection here, inside its own transaction where it has one.

Modules: `rows` (row types and shared SQL fragments), `listing` (reads),
`writes` (inserts, updates, deletes, counts), `jurisdictions` (the tree), and the
projections: `protocol_views` (ONVIF targets and the fields a probe updates,
broadcast units), `media_views` (live view sources, alarm points' camera links,
patrol targets), `alarm_views` (the facts the alarm engine reads per batch) and
`health_views` (current health, counts by state, the join health queries
restrict their tables by).

Every read takes the caller's scope (materialized jurisdiction paths; see
`scope_condition`): a device outside it is simply not there. Credentials are
stored as the ciphertext the service hands in and are never selected by the
listing queries (only ``credentials IS NOT NULL``).

Listing pages with a keyset cursor over (sort key, id), compared as a row value
so that the (sort key, id) index range starts at the cursor: one indexed query
per page however deep, no OFFSET, no per-row follow-up queries.

Counts come from `device_counts`, the deltas kept by triggers (see migration 2),
folded by `compact_counts`.
"""

from __future__ import annotations

from hub.devices.storage.alarm_views import (
    AlarmDevice,
    alarm_devices,
    alarm_devices_from,
    alarm_devices_statement,
    device_columns,
)
from hub.devices.storage.health_views import (
    DeviceHealthRow,
    DeviceJoin,
    device_health,
    device_paths,
    devices_join,
    health_counts,
)
from hub.devices.storage.jurisdictions import (
    all_jurisdictions,
    get_jurisdiction,
    jurisdiction_children,
    jurisdiction_paths,
    jurisdictions_at_paths,
    list_jurisdictions,
    move_subtree,
    upsert_jurisdiction_rows,
)
from hub.devices.storage.listing import (
    KindRow,
    cached_rows,
    count_subtree,
    credential_blobs,
    device_credentials,
    device_exists,
    devices_of_kinds,
    existing_for_compare,
    gb_ids_with_prefix,
    get_device,
    kinds_fingerprint,
    list_devices,
    located_cameras,
    taken_mqtt_ids,
)
from hub.devices.storage.media_views import (
    AlarmPoint,
    AlarmPointLinks,
    CameraSource,
    CameraStreams,
    PatrolTarget,
    alarm_point_links,
    camera_source,
    patrol_targets,
)
from hub.devices.storage.protocol_views import (
    PROBED_FIELDS,
    BroadcastUnit,
    OnvifTarget,
    apply_probed_fields,
    broadcast_units,
    onvif_addresses,
    onvif_event_targets,
    onvif_fingerprint,
    onvif_target,
    onvif_target_in,
)
from hub.devices.storage.rows import (
    SORT_KEYS,
    CursorError,
    DeviceFilter,
    DevicePage,
    DeviceRow,
    DeviceSort,
    StoredDevice,
    SubtreeCounts,
    compare_values,
)
from hub.devices.storage.writes import (
    audit_device_changes,
    compact_counts,
    count_deltas,
    delete_device,
    insert_devices,
    refresh_statistics,
    update_credentials,
    update_devices,
)

__all__ = [
    "PROBED_FIELDS",
    "SORT_KEYS",
    "AlarmDevice",
    "AlarmPoint",
    "AlarmPointLinks",
    "BroadcastUnit",
    "CameraSource",
    "CameraStreams",
    "CursorError",
    "DeviceFilter",
    "DeviceHealthRow",
    "DeviceJoin",
    "DevicePage",
    "DeviceRow",
    "DeviceSort",
    "KindRow",
    "OnvifTarget",
    "PatrolTarget",
    "StoredDevice",
    "SubtreeCounts",
    "alarm_devices",
    "alarm_devices_from",
    "alarm_devices_statement",
    "alarm_point_links",
    "all_jurisdictions",
    "apply_probed_fields",
    "audit_device_changes",
    "broadcast_units",
    "cached_rows",
    "camera_source",
    "compact_counts",
    "compare_values",
    "count_deltas",
    "count_subtree",
    "credential_blobs",
    "delete_device",
    "device_columns",
    "device_credentials",
    "device_exists",
    "device_health",
    "device_paths",
    "devices_join",
    "devices_of_kinds",
    "existing_for_compare",
    "gb_ids_with_prefix",
    "get_device",
    "get_jurisdiction",
    "health_counts",
    "insert_devices",
    "jurisdiction_children",
    "jurisdiction_paths",
    "jurisdictions_at_paths",
    "kinds_fingerprint",
    "list_devices",
    "list_jurisdictions",
    "located_cameras",
    "move_subtree",
    "onvif_addresses",
    "onvif_event_targets",
    "onvif_fingerprint",
    "onvif_target",
    "onvif_target_in",
    "patrol_targets",
    "refresh_statistics",
    "taken_mqtt_ids",
    "update_credentials",
    "update_devices",
    "upsert_jurisdiction_rows",
]
