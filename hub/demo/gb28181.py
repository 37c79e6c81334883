"""Sharp Eyes cameras of the demo joining over GB/T 28181.

In the district most 雪亮工程 channels reach the platform through NVRs over GB/T
28181, so the demo does that for a few of them: in each of the first towns an
NVR (a 20-digit id of type 118 beside its cameras' ids) is added to the registry,
and the in-repo device simulator registers it to the hub's SIP port with digest
(the platform default password), keeps alive every 30 s, answers the catalog
query with the town's first Sharp Eyes cameras as its channels, and takes
SetGuard and the alarm and catalog subscriptions. The maintenance view then
shows the NVRs registered and armed, and their channels online through them.
The channels keep their simulated RTSP streams for the live view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from adapters.gb28181.simulator import DeviceSimulator, SimChannel
from adapters.sim import District
from adapters.sim.district import TOWNS
from camera_registry.gb28181 import is_gb_id
from camera_registry.models import DeviceIn, DeviceKind, Project
from hub.devices.registry import Actor
from hub.runtime import Hub

__all__ = ["DEMO_GB_PASSWORD", "GbDemo", "demo_gb_settings", "plan_nvrs"]

log = logging.getLogger(__name__)

#: The platform default password the demo's NVRs use (a demo value, printed on purpose).
DEMO_GB_PASSWORD = "Jiuyuan-GB28181"  # noqa: S105 - a demo value shown in the banner
NVRS = 3
CHANNELS_PER_NVR = 4
KEEPALIVE_S = 30.0


def demo_gb_settings() -> dict[str, object]:
    """The demo hub's `gb28181` section: SIP on a free loopback port, known devices only."""
    return {
        "enabled": True,
        "sip_host": "127.0.0.1",
        "sip_port": 0,
        "password": DEMO_GB_PASSWORD,
        "auto_register": False,
    }


@dataclass(frozen=True, slots=True)
class PlannedNvr:
    """An NVR of the demo and the Sharp Eyes cameras that are its channels."""

    record: DeviceIn
    channels: tuple[DeviceIn, ...]


def plan_nvrs(district: District) -> list[PlannedNvr]:
    """One NVR in each of the first towns that has Sharp Eyes cameras."""
    by_town: dict[str, list[DeviceIn]] = defaultdict(list)
    for camera in district.cameras:
        if camera.project == Project.SHARP_EYES and camera.jurisdiction:
            by_town[camera.jurisdiction[:9]].append(camera)
    planned: list[PlannedNvr] = []
    for town in TOWNS:
        cameras = by_town.get(town.code[:9], [])[:CHANNELS_PER_NVR]
        if not cameras:
            continue
        first = cameras[0]
        nvr_id = f"{first.id[:10]}118{9_000_000 + len(planned) + 1:07d}"
        if not is_gb_id(nvr_id):
            continue
        record = DeviceIn(
            id=nvr_id,
            name=f"{town.name} 雪亮工程 NVR",
            kind=DeviceKind.NVR,
            project=Project.SHARP_EYES,
            jurisdiction=first.jurisdiction,
            latitude=first.latitude,
            longitude=first.longitude,
            address=f"{town.name} 视频汇聚机房",
            vendor="GridWatch",
            model="SIM-NVR",
            tags=["gb28181"],
        )
        planned.append(PlannedNvr(record, tuple(cameras)))
        if len(planned) == NVRS:
            break
    return planned


@dataclass(slots=True)
class GbDemo:
    """The demo's simulated NVRs, registered and keeping alive."""

    devices: list[DeviceSimulator] = field(default_factory=list)
    channels: int = 0
    registered: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, hub: Hub, district: District, actor: Actor) -> None:
        """Add the NVRs to the registry and let them register over SIP."""
        if not hub.gb28181.enabled:
            return
        planned = plan_nvrs(district)
        _, problems = await hub.registry.bulk_upsert(
            [p.record for p in planned], actor=actor, scope=None
        )
        if problems:
            raise RuntimeError(f"the demo's NVRs were refused: {problems}")
        settings = hub.gb28181.settings
        for nvr in planned:
            device = DeviceSimulator(
                nvr.record.id,
                DEMO_GB_PASSWORD,
                server=(settings.host_for_devices(), hub.gb28181.port),
                server_id=settings.platform_id,
                domain=settings.domain,
                channels=[
                    SimChannel(
                        camera.id,
                        camera.name,
                        civil_code=camera.jurisdiction or "150207",
                        longitude=camera.longitude,
                        latitude=camera.latitude,
                    )
                    for camera in nvr.channels
                ],
            )
            await device.start()
            self.devices.append(device)
            self.channels += len(nvr.channels)
            if await device.register() == 200:
                self.registered += 1
                self._tasks.append(asyncio.create_task(device.keepalive_forever(KEEPALIVE_S)))
            else:
                log.warning(
                    "demo NVR %s did not register (%s)", device.device_id, device.last_status
                )

    async def stop(self) -> None:
        """Stop keepalives and close the devices' sockets (once)."""
        tasks, self._tasks = self._tasks, []
        devices, self.devices = self.devices, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for device in devices:
            await device.close()
