"""The pre-alarm packet ring, clip cutting and the timestamp timeline (pure)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.media import ClipCutter, MediaPacket, PacketRing, cut_clip, rebased
from adapters.media.ring import Timeline

TB = Fraction(1, 90000)
FPS = 25
GOP = 25  # a key frame every second


def _video(n: int, t0: float = 1000.0, size: int = 1000, pts0: int = 0) -> MediaPacket:
    return MediaPacket(
        track=0,
        pts=pts0 + n * 3600,
        dts=pts0 + n * 3600,
        duration=3600,
        time_base=TB,
        keyframe=n % GOP == 0,
        data=b"\0" * size,
        received=t0 + n / FPS,
    )


def _audio(n: int, t0: float = 1000.0) -> MediaPacket:
    return MediaPacket(
        track=1,
        pts=n * 1024,
        dts=n * 1024,
        duration=1024,
        time_base=Fraction(1, 16000),
        keyframe=True,
        data=b"\1" * 300,
        received=t0 + n * 1024 / 16000,
        video=False,
    )


def test_ring_starts_at_a_key_frame_and_keeps_at_least_the_pre_roll() -> None:
    ring = PacketRing(keep_s=30, max_bytes=1 << 30)
    for n in range(5, 60 * FPS):  # starts mid-group: those pictures cannot be decoded
        ring.push(_video(n))
    packets, _ = ring.window(0)
    assert packets[0].keyframe
    newest = packets[-1].received
    assert newest - packets[0].received >= 30
    # Never more than one group of pictures beyond the pre-roll.
    assert newest - packets[0].received < 30 + GOP / FPS + 1e-9


def test_ring_memory_bound_drops_whole_groups_and_says_so() -> None:
    ring = PacketRing(keep_s=30, max_bytes=200_000)
    for n in range(20 * FPS):
        ring.push(_video(n, size=1000))
    stats = ring.stats()
    assert stats.bytes <= 200_000
    assert stats.overflow_drops > 0
    assert ring.window(0)[0][0].keyframe


def test_after_continues_where_the_window_ended_and_notices_a_restart() -> None:
    ring = PacketRing(keep_s=5, max_bytes=1 << 30)
    for n in range(100):
        ring.push(_video(n))
    _, seq = ring.window(1000.0 + 2)
    for n in range(100, 110):
        ring.push(_video(n))
    more, seq, complete = ring.after(seq)
    assert complete and [p.pts for p in more] == [_video(n).pts for n in range(100, 110)]
    ring.reset(None)
    _, _, complete = ring.after(seq)
    assert not complete


def test_cut_starts_at_the_key_frame_before_the_pre_roll_and_ends_after_the_post_roll() -> None:
    packets = [_video(n) for n in range(90 * FPS)]
    press = 1000.0 + 40.3
    cut = cut_clip(packets, press, 30, 30)
    assert cut is not None
    assert cut.packets[0].keyframe
    assert cut.press_offset_s >= 30
    assert cut.after_press_s >= 30 and cut.complete
    assert cut.end_received >= press + 30 - 1 / FPS
    assert cut.packets[-1].received - cut.packets[0].received < 61 + GOP / FPS


def test_cut_counts_the_stream_s_own_seconds_when_it_arrives_late() -> None:
    # The pictures arrive 3 s late and bunched: 30 s before the press means 30 s of
    # pictures before the one that had arrived at the press.
    packets = [
        MediaPacket(0, n * 3600, n * 3600, 3600, TB, n % GOP == 0, b"", 1003.0 + n / FPS * 0.9)
        for n in range(90 * FPS)
    ]
    press = 1050.0
    cut = cut_clip(packets, press, 30, 20)
    assert cut is not None
    assert cut.press_offset_s >= 30 and cut.after_press_s >= 20
    at = float(cut.packets[0].pts * TB) + cut.press_offset_s
    assert abs(at - (press - 1003.0) / 0.9) < 0.1
    short = cut_clip(packets[: 60 * FPS], press, 30, 20)
    assert short is not None and not short.complete


def test_cut_without_a_key_frame_is_none_and_bad_rolls_are_refused() -> None:
    assert cut_clip([_video(n) for n in range(1, 10)], 1000.2, 1, 1) is None
    with pytest.raises(ValueError, match="negative"):
        cut_clip([], 0, -1, 1)


def test_rebased_clip_starts_at_zero_and_audio_keeps_its_distance() -> None:
    packets = sorted(
        [_video(n) for n in range(3 * FPS)] + [_audio(n) for n in range(5, 40)],
        key=lambda p: p.received,
    )
    cut = cut_clip(packets, 1001.0, 1, 1)
    assert cut is not None
    out = rebased(cut)
    video = [pts for p, pts, _ in out if p.track == 0]
    audio = [(p, pts) for p, pts, _ in out if p.track == 1]
    assert video[0] == 0
    first_audio, pts = audio[0]
    assert abs(float(pts * first_audio.time_base) - (first_audio.received - 1000.0)) < 0.01


@given(
    st.lists(st.tuples(st.integers(-(10**9), 10**9), st.floats(0, 0.2)), min_size=1, max_size=200)
)
def test_timeline_always_moves_forward(jumps: list[tuple[int, float]]) -> None:
    timeline = Timeline()
    received = 0.0
    last = None
    for raw, gap in jumps:
        received += gap
        packet = MediaPacket(0, raw, raw, 3600, TB, False, b"", received)
        placed = timeline.place(packet)
        assert placed.dts is not None
        if last is not None:
            assert placed.dts > last
        last = placed.dts


def test_timeline_leaves_a_steady_stream_alone_and_bridges_a_restart() -> None:
    timeline = Timeline()
    steady = [timeline.place(_video(n)) for n in range(50)]
    assert [p.pts for p in steady] == [_video(n).pts for n in range(50)]
    assert timeline.jumps == 0
    # The server restarts its timestamps near zero: the track goes on by the time that passed.
    restarted = timeline.place(_video(50, pts0=-50 * 3600 + 7))
    assert restarted.pts == steady[-1].pts + 3600
    assert timeline.jumps == 1


def test_ring_depth_counts_the_stream_s_seconds_when_pictures_come_slow() -> None:
    # A camera that sends 30 s of pictures over 50 s of wall time: the ring still holds
    # 30 s of pictures, not 30 s of arrivals.
    ring = PacketRing(keep_s=30, max_bytes=1 << 30)
    for n in range(100 * FPS):
        packet = _video(n)
        ring.push(
            MediaPacket(0, packet.pts, packet.dts, 3600, TB, packet.keyframe, b"", 1000 + n / 15)
        )
    packets, _ = ring.window(float("-inf"))
    assert float((packets[-1].pts - packets[0].pts) * TB) >= 30
    assert ring.stats().span_s >= 30


def test_cutter_fed_in_batches_cuts_what_the_whole_list_cuts() -> None:
    packets = sorted(
        [_video(n) for n in range(90 * FPS)] + [_audio(n) for n in range(5, 1300)],
        key=lambda p: p.received,
    )
    press = 1000.0 + 40.3
    whole = cut_clip(packets, press, 30, 30)
    assert whole is not None
    cutter = ClipCutter(press, 30, 30)
    # The ring's 35 s at the press, then a second's packets at a time.
    arrived = [p for p in packets if p.received <= press + 0.5]
    settled = cutter.feed(arrived)
    assert cutter.placed and settled, "the pre-roll is settled as soon as the press is placed"
    rest = packets[len(arrived) :]
    while not cutter.done:
        batch, rest = rest[: FPS + 16], rest[FPS + 16 :]
        settled += cutter.feed(batch)
    assert [(p, pts, dts) for p, pts, dts in settled] == rebased(whole)
    assert cutter.complete and cutter.press_offset_s == whole.press_offset_s
    # It ends with the picture that completes the post-roll, not later.
    *_, before_last, last = [float(p.pts * TB) for p, _, _ in settled if p.video]
    assert cutter.at is not None and before_last < cutter.at + 30 <= last


def test_cutter_settles_nothing_before_the_press_is_placed_and_finish_ends_a_stall() -> None:
    cutter = ClipCutter(1000.0 + 20.0, 5, 30)
    assert cutter.feed([_video(n) for n in range(int(19.9 * FPS))]) == []
    assert not cutter.placed
    # The stream stalls: the hub ends the clip with what there is.
    settled = cutter.finish()
    assert cutter.placed and not cutter.complete and settled
    assert settled[0][0].keyframe and settled[0][1] == 0
    assert cutter.press_offset_s >= 5


def test_cutter_stops_at_its_size_bound() -> None:
    cutter = ClipCutter(1000.0 + 10.0, 5, 30, max_bytes=100_000)
    settled = cutter.feed([_video(n, size=1000) for n in range(60 * FPS)])
    assert cutter.truncated and cutter.done and not cutter.complete
    assert sum(len(p.data) for p, _, _ in settled) <= 100_000


def test_a_held_ring_keeps_what_it_held_until_released_within_its_memory_bound() -> None:
    ring = PacketRing(keep_s=30, max_bytes=1 << 30)
    for n in range(40 * FPS):
        ring.push(_video(n))
    first = ring.window(0)[0][0].received
    ring.hold()  # an alarm: its clip reads the pre-roll seconds later
    for n in range(40 * FPS, 50 * FPS):
        ring.push(_video(n))
    assert ring.window(0)[0][0].received == first  # nothing aged out while held
    ring.release()
    ring.push(_video(50 * FPS))
    packets, _ = ring.window(0)
    assert packets[-1].received - packets[0].received < 30 + GOP / FPS + 1e-9
    # The memory bound holds even while held.
    small = PacketRing(keep_s=30, max_bytes=200_000)
    small.hold()
    for n in range(20 * FPS):
        small.push(_video(n))
    assert small.stats().bytes <= 200_000 and small.stats().overflow_drops > 0
