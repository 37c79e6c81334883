"""`gridwatch demo`: the real hub on SQLite with a simulated district around it.

Nothing here is a mock-up of the product. The hub is the one `gridwatch run`
starts; the district (`adapters.sim.district`) goes into the registry through the
registry service; the panic buttons and broadcast units are `adapters.sim` MQTT
devices publishing the documented topics to a Mosquitto broker the demo starts on
a free loopback port, so presses travel the MQTT adapter → writer → alarm engine
→ console path of a real site. Cameras are simulated streams: the patrol decodes
their synthetic pictures with the same diagnosis code, and the live view sends
them over WebRTC. When no `mosquitto` binary exists, the simulated devices'
messages are decoded by the MQTT adapter's own parser and handed to the writer,
and the demo says so.

A scenario task makes the district lively: a press at a random school every 30-60
s (the first a few seconds after start), motion on cameras, a camera that goes
offline and comes back, a picture that goes blurred, heartbeats and a low battery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np
import uvicorn

from adapters.mqtt.models import DeviceInfo, DeviceKind
from adapters.mqtt.parsers import InboundMessage, Rejection, decode_message
from adapters.rtsp import ProbeFailure, StreamProbe
from adapters.rtsp.models import redact_url
from adapters.sim import (
    BroadcastUnitSim,
    District,
    DistrictSpec,
    PanicButtonSim,
    SimCameraFleet,
    SimFault,
    build_district,
    sim_device_of,
)
from adapters.sim.video import SimPlayer
from camera_registry.events import DeviceEvent, Severity
from hub.auth.principal import system_actor
from hub.auth.service import AccountError
from hub.config import Settings
from hub.devices.registry import Actor
from hub.runtime import Hub

__all__ = [
    "DEMO_USERS",
    "DemoBroker",
    "DemoOptions",
    "DemoUser",
    "SimProbePool",
    "run_demo",
]

log = logging.getLogger(__name__)

_ACTOR = Actor(system_actor("demo"))
_FPS = 12.5


@dataclass(frozen=True, slots=True)
class DemoUser:
    """A login the demo creates (passwords are demo values, printed on purpose)."""

    username: str
    password: str
    role: str
    jurisdictions: tuple[str, ...]
    what: str


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("demo.admin", "GridWatch-Demo-1", "admin", ("/",), "administrator, everything"),
    DemoUser("district.op", "Xincheng-150102!", "operator", ("150102",), "operator, whole 新城区"),
    DemoUser(
        "town.op", "Dongjie-150102001!", "operator", ("150102001",), "operator, 东街街道 only"
    ),
    DemoUser("maint.crew", "Patrol-Camera-42!", "maintenance", ("150102",), "maintenance crew"),
)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How `gridwatch demo` runs."""

    data_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    seed: int = 2024
    full: bool = False
    broker: str = "auto"  # auto | mosquitto | none
    first_press_s: float = 5.0
    press_every_s: tuple[float, float] = (30.0, 60.0)
    patrol_interval_s: float = 60.0
    scenario: bool = True


# -- the broker ----------------------------------------------------------------


class DemoBroker:
    """A Mosquitto broker of the demo's own on a free 127.0.0.1 port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """The mosquitto binary, if installed (Debian puts it in /usr/sbin)."""
        return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")

    def start(self, timeout_s: float = 10.0) -> int:
        """Start the broker; return its port."""
        binary = self.available()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        conf = self.directory / "mosquitto.conf"
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {self.directory / 'mosquitto.log'}",
            # The demo's devices and hub are few; the shipped limits are in docker/.
            "max_queued_messages 10000",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', who cannot write here
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary and our own config
            [binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the broker itself
        )
        deadline = time.monotonic() + timeout_s
        while not _port_open(port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start (see {self.directory})")
            time.sleep(0.05)
        self.port = port
        return port

    def stop(self) -> None:
        """Stop the broker and wait for it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# -- simulated cameras for the patrol -----------------------------------------


