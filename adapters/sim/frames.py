"""Synthetic camera pictures for simulated cameras. Pure: no I/O, no clock.

Each simulated camera has a scene of its own (a textured background with street
blocks, drawn once from the camera's id) and moving objects over it; the time
passed in moves the objects and is printed in the picture, so a viewer sees live
video and the patrol's diagnosis sees a real scene. Faults are drawn the way a
broken camera shows them: black (signal loss), frozen (the same picture again and
again), blurred (a defocused lens). An offline camera has no pictures at all.

`SimCameraFleet` holds the cameras and their current faults behind a lock: the
patrol renders from its worker threads while the demo scenario injects faults.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_SIZE",
    "Frame",
    "SimCameraFleet",
    "SimFault",
    "SimScene",
    "render_burst",
    "render_frame",
]

#: Width and height of a simulated camera's picture (a typical sub-stream).
DEFAULT_SIZE = (640, 360)
Frame = npt.NDArray[np.uint8]


class SimFault(StrEnum):
    """What is wrong with a simulated camera right now."""

    NONE = "none"
    BLACK = "black"
    FROZEN = "frozen"
    BLURRED = "blurred"
    OFFLINE = "offline"


def _seed_of(device_id: str) -> int:
    return int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big")


@dataclass(frozen=True, slots=True, eq=False)
class SimScene:
    """A camera's fixed background and the paths of its moving objects."""

    device_id: str
    label: str
    background: Frame
    movers: tuple[tuple[float, float, float, float, tuple[int, int, int], int], ...]

    @classmethod
    def create(
        cls, device_id: str, label: str | None = None, size: tuple[int, int] = DEFAULT_SIZE
    ) -> SimScene:
        """The scene of `device_id` (always the same for the same id and size)."""
        width, height = size
        rng = np.random.default_rng(_seed_of(device_id))
        # Sky-to-road gradient, then blocks (buildings), then fine texture: enough
        # detail that a sharp picture has a clear Laplacian and no block is flat.
        rows = np.linspace(150, 90, height, dtype=np.float32)[:, None, None]
        tint = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
        background = np.repeat(np.repeat(rows, width, axis=1), 3, axis=2) * tint
        for _ in range(14):
            x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height // 2))
            x1, y1 = x0 + int(rng.integers(30, 140)), int(rng.integers(height // 2, height))
            colour = tuple(float(c) for c in rng.uniform(50, 210, size=3))
            cv2.rectangle(background, (x0, y0), (x1, y1), colour, thickness=-1)
            for wy in range(y0 + 6, y1 - 6, 14):  # windows
                cv2.line(background, (x0 + 4, wy), (x1 - 4, wy), (30.0, 30.0, 30.0), 1)
        cv2.rectangle(background, (0, height - 60), (width, height), (70.0, 70.0, 75.0), -1)
        for x in range(0, width, 48):  # lane markings
            cv2.line(background, (x, height - 30), (x + 24, height - 30), (230.0, 230.0, 230.0), 2)
        background += rng.normal(0, 9, size=background.shape).astype(np.float32)
        picture = np.clip(background, 0, 255).astype(np.uint8)
        movers = tuple(
            (
                float(rng.uniform(0, width)),  # start x
                float(rng.uniform(height * 0.55, height - 20)),  # lane y
                float(rng.uniform(40, 120) * rng.choice([-1, 1])),  # px per second
                float(rng.uniform(0, 3)),  # bob phase
                _colour(rng),
                int(rng.integers(10, 26)),  # size
            )
            for _ in range(4)
        )
        return cls(device_id, label or device_id, picture, movers)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    blue, green, red = (int(c) for c in rng.integers(20, 255, size=3))
    return blue, green, red


def render_frame(scene: SimScene, at: datetime, fault: SimFault = SimFault.NONE) -> Frame | None:
    """The picture `scene` shows at time `at` with `fault` (None when offline)."""
    if fault is SimFault.OFFLINE:
        return None
    height, width = scene.background.shape[:2]
    if fault is SimFault.BLACK:
        # A lost signal is not perfectly black: encoders add a little noise.
        noise = np.random.default_rng(int(at.timestamp() * 1000) & 0xFFFF).integers(
            0, 4, size=(height, width, 3)
        )
        return noise.astype(np.uint8)
    if fault is SimFault.FROZEN:
        # The picture stuck at the start of the minute it froze in.
        at = at.replace(second=0, microsecond=0)
    t = at.timestamp()
    picture = scene.background.copy()
    for x0, lane, speed, phase, colour, size in scene.movers:
        span = width + 4 * size
        x = int((x0 + speed * t) % span) - 2 * size
        y = int(lane + 6 * np.sin(t * 2 + phase))
        cv2.rectangle(picture, (x - size, y - size // 2), (x + size, y + size // 2), colour, -1)
        cv2.circle(picture, (x - size // 2, y + size // 2), size // 4 + 2, (20, 20, 20), -1)
        cv2.circle(picture, (x + size // 2, y + size // 2), size // 4 + 2, (20, 20, 20), -1)
    local = at.astimezone(UTC) + timedelta(hours=8)  # Asia/Shanghai has no DST
    stamp = local.strftime("%Y-%m-%d %H:%M:%S") + " CST"
    cv2.rectangle(picture, (0, 0), (width, 26), (0, 0, 0), -1)
    cv2.putText(picture, stamp, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
    cv2.putText(
        picture,
        scene.label[:40],
        (8, height - 8),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (255, 255, 255),
        1,
    )
    if fault is SimFault.BLURRED:
        return np.asarray(cv2.GaussianBlur(picture, (0, 0), sigmaX=7), dtype=np.uint8)
    return picture


def render_burst(
    scene: SimScene,
    start: datetime,
    count: int,
    *,
    fps: float = 12.5,
    fault: SimFault = SimFault.NONE,
) -> list[Frame]:
    """`count` consecutive pictures from `start` at `fps` (empty when offline)."""
    if count < 0 or fps <= 0:
        raise ValueError("count must be >= 0 and fps > 0")
    pictures = []
    for index in range(count):
        picture = render_frame(scene, start + timedelta(seconds=index / fps), fault)
        if picture is None:
            return []
        pictures.append(picture)
    return pictures


class SimCameraFleet:
    """Every simulated camera and its current fault; safe to use from several threads."""

    def __init__(self, size: tuple[int, int] = DEFAULT_SIZE) -> None:
        self.size = size
        self._labels: dict[str, str] = {}
        self._scenes: dict[str, SimScene] = {}
        self._faults: dict[str, SimFault] = {}
        self._lock = threading.Lock()

    def add(self, device_id: str, label: str | None = None) -> None:
        """Register a camera (its scene is drawn on first use)."""
        with self._lock:
            self._labels[device_id] = label or device_id
            self._faults.setdefault(device_id, SimFault.NONE)

    def __contains__(self, device_id: object) -> bool:
        with self._lock:
            return device_id in self._labels

    def __len__(self) -> int:
        with self._lock:
            return len(self._labels)

    def device_ids(self) -> list[str]:
        """The registered camera ids."""
        with self._lock:
            return list(self._labels)

    def set_fault(self, device_id: str, fault: SimFault) -> None:
        """Make a camera show `fault` from now on (NONE repairs it)."""
        with self._lock:
            if device_id not in self._labels:
                raise KeyError(device_id)
            self._faults[device_id] = SimFault(fault)

    def fault(self, device_id: str) -> SimFault:
        """The camera's current fault."""
        with self._lock:
            return self._faults[device_id]

    def faulty(self) -> dict[str, SimFault]:
        """Cameras with a fault now."""
        with self._lock:
            return {d: f for d, f in self._faults.items() if f is not SimFault.NONE}

    def scene(self, device_id: str) -> SimScene:
        """The camera's scene; KeyError for an unknown camera."""
        with self._lock:
            scene = self._scenes.get(device_id)
            label = self._labels[device_id]
        if scene is None:
            scene = SimScene.create(device_id, label, self.size)
            with self._lock:
                scene = self._scenes.setdefault(device_id, scene)
        return scene

    def frame(self, device_id: str, at: datetime) -> Frame | None:
        """The camera's picture at `at` (None while it is offline)."""
        return render_frame(self.scene(device_id), at, self.fault(device_id))

    def burst(self, device_id: str, start: datetime, count: int, fps: float = 12.5) -> list[Frame]:
        """`count` pictures from `start` (empty while the camera is offline)."""
        return render_burst(
            self.scene(device_id), start, count, fps=fps, fault=self.fault(device_id)
        )
