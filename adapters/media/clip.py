"""Cutting an evidence clip out of buffered packets (pure).

The press is a wall-clock time; the clip is cut on the stream's own clock
(its video timestamps, kept continuous by `Timeline`), so "30 s before" means
30 s of pictures even when the camera or the network runs late:

* the press is placed at the video packet that arrived last at or before it;
* the clip starts at the last video key frame at least `pre_s` of pictures
  before that (or the oldest key frame held, when the buffer is shorter);
* it ends at the first video packet `post_s` of pictures after the press.

`ClipCutter` does this incrementally, as packets arrive: the pre-roll can be
written as soon as the press is placed and the clip ends with the packet that
completes the post-roll, so nothing waits for a whole clip to be collected.
`cut_clip` is the same cut over a list of packets.

Each track's timestamps are moved so the clip starts at 0; a track that starts
later than the video (audio often does) keeps its distance, measured by arrival.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from adapters.media.ring import MediaPacket

__all__ = ["ClipCut", "ClipCutter", "Placed", "cut_clip", "press_position", "rebased"]

#: A packet with its pts and dts on the clip's own timeline (starting at 0).
Placed = tuple[MediaPacket, int, int | None]


@dataclass(frozen=True, slots=True)
class ClipCut:
    """The packets of one clip and where the press falls in it."""

    packets: tuple[MediaPacket, ...]
    start_received: float
    end_received: float
    press_offset_s: float  # seconds of pictures from the clip's first one to the press
    after_press_s: float  # seconds of pictures from the press to the clip's last one
    complete: bool  # the whole post-roll is in


def _seconds(packet: MediaPacket) -> float:
    tb = packet.time_base
    return packet.pts * tb.numerator / tb.denominator


def press_position(packets: Sequence[MediaPacket], press: float) -> float | None:
    """The video timestamp (s) of the press: that of the last video packet that arrived
    at or before it (the first one, if all came later); None without video."""
    found: float | None = None
    for packet in packets:
        if not packet.video:
            continue
        if packet.received <= press or found is None:
            found = _seconds(packet)
        if packet.received > press:
            break
    return found


class _Rebaser:
    """Moves each track's timestamps so the clip starts at 0 (see `rebased`)."""

    def __init__(self, start_received: float) -> None:
        self._start = start_received
        self._base: dict[int, int] = {}
        self._last: dict[int, int] = {}

    def place(self, packet: MediaPacket) -> Placed | None:
        track = packet.track
        base = self._base.get(track)
        if base is None:
            first = packet.dts if packet.dts is not None else packet.pts
            delay = Fraction(max(packet.received - self._start, 0.0)).limit_denominator(1000)
            shift = int(delay / packet.time_base) if packet.time_base else 0
            base = self._base[track] = first - shift
        pts = packet.pts - base
        dts = None if packet.dts is None else packet.dts - base
        if pts < 0 or (dts is not None and dts < 0):
            return None  # a reordered packet from before the clip's first key frame
        order = pts if dts is None else dts
        last = self._last.get(track)
        if last is not None and order <= last:
            return None  # a repeated or backward timestamp (a source re-sync): MP4 refuses it
        self._last[track] = order
        return packet, pts, dts


