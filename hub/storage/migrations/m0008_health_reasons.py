"""Schema 8: a device's health reason as a code with parameters, beside the sentence.

`device_state.health_reason_code` (e.g. `vqd.blur`, `auth.credentials_rejected`,
`heartbeat.missed`) and `health_reason_params` (a JSON object) let a console say
the reason in its operator's language; `health_reason` keeps the hub's English
sentence for logs and integrations. History rows keep theirs in `evidence`
(`reason_code`, `reason_params`). Rows written before stay without a code.
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=8,
    name="health_reasons",
    statements=[
        "ALTER TABLE device_state ADD COLUMN health_reason_code TEXT",
        "ALTER TABLE device_state ADD COLUMN health_reason_params {JSON}",
    ],
)
