"""Reading the per-language texts an alarm was opened with (title and SOP).

The rules render them when the alarm opens and keep them in the opening history
entry's details (`texts`: language -> {title, sop}); no alarm row changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from hub.storage.base import SqlStore, Tx, from_json

__all__ = ["AlarmTexts", "opening_texts", "opening_texts_in"]

#: language -> {"title": ..., "sop": ...}
AlarmTexts = Mapping[str, Mapping[str, str]]
_CHUNK = 400


async def opening_texts(
    store: SqlStore, alarm_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, AlarmTexts]:
    """The texts of each alarm that has them (older alarms and custom rules may not)."""
    found: dict[uuid.UUID, AlarmTexts] = {}
    ids = [str(alarm_id) for alarm_id in dict.fromkeys(alarm_ids)]
    async with store.reading() as tx:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join("%s" for _ in chunk)
            rows = await tx.fetchall(
                "SELECT alarm_id, details FROM alarm_history"  # noqa: S608 - placeholders only
                f" WHERE action = 'open' AND alarm_id IN ({marks})",
                chunk,
            )
            for alarm_id, details in rows:
                texts = (from_json(details) or {}).get("texts")
                if isinstance(texts, dict):
                    found[uuid.UUID(str(alarm_id))] = {
                        str(language): {str(k): str(v) for k, v in text.items()}
                        for language, text in texts.items()
                        if isinstance(text, dict)
                    }
    return found


async def opening_texts_in(tx: Tx, alarm_id: uuid.UUID) -> AlarmTexts:
    """The texts of one alarm, read in `tx` (empty when it has none)."""
    row = await tx.fetchone(
        "SELECT details FROM alarm_history WHERE action = 'open' AND alarm_id = %s",
        (str(alarm_id),),
    )
    texts = (from_json(row[0]) or {}).get("texts") if row is not None else None
    if not isinstance(texts, dict):
        return {}
    return {
        str(language): {str(k): str(v) for k, v in text.items()}
        for language, text in texts.items()
        if isinstance(text, dict)
    }
