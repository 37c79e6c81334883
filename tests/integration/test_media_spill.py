"""The spilling pre-alarm ring: closed groups of pictures in files, bounded on disk,
read back byte for byte."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from adapters.media import MediaPacket, PacketRing, cut_clip
from adapters.media.spill import SpillRing

TB = Fraction(1, 90000)
FPS = 25


def _video(n: int, size: int = 1000) -> MediaPacket:
    return MediaPacket(
        0, n * 3600, n * 3600, 3600, TB, n % FPS == 0, bytes([n % 251]) * size, 1000 + n / FPS
    )


def _audio(n: int) -> MediaPacket:
    return MediaPacket(
        1,
        n * 1024,
        n * 1024,
        1024,
        Fraction(1, 8000),
        True,
        bytes([n % 7]) * 160,
        1000 + n * 1024 / 8000,
        False,
    )


def _stream(seconds: int) -> list[MediaPacket]:
    packets = [_video(n) for n in range(seconds * FPS)]
    packets += [_audio(n) for n in range(int(seconds * 8000 / 1024))]
    return sorted(packets, key=lambda p: p.received)


def test_spilled_ring_gives_back_what_a_memory_ring_holds(tmp_path: Path) -> None:
    memory = PacketRing(keep_s=10, max_bytes=1 << 30)
    spill = SpillRing(
        keep_s=10, max_bytes=1 << 30, directory=tmp_path / "cam", max_disk_bytes=1 << 30
    )
    for packet in _stream(40):
        memory.push(packet)
        spill.push(packet)
    held, seq = memory.window(float("-inf"))
    spilled, spill_seq = spill.window(float("-inf"))
    assert spilled == held and spill_seq == seq
    # Memory holds only the group being received; the rest is in one file per group.
    stats = spill.stats()
    assert stats.bytes < 2 * FPS * 1000
    assert stats.spilled_bytes + stats.bytes == memory.stats().bytes
    files = sorted((tmp_path / "cam").iterdir())
    assert 10 <= len(files) <= 12 and sum(f.stat().st_size for f in files) == stats.spilled_bytes
    # A clip cut from it is the same clip.
    assert cut_clip(spilled, 1030.0, 5, 3) == cut_clip(held, 1030.0, 5, 3)
    # after() reads back what arrived since, spilled or not.
    for n in range(40 * FPS, 43 * FPS):
        memory.push(_video(n))
        spill.push(_video(n))
    assert spill.after(spill_seq)[0] == memory.after(seq)[0]


def test_spill_stays_within_its_disk_bound_and_a_reset_empties_it(tmp_path: Path) -> None:
    directory = tmp_path / "cam"
    spill = SpillRing(keep_s=30, max_bytes=1 << 30, directory=directory, max_disk_bytes=200_000)
    for n in range(60 * FPS):
        spill.push(_video(n, size=2000))
        assert spill.stats().spilled_bytes <= 200_000
    assert sum(f.stat().st_size for f in directory.iterdir()) <= 200_000
    assert spill.stats().overflow_drops > 0
    packets, _ = spill.window(float("-inf"))
    assert packets[0].keyframe and all(len(p.data) == 2000 for p in packets)
    spill.reset(None)
    assert list(directory.iterdir()) == [] and spill.stats().spilled_bytes == 0
    spill.close()
    assert not directory.exists()
