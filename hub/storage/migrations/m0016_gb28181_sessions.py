"""Schema 16: GB/T 28181 registrations and subscriptions kept where every node reads them.

A device may register through any hub node (one SIP address in front of them),
and a node started again must know who is registered. `gb28181_devices` gains:

- `contact`: the Contact URI the device registered with (transport, host and
  port were already there);
- `node_id`: the node that took the registration (it refreshes the device's
  subscriptions);
- `catalog_subscribed_until`, `alarm_subscribed_until`: when the catalog and
  alarm subscriptions run out, as the device granted them, so whichever node
  holds the device renews them in time.
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=16,
    name="gb28181_sessions",
    statements=[
        "ALTER TABLE gb28181_devices ADD COLUMN contact TEXT",
        "ALTER TABLE gb28181_devices ADD COLUMN node_id TEXT",
        "ALTER TABLE gb28181_devices ADD COLUMN catalog_subscribed_until {TS}",
        "ALTER TABLE gb28181_devices ADD COLUMN alarm_subscribed_until {TS}",
        "CREATE INDEX gb28181_devices_expires ON gb28181_devices (expires_at)",
    ],
)
