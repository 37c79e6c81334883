"""This hub node's identity: a name that stays the same across restarts.

Outbox claims (and later other leases) carry it, so a node started again after
a crash recognises what it held and takes it back at once instead of waiting
for the leases to run out. Configured as `node_id`, or made once and kept in
`data_dir/node_id`. Two running nodes must never share one.
"""

from __future__ import annotations

import logging
import re
import socket
import uuid
from pathlib import Path

__all__ = ["NODE_ID_PATTERN", "node_identity"]

log = logging.getLogger(__name__)

NODE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_FILE = "node_id"


def _new_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:40] or "hub"
    return f"{host}-{uuid.uuid4().hex[:8]}"


def node_identity(configured: str | None, data_dir: Path) -> str:
    """The configured node id, else the one kept in `data_dir` (made on first use)."""
    if configured:
        return configured
    path = data_dir / _FILE
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        kept = ""
    if re.fullmatch(NODE_ID_PATTERN, kept):
        return kept
    if kept:
        log.warning("%s does not hold a valid node id; making a new one", path)
    made = _new_id()
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(made + "\n", encoding="utf-8")
    temporary.replace(path)
    log.info("this hub node is %s (kept in %s)", made, path)
    return made
