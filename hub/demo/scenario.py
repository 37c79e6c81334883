"""The demo's story: occasional, realistic events over the simulated district."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from adapters.sim import District, SimCameraFleet, SimFault
from camera_registry.events import DeviceEvent, Severity
from hub.demo.devices import DemoFleet
from hub.runtime import Hub

__all__ = ["Scenario", "ScenarioOptions"]


@dataclass(frozen=True, slots=True)
class ScenarioOptions:
    """The pace of the story."""

    seed: int = 2024
    first_press_s: float = 5.0
    press_every_s: tuple[float, float] = (30.0, 60.0)
    patrol_interval_s: float = 60.0


class Scenario:
    """Occasional realistic events over the simulated district."""

    def __init__(
        self,
        hub: Hub,
        district: District,
        devices: DemoFleet,
        cameras: SimCameraFleet,
        options: ScenarioOptions,
        out: TextIO,
    ) -> None:
        self.hub = hub
        self.district = district
        self.devices = devices
        self.cameras = cameras
        self.options = options
        self.out = out
        # Not for secrets: a seeded generator makes the demo's story repeatable.
        self.rng = random.Random(options.seed)  # noqa: S311
        self.presses = 0
        self._pending: set[asyncio.Task[None]] = set()

    def say(self, text: str) -> None:
        """One scenario line, stamped with Beijing time."""
        local = datetime.now(UTC) + timedelta(hours=8)
        self.out.write(f"[{local:%H:%M:%S}] {text}\n")
        self.out.flush()

    async def _blocking(self, func: Callable[[], object]) -> None:
        # paho's publish only queues, but keep even that off the event loop.
        await asyncio.to_thread(func)

    async def press_loop(self) -> None:
        """A press at a random school every so often; restored a little later."""
        await asyncio.sleep(self.options.first_press_s)
        low, high = self.options.press_every_s
        while True:
            school = self.rng.choice(self.district.schools)
            button_id = self.rng.choice(school.buttons)
            button = next(d for d in self.district.panic_buttons if d.id == button_id)
            assert button.mqtt_device_id is not None  # noqa: S101
            sim = self.devices.buttons[button.mqtt_device_id]
            await self._blocking(sim.press)
            self.presses += 1
            self.say(f"PRESS  {school.name} ({button.mqtt_device_id}) — watch the console")
            restore_after = self.rng.uniform(10, 25)
            restore = asyncio.create_task(self._restore_later(sim, restore_after))
            self._pending.add(restore)
            restore.add_done_callback(self._pending.discard)
            await asyncio.sleep(self.rng.uniform(low, high))

    async def _restore_later(self, sim: Any, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._blocking(sim.restore)

    async def motion_loop(self) -> None:
        """Motion on a random camera every 8-20 s."""
        cameras = self.district.cameras
        while True:
            await asyncio.sleep(self.rng.uniform(8, 20))
            camera = self.rng.choice(cameras)
            now = datetime.now(UTC)
            await self.hub.writer.submit(
                DeviceEvent(
                    time=now,
                    device_id=camera.id,
                    kind="onvif.motion",
                    severity=Severity.INFO,
                    source="sim",
                    payload={"state": True, "topic": "tns1:VideoSource/MotionAlarm"},
                    dedup_key=f"sim:motion:{camera.id}:{int(now.timestamp())}",
                )
            )

    async def camera_faults(self) -> None:
        """A blurred lens and a power cut, each repaired later."""
        interval = self.options.patrol_interval_s
        cameras = [c.id for c in self.district.cameras]
        blurred, offline = self.rng.sample(cameras, 2)
        await asyncio.sleep(min(20.0, interval / 2))
        self.cameras.set_fault(blurred, SimFault.BLURRED)
        self.say(f"FAULT  camera {blurred}: lens defocused (the patrol will find it blurred)")
        await asyncio.sleep(min(20.0, interval / 2))
        self.cameras.set_fault(offline, SimFault.OFFLINE)
        self.say(f"FAULT  camera {offline}: goes offline (power cut)")
        await asyncio.sleep(interval * 4)
        self.cameras.set_fault(offline, SimFault.NONE)
        self.say(f"REPAIR camera {offline}: back online")
        await asyncio.sleep(interval * 2)
        self.cameras.set_fault(blurred, SimFault.NONE)
        self.say(f"REPAIR camera {blurred}: lens refocused")

    async def heartbeats(self) -> None:
        """Every device's heartbeat, about once a minute."""
        while True:
            for sim in self.devices.all():
                await self._blocking(sim.heartbeat)
            await asyncio.sleep(55)

    async def low_battery(self) -> None:
        """One button reports a low battery after a few minutes."""
        await asyncio.sleep(self.rng.uniform(90, 180))
        mqtt_id = self.rng.choice(sorted(self.devices.buttons))
        await self._blocking(lambda: self.devices.buttons[mqtt_id].low_battery(12))
        self.say(f"BATTERY {mqtt_id}: 12 %")

    async def alarm_lines(self) -> None:
        """One line per alarm the hub opens: what the operators now see in the console."""
        names = {node.code: node.name for node in self.district.nodes}
        subscription = self.hub.alarm_changes.subscribe(maxsize=10_000, name="demo-scenario")
        try:
            async for change in subscription:
                if change.action != "open":
                    continue
                alarm = change.payload.get("alarm", {})
                where = names.get(str(alarm.get("jurisdiction")), "")
                self.say(f"ALARM  P{alarm.get('priority')} {alarm.get('title')} — {where}")
        finally:
            subscription.close()

    def cancel_pending(self) -> None:
        """Cancel restores still waiting."""
        for task in list(self._pending):
            task.cancel()

    def tasks(self) -> list[asyncio.Task[None]]:
        """Start every part of the story."""
        return [
            asyncio.create_task(self.alarm_lines(), name="demo-alarm-lines"),
            asyncio.create_task(self.press_loop(), name="demo-presses"),
            asyncio.create_task(self.motion_loop(), name="demo-motion"),
            asyncio.create_task(self.camera_faults(), name="demo-camera-faults"),
            asyncio.create_task(self.heartbeats(), name="demo-heartbeats"),
            asyncio.create_task(self.low_battery(), name="demo-battery"),
        ]
