"""A dispatcher process for the crash test: delivers the outbox until it is killed."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from hub.alarms.config import AlarmSettings
from hub.alarms.dispatcher import Dispatcher
from hub.node import node_identity
from hub.storage import open_store
from tests.integration.alarm_support import SECRET


def settings(receiver: str, lease_s: float) -> AlarmSettings:
    """The sink and delivery settings the crash test's parent uses too."""
    return AlarmSettings.model_validate(
        {
            "sinks": [
                {
                    "name": "center",
                    "type": "webhook",
                    "url": receiver,
                    "secrets": [SECRET],
                    "timeout_s": 1.5,
                }
            ],
            "delivery": {
                "poll_interval_s": 0.05,
                "lease_s": lease_s,
                "backoff_base_s": 0.05,
                "backoff_cap_s": 0.2,
                "batch_size": 4,
                "concurrency": 4,
            },
        }
    )


async def run(url: str, receiver: str, lease_s: float, worker: str) -> None:
    store = open_store(url, pool_size=2)
    await store.open()
    configured = settings(receiver, lease_s)
    dispatcher = Dispatcher.from_settings(
        store, configured.delivery, configured.sinks, worker=worker
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await dispatcher.start()
    sys.stdout.write(f"READY {dispatcher.worker}\n")
    sys.stdout.flush()
    await stop.wait()
    await dispatcher.stop()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--receiver", required=True)
    parser.add_argument("--lease", type=float, required=True)
    parser.add_argument("--worker", default=None)
    parser.add_argument("--data-dir", type=Path, default=None, help="node id kept here")
    args = parser.parse_args()
    worker = args.worker
    if worker is None:
        if args.data_dir is None:
            parser.error("give --worker or --data-dir")
        worker = node_identity(None, args.data_dir)
    asyncio.run(run(args.url, args.receiver, args.lease, worker))


if __name__ == "__main__":
    main()