class ClipCutter:
    """Cuts one clip out of a camera's packets as they arrive.

    Feed it the buffer's packets (oldest first) and then each newer batch; every
    `feed` returns the clip's packets that are settled, rebased to the clip's
    timeline, ready to be written. Until a packet newer than the press has arrived
    nothing is settled (the press cannot be placed yet). `done` turns true with the
    packet that completes the post-roll, or when the clip reached `max_bytes`;
    `finish()` ends the clip with what there is (a stalled stream, a shutdown).
    """

    def __init__(
        self,
        press: float,
        pre_s: float,
        post_s: float,
        *,
        max_bytes: int | None = None,
        keep: bool = False,
    ) -> None:
        if pre_s < 0 or post_s < 0:
            raise ValueError("pre_s and post_s must not be negative")
        self.press = press
        self.pre_s = pre_s
        self.post_s = post_s
        self.max_bytes = max_bytes
        self._keep = keep
        self._pending: list[MediaPacket] = []
        self._rebaser: _Rebaser | None = None
        self.taken: list[MediaPacket] = []  # the clip's packets (only with keep=True)
        self.at: float | None = None  # video seconds of the press, once placed
        self.placed = False
        self.no_key_frame = False
        self.complete = False  # the whole post-roll is in
        self.truncated = False  # cut short at max_bytes
        self.bytes = 0
        self.packets = 0
        self.start_s = 0.0
        self.end_s = 0.0
        self.start_received = 0.0
        self.end_received = 0.0

    @property
    def done(self) -> bool:
        """Nothing more belongs to the clip."""
        return self.complete or self.truncated or self.no_key_frame

    @property
    def press_offset_s(self) -> float:
        """Seconds of pictures from the clip's first one to the press."""
        return (self.at or 0.0) - self.start_s

    @property
    def after_press_s(self) -> float:
        """Seconds of pictures from the press to the clip's last one."""
        return self.end_s - (self.at or 0.0)

    def feed(self, packets: Iterable[MediaPacket]) -> list[Placed]:
        """Take the next packets; the clip's packets settled by them."""
        out: list[Placed] = []
        for packet in packets:
            if self.done:
                break
            if not self.placed:
                self._pending.append(packet)
                if packet.received > self.press:
                    self._place(out)
                continue
            self._take(packet, out)
        return out

    def finish(self) -> list[Placed]:
        """End the clip now with what has arrived; its last settled packets."""
        out: list[Placed] = []
        if not self.placed and not self.done:
            self._place(out)
        return out

    def _place(self, out: list[Placed]) -> None:
        at = press_position(self._pending, self.press)
        if at is None:
            return  # no picture yet: wait for one
        first: int | None = None
        for index, packet in enumerate(self._pending):
            if packet.video and packet.keyframe:
                if first is None or _seconds(packet) <= at - self.pre_s:
                    first = index
                else:
                    break
        self.at = at
        self.placed = True
        pending, self._pending = self._pending, []
        if first is None:
            self.no_key_frame = True
            return
        self.start_s = _seconds(pending[first])
        self.start_received = pending[first].received
        self._rebaser = _Rebaser(self.start_received)
        for packet in pending[first:]:
            if self.done:
                break
            self._take(packet, out)

    def _take(self, packet: MediaPacket, out: list[Placed]) -> None:
        size = len(packet.data)
        if self.max_bytes is not None and self.bytes + size > self.max_bytes and self.packets:
            self.truncated = True
            return
        self.bytes += size
        self.packets += 1
        self.end_received = packet.received
        if self._keep:
            self.taken.append(packet)
        if packet.video:
            seconds = _seconds(packet)
            self.end_s = max(self.end_s, seconds)
            if self.at is not None and seconds >= self.at + self.post_s:
                self.complete = True
        placed = self._rebaser.place(packet) if self._rebaser is not None else None
        if placed is not None:
            out.append(placed)


def cut_clip(
    packets: Sequence[MediaPacket], press: float, pre_s: float, post_s: float
) -> ClipCut | None:
    """The clip around `press` (epoch seconds), or None without a video key frame."""
    cutter = ClipCutter(press, pre_s, post_s, keep=True)
    cutter.feed(packets)
    cutter.finish()
    if not cutter.taken:
        return None
    return ClipCut(
        packets=tuple(cutter.taken),
        start_received=cutter.start_received,
        end_received=cutter.end_received,
        press_offset_s=cutter.press_offset_s,
        after_press_s=cutter.after_press_s,
        complete=cutter.complete,
    )


def rebased(cut: ClipCut) -> list[Placed]:
    """Each packet with its pts and dts moved so the clip starts at 0 (per track);
    packets whose decoding time does not move forward within their track are left out."""
    if not cut.packets:
        return []
    rebaser = _Rebaser(cut.packets[0].received)
    return [placed for packet in cut.packets if (placed := rebaser.place(packet)) is not None]
