"""A pre-alarm ring that keeps its closed groups of pictures on disk (I/O).

`SpillRing` is a `PacketRing` whose complete groups of pictures (from one video
key frame to the next) go to one file each in its own directory; memory holds
the group being received and each packet's timestamps (about 100 bytes a packet).
Readers (`window`, `after`) get the packets with their bytes read back, so a clip
is cut exactly as from a memory ring. The files are bounded by `max_disk_bytes`:
past it the oldest group goes, as a memory ring drops one past `max_bytes`
(counted in `overflow_drops`). The directory is emptied when the ring starts,
resets and closes.

File I/O happens under the ring's lock, on the source's thread (writing a closed
group, about 250 KiB a second at 2 Mbit/s) and on the reader's (reading a clip's
groups back): callers read from a worker thread, never the event loop.
"""

from __future__ import annotations

import bisect
import shutil
from pathlib import Path

from adapters.media.ring import MediaPacket, PacketRing, RingStats

__all__ = ["SpillRing"]


class SpillRing(PacketRing):
    """A `PacketRing` with its closed groups of pictures in files under `directory`."""

    def __init__(self, keep_s: float, max_bytes: int, directory: Path, max_disk_bytes: int) -> None:
        super().__init__(keep_s, max_bytes)
        if max_disk_bytes <= 0:
            raise ValueError("max_disk_bytes must be positive")
        self.directory = directory
        self.max_disk_bytes = max_disk_bytes
        # first seq of each group on disk (ascending) -> (file, each packet's end offset)
        self._firsts: list[int] = []
        self._groups: dict[int, tuple[Path, list[int]]] = {}
        self._disk_bytes = 0
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)

    def _group_closed(self, first_seq: int, end_seq: int) -> None:
        # The key frame that closes the group may already be in the deque behind it.
        start = first_seq - self._first_seq
        count = end_seq - first_seq
        if start < 0 or count <= 0 or start + count > len(self._packets):
            return
        packets = [self._packets[start + i] for i in range(count)]
        ends: list[int] = []
        size = 0
        for packet in packets:
            size += len(packet.data)
            ends.append(size)
        path = self.directory / f"{first_seq}.gop"
        path.write_bytes(b"".join(packet.data for packet in packets))
        for i, packet in enumerate(packets):
            self._packets[start + i] = packet._replace(data=b"")
        self._firsts.append(first_seq)
        self._groups[first_seq] = (path, ends)
        self._bytes -= size
        self._disk_bytes += size
        while self._disk_bytes > self.max_disk_bytes and len(self._keys) >= 2:
            self._drop_group()
            self._overflow_drops += 1

    def _group_dropped(self, first_seq: int) -> None:
        group = self._groups.pop(first_seq, None)
        if group is None:
            return
        path, ends = group
        index = bisect.bisect_left(self._firsts, first_seq)
        if index < len(self._firsts) and self._firsts[index] == first_seq:
            del self._firsts[index]
        self._disk_bytes -= ends[-1] if ends else 0
        path.unlink(missing_ok=True)

    def _cleared(self) -> None:
        for path, _ in self._groups.values():
            path.unlink(missing_ok=True)
        self._firsts.clear()
        self._groups.clear()
        self._disk_bytes = 0

    def _loaded(self, packets: list[MediaPacket], first_seq: int) -> list[MediaPacket]:
        out = list(packets)
        cache: dict[int, bytes] = {}
        for i, packet in enumerate(packets):
            if packet.data:
                continue
            seq = first_seq + i
            index = bisect.bisect_right(self._firsts, seq) - 1
            if index < 0:
                continue
            group_first = self._firsts[index]
            path, ends = self._groups[group_first]
            position = seq - group_first
            if position >= len(ends):
                continue  # a packet of the open group that is empty as received
            if group_first not in cache:
                cache[group_first] = path.read_bytes()
            start = ends[position - 1] if position else 0
            out[i] = packet._replace(data=cache[group_first][start : ends[position]])
        return out

    def stats(self) -> RingStats:
        """Packets, bytes in memory and on disk, and seconds held now."""
        held = super().stats()
        with self._lock:
            spilled = self._disk_bytes
        return RingStats(held.packets, held.bytes, held.span_s, held.overflow_drops, spilled)

    def close(self) -> None:
        """Forget every packet and remove the directory."""
        self.reset(None)
        shutil.rmtree(self.directory, ignore_errors=True)
