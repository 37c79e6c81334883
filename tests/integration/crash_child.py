"""A producer process for the crash test: ingests events, logs each committed callback."""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import UTC, datetime, timedelta

from camera_registry.events import DeviceEvent
from hub.storage import open_store
from hub.writer import EventWriter


async def run(url: str, acked_path: str, count: int) -> None:
    store = open_store(url, pool_size=2)
    await store.open()
    writer = EventWriter(store, batch_max=50, batch_delay=0.002)
    await writer.start()
    fd = os.open(acked_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    start = datetime(2026, 11, 27, tzinfo=UTC)

    def acker(n: int) -> None:
        # One write() per callback: the bytes are in the kernel before we go on,
        # so a SIGKILL cannot lose an acknowledgement that was given.
        os.write(fd, f"{n}\n".encode())

    for n in range(count):
        event = DeviceEvent(
            time=start + timedelta(milliseconds=n),
            device_id=f"btn-{n % 78:03d}",
            kind="panic.press",
            source="crash-test",
            payload={"n": n},
            dedup_key=f"crash-{n}",
        )
        await writer.submit(event, lambda n=n: acker(n))  # type: ignore[misc]
        if n % 100 == 0:
            # Slow enough that the parent's kill lands mid-stream even when it is
            # scheduled late on a loaded machine (about 1.5 s for the whole stream).
            await asyncio.sleep(0.05)
    await writer.stop()
    await store.close()
    os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--acked", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.acked, args.count))


if __name__ == "__main__":
    main()
