"""Device registry storage, the one owner of the `devices` table: devices, their
jurisdiction tree, listing and counts.

Modules: `rows` (row types and shared SQL fragments), `listing` (reads),
`writes` (inserts, updates, deletes, counts) and `jurisdictions` (the tree).

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
    "SORT_KEYS",
    "CursorError",
    "DeviceFilter",
    "DevicePage",
    "DeviceRow",
    "DeviceSort",
    "KindRow",
    "StoredDevice",
    "SubtreeCounts",
    "all_jurisdictions",
    "audit_device_changes",
    "cached_rows",
    "compact_counts",
    "compare_values",
    "count_deltas",
    "count_subtree",
    "credential_blobs",
    "delete_device",
    "device_credentials",
    "device_exists",
    "devices_of_kinds",
    "existing_for_compare",
    "gb_ids_with_prefix",
    "get_device",
    "get_jurisdiction",
    "insert_devices",
    "jurisdiction_children",
    "jurisdiction_paths",
    "jurisdictions_at_paths",
    "kinds_fingerprint",
    "list_devices",
    "list_jurisdictions",
    "located_cameras",
    "move_subtree",
    "refresh_statistics",
    "taken_mqtt_ids",
    "update_credentials",
    "update_devices",
    "upsert_jurisdiction_rows",
]
