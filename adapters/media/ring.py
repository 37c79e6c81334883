"""The pre-alarm packet ring (pure): a camera's stream as received, no decoding.

Packets of every track (video and, when the camera has it, audio) are kept in
arrival order with their own timestamps and the wall-clock second the hub
received them. The ring always starts at a video key frame, keeps at least
`keep_s` seconds of pictures (counted on the video's own timestamps, so a camera
that runs slow still leaves a full pre-roll) behind the newest picture (whole
groups of pictures are dropped from the front, never a part of one), and never
holds more than `max_bytes`:
past that, the oldest group of pictures goes even if it is younger than
`keep_s` (counted in `overflow_drops`). The source may be an RTSP pull, a
GB/T 28181 channel or anything else that produces `MediaPacket`s.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

__all__ = ["MediaPacket", "PacketRing", "RingStats", "StreamHeader", "Timeline"]


class MediaPacket(NamedTuple):
    """One compressed packet of one track, as the camera sent it.

    A named tuple rather than a frozen dataclass: a pull makes one per packet
    (seventy cameras at 25 fps are 1,750 a second), and a tuple is made in a
    third of the time.
    """

    track: int
    pts: int
    dts: int | None
    duration: int
    time_base: Fraction
    keyframe: bool
    data: bytes
    received: float  # seconds since the epoch (UTC) when the hub received it
    video: bool = True


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """What a remuxer needs to write a stream's tracks: a template container and each
    track's codec extradata as the source delivered it."""

    template: bytes  # a small container (NUT) holding the tracks' parameters
    template_format: str
    extradata: tuple[bytes | None, ...]
    kinds: tuple[str, ...]  # "video" / "audio" per track
    codecs: tuple[str, ...]


class Timeline:
    """Keeps each track's timestamps moving forward across source discontinuities.

    A source's clock can jump: an RTSP server that serves one encoder to several
    clients may restart its timestamps when another client joins, a camera
    resets its clock. A jump backwards, or forwards by more than `max_gap_s`
    beyond the time that passed on arrival, is re-anchored so the track goes on
    from where it was by the time that really passed (at least one packet's
    duration). Without this a clip would stop (or stall) at the jump.
    """

    def __init__(self, max_gap_s: float = 2.0) -> None:
        self.max_gap_s = max_gap_s
        self._offset: dict[int, int] = {}
        self._last: dict[int, tuple[int, int, float]] = {}  # track -> (dts, duration, received)
        self.jumps = 0

    def place(self, packet: MediaPacket) -> MediaPacket:
        """`packet` with its timestamps on the track's continuous timeline."""
        offset = self.offset(
            packet.track, packet.pts, packet.dts, packet.duration, packet.time_base, packet.received
        )
        if offset == 0:
            return packet
        return MediaPacket(
            packet.track,
            packet.pts + offset,
            None if packet.dts is None else packet.dts + offset,
            packet.duration,
            packet.time_base,
            packet.keyframe,
            packet.data,
            packet.received,
            packet.video,
        )

    def offset(
        self,
        track: int,
        pts: int,
        dts: int | None,
        duration: int,
        time_base: Fraction,
        received: float,
    ) -> int:
        """What to add to a packet's pts and dts to put it on the continuous timeline
        (`place` without making a packet: a pull calls this before it makes one)."""
        offset = self._offset.get(track, 0)
        order = (dts if dts is not None else pts) + offset
        last = self._last.get(track)
        if last is not None:
            last_dts, last_duration, last_received = last
            # Plain float arithmetic: Fraction operators cost microseconds per packet.
            ticks_per_s = time_base.denominator / time_base.numerator if time_base else 0.0
            elapsed = max(received - last_received, 0.0)
            ceiling = (
                last_dts + int((elapsed + self.max_gap_s) * ticks_per_s) if time_base else order
            )
            if order <= last_dts or order > ceiling:
                step = max(int(elapsed * ticks_per_s), last_duration, 1)
                offset += last_dts + step - order
                order = last_dts + step
                self._offset[track] = offset
                self.jumps += 1
        self._last[track] = (order, duration, received)
        return offset


@dataclass(frozen=True, slots=True)
class RingStats:
    """The ring's depth and size at one moment."""

    packets: int
    bytes: int  # held in memory
    span_s: float
    overflow_drops: int
    spilled_bytes: int = 0  # held on disk (a spilling ring)


