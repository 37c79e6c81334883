"""One cluster member for the membership tests: logs what it owns until it is killed.

Every ownership change is appended to `<dir>/<node>.log` as `<unix time> +<device>`
or `-<device>`; while it runs the singleton job, `<dir>/<node>.job` gets a line
every 50 ms. The parent test reads both files.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from hub.cluster import Cluster, ClusterSettings
from hub.storage import open_store

DEVICES = [f"cam-{n:04d}" for n in range(240)]


async def run(url: str, node: str, out: Path, heartbeat_s: float, timeout_s: float) -> None:
    store = open_store(url, pool_size=2)
    await store.open()
    settings = ClusterSettings(
        heartbeat_s=heartbeat_s, node_timeout_s=timeout_s, handover_s=2 * heartbeat_s
    )
    cluster = Cluster(settings, store=store, node_id=node, address=f"child:{node}", conninfo=url)
    log_path, job_path = out / f"{node}.log", out / f"{node}.job"
    owned: set[str] = set()

    def recount() -> None:
        now = set(d for d in DEVICES if cluster.is_mine(d))
        lines = [f"{time.time():.4f} -{d}\n" for d in sorted(owned - now)]
        lines += [f"{time.time():.4f} +{d}\n" for d in sorted(now - owned)]
        owned.clear()
        owned.update(now)
        with log_path.open("a", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()

    async def job() -> None:
        while True:
            with job_path.open("a", encoding="utf-8") as f:
                f.write(f"{time.time():.4f}\n")
            await asyncio.sleep(0.05)

    cluster.on_change(recount)
    cluster.add_singleton("test-job", job)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await cluster.start()
    recount()
    sys.stdout.write(f"READY {node}\n")
    sys.stdout.flush()
    await stop.wait()
    await cluster.stop()
    recount()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("node")
    parser.add_argument("out", type=Path)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.node, args.out, args.heartbeat, args.timeout))


if __name__ == "__main__":
    main()
