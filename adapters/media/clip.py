"""Cutting an evidence clip out of buffered packets (pure).

The press is a wall-clock time; the clip is cut on the stream's own clock
(its video timestamps, kept continuous by `Timeline`), so "30 s before" means
30 s of pictures even when the camera or the network runs late:

* the press is placed at the video packet that arrived last at or before it;
* the clip starts at the last video key frame at least `pre_s` of pictures
  before that (or the oldest key frame held, when the buffer is shorter);
* it ends at the first video packet `post_s` of pictures after the press.

Each track's timestamps are moved so the clip starts at 0; a track that starts
later than the video (audio often does) keeps its distance, measured by arrival.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from adapters.media.ring import MediaPacket

__all__ = ["ClipCut", "cut_clip", "press_position", "rebased"]


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
    return float(packet.pts * packet.time_base)


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


def cut_clip(
    packets: Sequence[MediaPacket], press: float, pre_s: float, post_s: float
) -> ClipCut | None:
    """The clip around `press` (epoch seconds), or None without a video key frame."""
    if pre_s < 0 or post_s < 0:
        raise ValueError("pre_s and post_s must not be negative")
    at = press_position(packets, press)
    if at is None:
        return None
    first: int | None = None
    for index, packet in enumerate(packets):
        if packet.video and packet.keyframe:
            if first is None or _seconds(packet) <= at - pre_s:
                first = index
            else:
                break
    if first is None:
        return None
    last = len(packets)
    complete = False
    for index in range(first, len(packets)):
        packet = packets[index]
        if packet.video and _seconds(packet) >= at + post_s:
            last = index + 1
            complete = True
            break
    chosen = tuple(packets[first:last])
    start = _seconds(chosen[0])
    end = max(_seconds(p) for p in chosen if p.video)
    return ClipCut(
        packets=chosen,
        start_received=chosen[0].received,
        end_received=chosen[-1].received,
        press_offset_s=at - start,
        after_press_s=end - at,
        complete=complete,
    )


def rebased(cut: ClipCut) -> list[tuple[MediaPacket, int, int | None]]:
    """Each packet with its pts and dts moved so the clip starts at 0 (per track);
    packets whose decoding time does not move forward within their track are left out."""
    origin: dict[int, int] = {}
    shift: dict[int, int] = {}
    start = cut.packets[0].received if cut.packets else 0.0
    last: dict[int, int] = {}
    out: list[tuple[MediaPacket, int, int | None]] = []
    for packet in cut.packets:
        track = packet.track
        if track not in origin:
            first = packet.dts if packet.dts is not None else packet.pts
            origin[track] = first
            delay = Fraction(max(packet.received - start, 0.0)).limit_denominator(1000)
            shift[track] = int(delay / packet.time_base) if packet.time_base else 0
        base = origin[track] - shift[track]
        pts = packet.pts - base
        dts = None if packet.dts is None else packet.dts - base
        if pts < 0 or (dts is not None and dts < 0):
            continue  # a reordered packet from before the clip's first key frame
        order = pts if dts is None else dts
        if track in last and order <= last[track]:
            continue  # a repeated or backward timestamp (a source re-sync): MP4 refuses it
        last[track] = order
        out.append((packet, pts, dts))
    return out
