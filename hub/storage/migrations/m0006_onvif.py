"""Schema 6: ONVIF probe results and WS-Discovery candidates.

- onvif_probes: one row per probe of a camera (who asked, when, whether it
  worked, the failure class, and the result: identity, services, profiles,
  clock offset, warnings). URIs in it are pinned and credential-free; the
  latest row per device is what the API and CLI show.
- discovery_candidates: devices that answered a WS-Discovery probe, keyed by
  their stable endpoint reference, with the device id they were onboarded as.
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=6,
    name="onvif",
    statements=[
        """CREATE TABLE onvif_probes (
            id {ID},
            device_id TEXT NOT NULL,
            probed_at {TS} NOT NULL,
            requested_by TEXT NOT NULL,
            ok {BOOL} NOT NULL,
            failure TEXT,
            error TEXT,
            result {JSON} NOT NULL DEFAULT '{{}}'
        )""",
        "CREATE INDEX onvif_probes_device_time ON onvif_probes (device_id, probed_at DESC)",
        """CREATE TABLE discovery_candidates (
            endpoint TEXT PRIMARY KEY,
            xaddrs {JSON} NOT NULL DEFAULT '[]',
            scopes {JSON} NOT NULL DEFAULT '[]',
            responder TEXT,
            interface TEXT,
            first_seen_at {TS} NOT NULL,
            seen_at {TS} NOT NULL,
            device_id TEXT
        )""",
        "CREATE INDEX discovery_candidates_seen ON discovery_candidates (seen_at)",
    ],
)