class PacketRing:
    """Bounded rolling buffer of `MediaPacket`s starting at a video key frame.

    Thread-safe: a demuxing thread pushes while the event loop cuts clips.
    Every packet has a sequence number (`seq`), so a clip can collect what
    arrives after its first cut with `after(seq)`.
    """

    def __init__(self, keep_s: float, max_bytes: int) -> None:
        if keep_s <= 0:
            raise ValueError("keep_s must be positive")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.keep_s = keep_s
        self.max_bytes = max_bytes
        self.header: StreamHeader | None = None
        self._packets: deque[MediaPacket] = deque()
        self._first_seq = 0  # seq of _packets[0]
        self._next_seq = 0
        # (seq, received, video seconds) of each video key frame held
        self._keys: deque[tuple[int, float, float]] = deque()
        self._newest_video_s = 0.0
        self._bytes = 0
        self._overflow_drops = 0
        self._holds = 0  # while above 0, nothing older than keep_s is dropped
        self._lock = threading.Lock()

    # -- feeding ----------------------------------------------------------------

    def reset(self, header: StreamHeader | None) -> None:
        """Forget every packet (the source reconnected: timestamps start over)."""
        with self._lock:
            self.header = header
            self._packets.clear()
            self._keys.clear()
            # Skip a number, so a reader continuing from before learns it missed the reset.
            self._next_seq += 1
            self._first_seq = self._next_seq
            self._bytes = 0
            self._cleared()

    def push(self, packet: MediaPacket) -> None:
        """Append one packet; packets before the first video key frame are dropped."""
        with self._lock:
            if not self._packets and not (packet.video and packet.keyframe):
                return
            seq = self._next_seq
            if not self._packets:
                self._first_seq = seq
            self._next_seq += 1
            self._packets.append(packet)
            self._bytes += len(packet.data)
            if packet.video:
                tb = packet.time_base
                self._newest_video_s = packet.pts * tb.numerator / tb.denominator
                if packet.keyframe:
                    if self._keys:
                        self._group_closed(self._keys[-1][0], seq)
                    self._keys.append((seq, packet.received, self._newest_video_s))
            self._trim(self._newest_video_s)

    def hold(self) -> None:
        """Keep every picture held now until `release` (the memory bound still applies):
        an alarm's pre-roll must not age out while its clip is being set up."""
        with self._lock:
            self._holds += 1

    def release(self) -> None:
        """End one `hold`."""
        with self._lock:
            self._holds = max(self._holds - 1, 0)

    def _trim(self, newest: float) -> None:
        # Drop the oldest group while the next one alone still reaches back keep_s.
        while not self._holds and len(self._keys) >= 2 and self._keys[1][2] <= newest - self.keep_s:
            self._drop_group()
        while self._bytes > self.max_bytes and len(self._keys) >= 2:
            self._drop_group()
            self._overflow_drops += 1

    def _drop_group(self) -> None:
        first = self._keys.popleft()[0]
        until = self._keys[0][0]
        while self._first_seq < until:
            dropped = self._packets.popleft()
            self._bytes -= len(dropped.data)
            self._first_seq += 1
        self._group_dropped(first)

    # -- hooks (called under the lock) for a ring that keeps groups elsewhere ------

    def _group_closed(self, first_seq: int, end_seq: int) -> None:
        """The group of pictures numbered [first_seq, end_seq) is complete; it is the
        newest in the ring (its last packet is the ring's last)."""

    def _group_dropped(self, first_seq: int) -> None:
        """The group starting at `first_seq` left the ring."""

    def _cleared(self) -> None:
        """Every packet left the ring (`reset`)."""

    def _loaded(self, packets: list[MediaPacket], first_seq: int) -> list[MediaPacket]:
        """`packets` (numbered from `first_seq`) as a reader gets them."""
        return packets

    # -- reading ----------------------------------------------------------------

    def stats(self) -> RingStats:
        """Packets, bytes and seconds held now."""
        with self._lock:
            span = self._packets[-1].received - self._packets[0].received if self._packets else 0.0
            return RingStats(len(self._packets), self._bytes, span, self._overflow_drops)

    @property
    def newest_received(self) -> float | None:
        """When the newest packet arrived (None while empty)."""
        with self._lock:
            return self._packets[-1].received if self._packets else None

    def window(self, since: float) -> tuple[list[MediaPacket], int]:
        """Packets from the last key frame received at or before `since` (else the oldest
        one held) to the newest; with the seq to continue from (`after`)."""
        with self._lock:
            start = self._first_seq
            for seq, received, _ in self._keys:
                if received <= since:
                    start = seq
                else:
                    break
            offset = start - self._first_seq
            packets = list(itertools.islice(self._packets, offset, None))
            return self._loaded(packets, start), self._next_seq

    def after(self, seq: int) -> tuple[list[MediaPacket], int, bool]:
        """Packets numbered `seq` and later, the next seq, and False when some of
        them already left the ring (the caller fell behind or the source restarted)."""
        with self._lock:
            complete = seq >= self._first_seq
            offset = max(seq - self._first_seq, 0)
            packets = list(itertools.islice(self._packets, offset, None))
            return self._loaded(packets, self._first_seq + offset), self._next_seq, complete