class SimProbePool:
    """The patrol's probe pool for a fleet of simulated cameras; other URLs go to `fallback`.

    A simulated stream is "decoded" by rendering its pictures, in worker threads,
    and reported as the RTSP probe reports a real camera, so the diagnosis, health
    tracking, evidence and events downstream are the product's own.
    """

    def __init__(
        self,
        fleet: SimCameraFleet,
        fallback: Any,
        *,
        frames: int = 8,
        analysis_width: int = 320,
        max_workers: int = 2,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.fleet = fleet
        self.fallback = fallback
        self.frames = frames
        self.analysis_width = analysis_width
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="sim-probe")

    async def probe(
        self, url: str, *, frames: int | None = None, timeout_s: float | None = None
    ) -> StreamProbe:
        """Probe a simulated stream here, anything else with the real pool."""
        device_id = sim_device_of(url)
        if device_id is None or device_id not in self.fleet:
            result: StreamProbe = await self.fallback.probe(url, frames=frames, timeout_s=timeout_s)
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._probe_sim, url, device_id, frames or self.frames
        )

    def _probe_sim(self, url: str, device_id: str, count: int) -> StreamProbe:
        started = time.perf_counter()
        pictures = self.fleet.burst(device_id, self._clock(), count, fps=_FPS)
        safe_url = redact_url(url)
        if not pictures:
            return StreamProbe(
                url=safe_url,
                ok=False,
                failure=ProbeFailure.UNREACHABLE,
                error="connection refused (simulated camera offline)",
                frames_requested=count,
                total_time_s=time.perf_counter() - started,
            )
        height, width = pictures[0].shape[:2]
        scaled_height = max(2, round(height * self.analysis_width / width / 2) * 2)
        analysed = tuple(
            np.asarray(
                cv2.resize(p, (self.analysis_width, scaled_height), interpolation=cv2.INTER_AREA),
                dtype=np.uint8,
            )
            for p in pictures
        )
        encoded, jpeg = cv2.imencode(".jpg", pictures[-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
        decoded_s = time.perf_counter() - started
        return StreamProbe(
            url=safe_url,
            ok=True,
            open_latency_s=0.0,
            codec="h264",
            width=width,
            height=height,
            fps=_FPS,
            frames_requested=count,
            frames_decoded=len(analysed),
            decode_time_s=decoded_s,
            total_time_s=decoded_s,
            frames=analysed,
            snapshot_jpeg=bytes(jpeg.tobytes()) if encoded else None,
        )

    async def aclose(self) -> None:
        """Release the workers and the fallback pool."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        await self.fallback.aclose()


def attach_sim_cameras(hub: Hub, fleet: SimCameraFleet) -> None:
    """Let the hub's live view and patrol serve the fleet's simulated streams."""

    def open_player(url: str) -> SimPlayer | None:
        device_id = sim_device_of(url)
        return SimPlayer(fleet, device_id) if device_id is not None and device_id in fleet else None

    hub.live.relay.add_source(open_player)
    patrol = hub.patrol
    pool = patrol._pool
    if pool is not None and not isinstance(pool, SimProbePool):
        patrol._pool = SimProbePool(  # type: ignore[assignment]
            fleet,
            pool,
            frames=patrol.settings.frames,
            analysis_width=patrol.settings.thresholds.analysis_width,
        )


# -- the simulated MQTT devices -------------------------------------------------


class _InjectedDevice:
    """Without a broker: a simulated device whose messages go through the MQTT
    adapter's parser straight to the writer (same payloads, same decoding)."""

    def __init__(self, mqtt_id: str, kind: DeviceKind, submit: Callable[[DeviceEvent], None]):
        self.device_id = mqtt_id
        self._info = DeviceInfo(mqtt_id, kind)
        self._submit = submit

    def _send(self, suffix: str, body: dict[str, Any]) -> None:
        message = InboundMessage(
            f"gridwatch/v1/{self.device_id}/{suffix}",
            json.dumps(body).encode(),
            False,
            datetime.now(UTC),
        )
        decoded = decode_message(
            message,
            prefix="gridwatch/v1",
            lookup=lambda _id: self._info,
            max_payload_bytes=64 * 1024,
            vendor_mappings=(),
        )
        if isinstance(decoded, Rejection):
            log.warning("demo: simulated %s message refused: %s", self.device_id, decoded)
            return
        self._submit(decoded)

    def press(self, *, drill: bool = False) -> str:
        msg_id = uuid.uuid4().hex
        body: dict[str, Any] = {"v": 1, "msg_id": msg_id, "type": "panic.press"}
        if drill:
            body["drill"] = True
        self._send("event", {**body, "time": datetime.now(UTC).isoformat()})
        return msg_id

    def restore(self) -> str:
        msg_id = uuid.uuid4().hex
        self._send("event", {"v": 1, "msg_id": msg_id, "type": "panic.restore"})
        return msg_id

    def heartbeat(self, *, battery: int | None = None) -> None:
        body: dict[str, Any] = {"v": 1, "interval_s": 60}
        if battery is not None:
            body["battery"] = battery
        self._send("heartbeat", body)

    def low_battery(self, level: int) -> str:
        msg_id = uuid.uuid4().hex
        self._send(
            "event", {"v": 1, "msg_id": msg_id, "type": "device.low_battery", "battery": level}
        )
        return msg_id

    def online(self) -> None:
        self._send("availability", {"v": 1, "state": "online"})


@dataclass
class _Fleet:
    buttons: dict[str, Any] = field(default_factory=dict)  # mqtt id → sim
    units: dict[str, Any] = field(default_factory=dict)
    over_mqtt: bool = False

    def all(self) -> list[Any]:
        return [*self.buttons.values(), *self.units.values()]


def _start_mqtt_devices(district: District, port: int) -> _Fleet:
    """One paho client per device (96 light clients), connected in parallel."""
    fleet = _Fleet(over_mqtt=True)
    sims: list[Any] = []
    for device in district.panic_buttons:
        assert device.mqtt_device_id is not None  # noqa: S101 - the district sets it
        sim = PanicButtonSim(device.mqtt_device_id, port=port)
        fleet.buttons[device.mqtt_device_id] = sim
        sims.append(sim)
    for device in district.broadcast_units:
        assert device.mqtt_device_id is not None  # noqa: S101
        unit = BroadcastUnitSim(device.mqtt_device_id, port=port, play_seconds=8.0)
        fleet.units[device.mqtt_device_id] = unit
        sims.append(unit)
    with ThreadPoolExecutor(16, thread_name_prefix="sim-connect") as pool:
        list(pool.map(lambda s: s.start(timeout=10.0), sims))
    return fleet


def _stop_mqtt_devices(fleet: _Fleet) -> None:
    if not fleet.over_mqtt:
        return

    def stop(sim: Any) -> None:
        try:
            sim.stop()
        except Exception:
            log.exception("demo: stopping simulated device %s failed", sim.device_id)

    with ThreadPoolExecutor(16, thread_name_prefix="sim-stop") as pool:
        list(pool.map(stop, fleet.all()))


# -- the scenario --------------------------------------------------------------


class _Scenario:
    """Occasional realistic events over the simulated district."""

    def __init__(
        self,
        hub: Hub,
        district: District,
        devices: _Fleet,
        cameras: SimCameraFleet,
        options: DemoOptions,
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
        local = datetime.now(UTC) + timedelta(hours=8)
        self.out.write(f"[{local:%H:%M:%S}] {text}\n")
        self.out.flush()

    async def _blocking(self, func: Callable[[], object]) -> None:
        # paho's publish only queues, but keep even that off the event loop.
        await asyncio.to_thread(func)

    async def press_loop(self) -> None:
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
        while True:
            for sim in self.devices.all():
                await self._blocking(sim.heartbeat)
            await asyncio.sleep(55)

    async def low_battery(self) -> None:
        await asyncio.sleep(self.rng.uniform(90, 180))
        mqtt_id = self.rng.choice(sorted(self.devices.buttons))
        await self._blocking(lambda: self.devices.buttons[mqtt_id].low_battery(12))
        self.say(f"BATTERY {mqtt_id}: 12 %")

    def cancel_pending(self) -> None:
        """Cancel restores still waiting."""
        for task in list(self._pending):
            task.cancel()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self.press_loop(), name="demo-presses"),
            asyncio.create_task(self.motion_loop(), name="demo-motion"),
            asyncio.create_task(self.camera_faults(), name="demo-camera-faults"),
            asyncio.create_task(self.heartbeats(), name="demo-heartbeats"),
            asyncio.create_task(self.low_battery(), name="demo-battery"),
        ]


# -- assembly ------------------------------------------------------------------


def demo_settings(
    base: Settings, options: DemoOptions, data_dir: Path, port: int | None
) -> Settings:
    """The hub settings of the demo: SQLite in `data_dir`, the demo broker, a brisk patrol."""
    data = base.model_dump(mode="python", exclude_unset=True)
    data.update(
        data_dir=data_dir,
        storage={"url": None},
        http={"host": options.host, "port": options.port},
        mqtt={
            "enabled": port is not None,
            "host": "127.0.0.1",
            "port": port or 1883,
            "client_id": "gridwatch-demo",
            "device_refresh_s": 1.0,
        },
        patrol={
            "enabled": True,
            "interval_s": options.patrol_interval_s,
            "start_delay_s": 3.0,
            "concurrency": 2,
            "frames": 6,
            "policy": {"failures_to_offline": 2, "faults_to_degrade": 1},
        },
    )
    return Settings(**data)


async def _load_district(hub: Hub, district: District) -> None:
    await hub.registry.upsert_jurisdictions(list(district.nodes), actor=_ACTOR)
    _counts, problems = await hub.registry.bulk_upsert(
        list(district.devices), actor=_ACTOR, scope=None
    )
    if problems:
        raise RuntimeError(
            f"the simulated district was refused: {dict(list(problems.items())[:3])}"
        )


async def _drill_key(hub: Hub, data_dir: Path) -> str:
    """An admin API key for `gridwatch drill` against the demo (kept in data_dir, 0600)."""
    path = data_dir / "drill-api-key"
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if await hub.auth.api_key(token, None, datetime.now(UTC)) is not None:
            return token
    key = await hub.auth.create_api_key(
        f"demo drill {uuid.uuid4().hex[:6]}", "admin", ("/",), actor=_ACTOR.name
    )
    path.touch(mode=0o600)
    path.write_text(key.token + "\n", encoding="utf-8")
    return key.token


async def _create_users(hub: Hub) -> None:
    for user in DEMO_USERS:
        with contextlib.suppress(AccountError):  # kept from an earlier demo run
            await hub.auth.create_user(
                user.username,
                user.password,
                user.role,
                user.jurisdictions,
                actor=_ACTOR.name,
                display_name=user.what,
            )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the demo stops it in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _print_banner(
    out: TextIO,
    options: DemoOptions,
    data_dir: Path,
    district: District,
    broker: str,
    drill_key: str,
) -> None:
    url = f"http://{options.host}:{options.port}/"
    lines = [
        "",
        "GridWatch demo — simulated 新城区 (Hohhot, 150102)",
        f"  console:   {url}",
        f"  data:      {data_dir.resolve()} (SQLite)",
        f"  devices:   {len(district.cameras)} cameras, {len(district.panic_buttons)} panic "
        f"buttons in {len(district.schools)} schools, {len(district.broadcast_units)} broadcast "
        "units",
        f"  MQTT:      {broker}",
        "  logins:",
    ]
    lines += [f"    {u.username:<12} {u.password:<20} {u.what}" for u in DEMO_USERS]
    if drill_key:
        lines += [
            "  drill:     .venv/bin/gridwatch drill --url "
            f"http://{options.host}:{options.port} --api-key {drill_key}",
        ]
    lines += ["  Ctrl-C stops the demo.", ""]
    out.write("\n".join(lines) + "\n")
    out.flush()


async def run_demo(
    options: DemoOptions,
    base: Settings,
    *,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the demo until SIGINT/SIGTERM (or `stop` is set); 0 after a clean stop."""
    data_dir = options.data_dir or Path("demo-data")
    data_dir.mkdir(parents=True, exist_ok=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    broker: DemoBroker | None = None
    broker_text = ""
    if options.broker != "none" and DemoBroker.available():
        broker = DemoBroker(Path(tempfile.mkdtemp(prefix="gridwatch-demo-mqtt-")))
        port: int | None = await asyncio.to_thread(broker.start)
        broker_text = f"mosquitto on 127.0.0.1:{port} (devices speak gridwatch/v1/…)"
    else:
        if options.broker == "mosquitto":
            raise FileNotFoundError("mosquitto is not installed (apt-get install -y mosquitto)")
        port = None
        broker_text = (
            "no mosquitto here: simulated devices' messages are decoded by the MQTT "
            "parser and handed to the writer (install mosquitto for the full path)"
        )

    district = build_district(options.seed, DistrictSpec.full() if options.full else None)
    cameras = SimCameraFleet()
    for camera in district.cameras:
        cameras.add(camera.id)
    settings = demo_settings(base, options, data_dir, port)
    hub = Hub(settings)
    devices = _Fleet()
    tasks: list[asyncio.Task[None]] = []
    server: _Server | None = None
    server_task: asyncio.Task[None] | None = None
    try:
        async with hub:
            attach_sim_cameras(hub, cameras)
            await _load_district(hub, district)
            await _create_users(hub)
            drill_key = await _drill_key(hub, data_dir) if port is not None else ""
            if port is not None:
                await hub.mqtt.directory.refresh()
                devices = await asyncio.to_thread(_start_mqtt_devices, district, port)
            else:

                def submit(event: DeviceEvent) -> None:
                    # Called from worker threads: the writer lives on the event loop.
                    asyncio.run_coroutine_threadsafe(hub.writer.submit(event), loop)

                devices = _Fleet(
                    buttons={
                        d.mqtt_device_id: _InjectedDevice(
                            d.mqtt_device_id, DeviceKind.PANIC_BUTTON, submit
                        )
                        for d in district.panic_buttons
                        if d.mqtt_device_id
                    },
                    units={
                        d.mqtt_device_id: _InjectedDevice(
                            d.mqtt_device_id, DeviceKind.BROADCAST_UNIT, submit
                        )
                        for d in district.broadcast_units
                        if d.mqtt_device_id
                    },
                )
                for sim in devices.all():
                    sim.online()
            server = _Server(
                uvicorn.Config(
                    hub.app(),
                    host=options.host,
                    port=options.port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                )
            )
            server_task = asyncio.create_task(server.serve(), name="demo-http")
            while not server.started:
                if server_task.done():
                    await server_task
                    raise RuntimeError(f"the HTTP server did not start on port {options.port}")
                await asyncio.sleep(0.05)
            _print_banner(out, options, data_dir, district, broker_text, drill_key)
            scenario: _Scenario | None = None
            if options.scenario:
                scenario = _Scenario(hub, district, devices, cameras, options, out)
                tasks = scenario.tasks()
            await stop.wait()
            out.write("stopping the demo…\n")
            out.flush()
            if scenario is not None:
                scenario.cancel_pending()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            server.should_exit = True
            await server_task
            await asyncio.to_thread(_stop_mqtt_devices, devices)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if server_task is not None and not server_task.done():
            server_task.cancel()
        if broker is not None:
            await asyncio.to_thread(broker.stop)
            shutil.rmtree(broker.directory, ignore_errors=True)
    out.write("demo stopped\n")
    out.flush()
    return 0
