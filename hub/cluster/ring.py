"""Which live node owns a device: rendezvous (highest random weight) hashing, pure.

Every node computes the same owner from the same set of live nodes, with no
row per device: the heartbeat table is the only shared state. When a node
leaves, only its devices move (each to the node that scores next highest for
it); when one joins, only the devices it now scores highest for move to it.

`Handover` adds the rule that keeps a device from being worked by two nodes
when a node joins: the joiner takes a device from a live owner only once
`handover_s` has passed since it saw the new membership (the old owner lets go
at its next heartbeat), while a dead owner's devices are taken at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["Handover", "owner", "score"]


def score(node_id: str, key: str) -> int:
    """The weight of `node_id` for `key` (stable across processes and versions)."""
    digest = hashlib.blake2b(f"{node_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, nodes: Iterable[str]) -> str | None:
    """The node among `nodes` that owns `key`, or None when there are none."""
    best: tuple[int, str] | None = None
    for node in nodes:
        candidate = (score(node, key), node)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]


@dataclass
class Handover:
    """This node's ownership across membership changes (see the module docstring)."""

    me: str
    handover: timedelta
    #: The live nodes as last seen (this node included while it is healthy).
    live: frozenset[str] = frozenset()
    #: The membership ownership settled on; devices that move from it to this node
    #: while its owner lives wait until `settles_at`.
    settled: frozenset[str] = frozenset()
    settles_at: datetime | None = None
    _cache: dict[str, bool] = field(default_factory=dict, repr=False)

    def see(self, live: Iterable[str], now: datetime) -> bool:
        """Take a new view of the live nodes; True when this node's set may have changed."""
        seen = frozenset(live)
        due = self.settles_at is not None and now >= self.settles_at
        if seen == self.live and not due:
            return False
        rejoined = self.me in seen and self.me not in self.live
        self.live = seen
        self._cache.clear()
        if rejoined and self.handover > timedelta(0):
            # Start-up (or back after losing the database): what the other live
            # nodes hold stays theirs until they have seen this node and let go.
            others = seen - {self.me}
            self.settled = others or seen
            self.settles_at = now + self.handover if others else None
        elif due or self.settles_at is None:
            self.settled, self.settles_at = seen, None
        return True

    def is_mine(self, key: str) -> bool:
        """True when this node should work on `key` now."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        mine = False
        if self.me in self.live and owner(key, self.live) == self.me:
            before = owner(key, self.settled)
            # Taken at once when it was ours, or its owner is gone; else after handover.
            mine = before is None or before == self.me or before not in self.live
        if len(self._cache) < 1_000_000:
            self._cache[key] = mine
        return mine

    @property
    def waiting(self) -> bool:
        """True while devices that move to this node wait for their old owners."""
        return self.settles_at is not None
