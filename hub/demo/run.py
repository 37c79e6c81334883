"""`gridwatch demo`: the real hub on SQLite with a simulated 九原区 around it.

Nothing here is a mock-up of the product. The hub is the one `gridwatch run`
starts; the district (`adapters.sim.district`) goes into the registry through the
registry service; the panic buttons and broadcast units (`hub.demo.devices`) are
`adapters.sim` MQTT devices publishing the documented topics to a Mosquitto broker
the demo starts on a free loopback port (`hub.demo.broker`), so presses travel the
MQTT adapter → writer → alarm engine → console path of a real site. Cameras are
simulated streams (`hub.demo.cameras`): the patrol decodes their synthetic pictures
with the same diagnosis code, alarm snapshots take one of their frames through the
engine's snapshot path, and the live view sends them over WebRTC. When no
`mosquitto` binary exists, the simulated devices' messages are decoded by the MQTT
adapter's own parser, with the hub's device directory, and handed to the writer;
the demo says so.

A scenario (`hub.demo.scenario`) makes the district lively: a press at a random
school every 30-60 s (the first a few seconds after start), motion on cameras, a
camera that goes offline and comes back, a picture that goes blurred, heartbeats
and a low battery. A few Sharp Eyes cameras join over GB/T 28181 through simulated
NVRs (`hub.demo.gb28181`). The terminal shows the banner and the scenario's lines; the
hub's own log goes to `gridwatch.log` in the data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import uvicorn

from adapters.sim import District, DistrictSpec, SimCameraFleet, build_district
from adapters.sim.district import CITY_NAME, DISTRICT_CODE, DISTRICT_NAME, TOWNS
from camera_registry.events import DeviceEvent
from hub.auth.principal import system_actor
from hub.auth.service import AccountError
from hub.config import Settings
from hub.demo.broker import DemoBroker
from hub.demo.cameras import SimProbePool, attach_sim_cameras
from hub.demo.devices import DemoFleet, injected_fleet, start_mqtt_devices, stop_mqtt_devices
from hub.demo.gb28181 import DEMO_GB_PASSWORD, GbDemo, demo_gb_settings
from hub.demo.scenario import Scenario, ScenarioOptions
from hub.devices.registry import Actor
from hub.runtime import Hub

__all__ = [
    "DEMO_USERS",
    "DemoBroker",
    "DemoOptions",
    "DemoUser",
    "SimProbePool",
    "StartTimes",
    "run_demo",
]

_ACTOR = Actor(system_actor("demo"))
_TOWN = TOWNS[0]  # 沙河街道, where the district government sits


@dataclass(frozen=True, slots=True)
class DemoUser:
    """A login the demo creates (passwords are demo values, printed on purpose)."""

    username: str
    password: str
    role: str
    jurisdictions: tuple[str, ...]
    what: str  # in the banner
    display_name: str  # in the console


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser(
        "demo.admin", "GridWatch-Demo-1", "admin", ("/",), "administrator, everything", "系统管理员"
    ),
    DemoUser(
        "district.op",
        "Jiuyuan-150207!",
        "operator",
        (DISTRICT_CODE,),
        f"operator, whole {DISTRICT_NAME}",
        f"{DISTRICT_NAME}值班员",
    ),
    DemoUser(
        "town.op",
        "Shahe-150207001!",
        "operator",
        (_TOWN.code,),
        f"operator, {_TOWN.name} only",
        f"{_TOWN.name}值班员",
    ),
    DemoUser(
        "maint.crew",
        "Patrol-Camera-42!",
        "maintenance",
        (DISTRICT_CODE,),
        "maintenance crew",
        f"{DISTRICT_NAME}运维组",
    ),
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


@dataclass(slots=True)
class StartTimes:
    """Seconds from the start of `run_demo` to each step (the full district's benchmark)."""

    district_built_s: float = 0.0
    hub_started_s: float = 0.0
    district_loaded_s: float = 0.0
    serving_s: float = 0.0


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
        gb28181=demo_gb_settings(),
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
    async def create(user: DemoUser) -> None:
        with contextlib.suppress(AccountError):  # kept from an earlier demo run
            await hub.auth.create_user(
                user.username,
                user.password,
                user.role,
                user.jurisdictions,
                actor=_ACTOR.name,
                display_name=user.display_name,
            )

    # Together: each password hash takes a worker thread (memory-hard, by design).
    await asyncio.gather(*(create(user) for user in DEMO_USERS))


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
    started_s: float,
    gb: tuple[GbDemo, int],
) -> None:
    url = f"http://{options.host}:{options.port}/"
    sharp = sum(1 for c in district.cameras if c.project == "sharp_eyes")
    lines = [
        "",
        f"GridWatch demo — simulated {DISTRICT_NAME} ({CITY_NAME}, {DISTRICT_CODE}), "
        f"{len(TOWNS)} 苏木镇/街道, started in {started_s:.1f} s",
        f"  console:   {url}",
        f"  data:      {data_dir.resolve()} (SQLite; the hub's log is gridwatch.log there)",
        f"  devices:   {len(district.cameras)} cameras ({sharp} 雪亮工程, "
        f"{len(district.cameras) - sharp} 云眼), {len(district.panic_buttons)} panic "
        f"buttons in {len(district.schools)} schools, {len(district.broadcast_units)} broadcast "
        "units",
        f"  MQTT:      {broker}",
        f"  GB/T 28181: {gb[0].registered} NVRs with {gb[0].channels} 雪亮工程 channels "
        f"registered to SIP 127.0.0.1:{gb[1]} (UDP/TCP, password {DEMO_GB_PASSWORD})",
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


async def _start_broker(options: DemoOptions) -> tuple[DemoBroker | None, int | None, str]:
    """The demo's broker (when wanted and installed), its port, and a line describing it."""
    if options.broker != "none" and DemoBroker.available():
        broker = DemoBroker(Path(tempfile.mkdtemp(prefix="gridwatch-demo-mqtt-")))
        port = await asyncio.to_thread(broker.start)
        return broker, port, f"mosquitto on 127.0.0.1:{port} (devices speak gridwatch/v1/…)"
    if options.broker == "mosquitto":
        raise FileNotFoundError("mosquitto is not installed (apt-get install -y mosquitto)")
    text = (
        "no broker: simulated devices' messages are decoded by the MQTT parser and handed "
        "to the writer"
        + ("" if options.broker == "none" else " (install mosquitto for the full path)")
    )
    return None, None, text


async def _devices(hub: Hub, district: District, port: int | None) -> DemoFleet:
    """The simulated buttons and units: MQTT clients, or injected through the parser."""
    await hub.mqtt.directory.refresh()
    if port is not None:
        return await asyncio.to_thread(start_mqtt_devices, district, port)
    loop = asyncio.get_running_loop()

    def submit(event: DeviceEvent) -> None:
        # Called from worker threads: the writer lives on the event loop.
        asyncio.run_coroutine_threadsafe(hub.writer.submit(event), loop)

    fleet = injected_fleet(district, hub.mqtt.directory.lookup, submit)
    for sim in fleet.all():
        sim.online()
    return fleet


async def _serve(hub: Hub, options: DemoOptions) -> tuple[_Server, asyncio.Task[None]]:
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
    task = asyncio.create_task(server.serve(), name="demo-http")
    while not server.started:
        if task.done():
            await task
            raise RuntimeError(f"the HTTP server did not start on port {options.port}")
        await asyncio.sleep(0.05)
    return server, task


async def run_demo(
    options: DemoOptions,
    base: Settings,
    *,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    times: StartTimes | None = None,
) -> int:
    """Run the demo until SIGINT/SIGTERM (or `stop` is set); 0 after a clean stop.

    `times`, when given, receives how long each start-up step took.
    """
    began = time.perf_counter()
    times = times or StartTimes()
    data_dir = options.data_dir or Path("demo-data")
    data_dir.mkdir(parents=True, exist_ok=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    broker, port, broker_text = await _start_broker(options)
    district = build_district(options.seed, DistrictSpec.full() if options.full else None)
    times.district_built_s = time.perf_counter() - began
    cameras = SimCameraFleet()
    for camera in district.cameras:
        cameras.add(camera.id)
    hub = Hub(demo_settings(base, options, data_dir, port))
    devices = DemoFleet()
    nvrs = GbDemo()
    tasks: list[asyncio.Task[None]] = []
    server_task: asyncio.Task[None] | None = None
    try:
        async with hub:
            times.hub_started_s = time.perf_counter() - began
            attach_sim_cameras(hub, cameras)
            await _load_district(hub, district)
            await _create_users(hub)
            times.district_loaded_s = time.perf_counter() - began
            drill_key = await _drill_key(hub, data_dir) if port is not None else ""
            devices = await _devices(hub, district, port)
            await nvrs.start(hub, district, _ACTOR)
            server, server_task = await _serve(hub, options)
            times.serving_s = time.perf_counter() - began
            _print_banner(
                out,
                options,
                data_dir,
                district,
                broker_text,
                drill_key,
                times.serving_s,
                (nvrs, hub.gb28181.port),
            )
            scenario: Scenario | None = None
            if options.scenario:
                pace = ScenarioOptions(
                    seed=options.seed,
                    first_press_s=options.first_press_s,
                    press_every_s=options.press_every_s,
                    patrol_interval_s=options.patrol_interval_s,
                )
                scenario = Scenario(hub, district, devices, cameras, pace, out)
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
            await nvrs.stop()
            await asyncio.to_thread(stop_mqtt_devices, devices)
    finally:
        await nvrs.stop()
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
