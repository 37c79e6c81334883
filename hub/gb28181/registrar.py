"""Registrar helpers with no I/O: nonces, per-source failure budget, Expires, answer cache.

- `NonceKeeper` issues stateless nonces (time + HMAC), so a REGISTER flood does
  not grow memory, and refuses nonces older than `max_age`.
- `FailureBudget` counts wrong-password REGISTERs per source address over a
  sliding minute; a source over budget is ignored until its failures age out.
- `AnswerCache` remembers the answer to each recent request (by Call-ID, CSeq
  and method) so a device's UDP retransmission gets the same answer instead of
  a second alarm or registration.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from datetime import datetime

from adapters.gb28181.sip import SipRequest, parse_name_addr

__all__ = ["AnswerCache", "FailureBudget", "NonceKeeper", "requested_expires"]


class NonceKeeper:
    """Nonces that prove their own age (no table of issued nonces to fill)."""

    def __init__(self, *, max_age_s: float = 300.0) -> None:
        self._key = secrets.token_bytes(32)
        self._max_age = max_age_s

    def issue(self, now: datetime) -> str:
        """A fresh nonce for a 401 challenge."""
        stamp = f"{int(now.timestamp()):x}"
        mac = hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{stamp}{mac}"

    def valid(self, nonce: str, now: datetime) -> bool:
        """True if this keeper issued `nonce` less than `max_age` ago."""
        if len(nonce) < 25 or len(nonce) > 40:
            return False
        stamp, mac = nonce[:-24], nonce[-24:]
        expected = hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        if not hmac.compare_digest(mac, expected):
            return False
        try:
            issued = int(stamp, 16)
        except ValueError:
            return False
        return 0 <= now.timestamp() - issued <= self._max_age


class FailureBudget:
    """Wrong-password attempts per source address within a sliding window."""

    def __init__(self, per_window: int, *, window_s: float = 60.0, max_sources: int = 65_536):
        self._limit = per_window
        self._window = window_s
        self._max_sources = max_sources
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, source: str, now: float) -> deque[float] | None:
        times = self._failures.get(source)
        if times is None:
            return None
        while times and now - times[0] > self._window:
            times.popleft()
        if not times:
            del self._failures[source]
            return None
        return times

    def exhausted(self, source: str, now: float) -> bool:
        """True when `source` has used up its failures for now."""
        times = self._recent(source, now)
        return times is not None and len(times) >= self._limit

    def fail(self, source: str, now: float) -> None:
        """Count one failure of `source`."""
        times = self._recent(source, now)
        if times is None:
            if len(self._failures) >= self._max_sources:
                self._failures.popitem(last=False)
            times = self._failures[source] = deque(maxlen=self._limit + 1)
        times.append(now)
        self._failures.move_to_end(source)

    def forgive(self, source: str) -> None:
        """A source that authenticated starts afresh."""
        self._failures.pop(source, None)


def requested_expires(request: SipRequest, default: int) -> int | None:
    """The registration lifetime a REGISTER asks for (Contact `expires`, then Expires).

    None when the value is not a number.
    """
    contact = request.header("contact")
    if contact and contact.strip() != "*":
        try:
            value = parse_name_addr(contact).params.get("expires")
        except ValueError:
            value = None
        if value is not None:
            return int(value) if value.isdigit() else None
    header = request.header("expires")
    if header is None:
        return default
    header = header.strip()
    return int(header) if header.isdigit() and len(header) <= 9 else None


class AnswerCache:
    """The answers to recent requests, for retransmissions (bounded, oldest dropped)."""

    def __init__(self, capacity: int = 8192) -> None:
        self._answers: OrderedDict[tuple[str, str, str, str], bytes | None] = OrderedDict()
        self._capacity = capacity

    @staticmethod
    def key(request: SipRequest, source: str) -> tuple[str, str, str, str]:
        """What identifies a request and its retransmissions."""
        return (source, request.call_id, request.header("cseq") or "", request.method)

    def seen(self, key: tuple[str, str, str, str]) -> tuple[bool, bytes | None]:
        """(True, answer or None while still working) if this request was seen before."""
        if key in self._answers:
            return True, self._answers[key]
        return False, None

    def start(self, key: tuple[str, str, str, str]) -> None:
        """Mark a request as being worked on."""
        self._answers[key] = None
        if len(self._answers) > self._capacity:
            self._answers.popitem(last=False)

    def answer(self, key: tuple[str, str, str, str], data: bytes) -> None:
        """Remember the answer sent."""
        if key in self._answers:
            self._answers[key] = data
