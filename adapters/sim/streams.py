"""Addresses of simulated camera streams. Pure: no I/O.

A simulated camera is registered like a real one, with RTSP URLs, so the registry,
the patrol and the live view treat it the same way. Its URLs point at the reserved
host ``sim.invalid`` (RFC 2606: ``.invalid`` never resolves), which cannot reach a
real network by accident: whatever does not know the simulation sees an unreachable
camera, and a hub that runs the simulation answers these URLs with synthetic frames.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["SIM_STREAM_HOST", "sim_device_of", "sim_stream_urls"]

#: The host of every simulated stream URL.
SIM_STREAM_HOST = "sim.invalid"


def sim_stream_urls(device_id: str) -> list[str]:
    """The main and sub stream URLs of a simulated camera."""
    return [
        f"rtsp://{SIM_STREAM_HOST}/{device_id}/main",
        f"rtsp://{SIM_STREAM_HOST}/{device_id}/sub",
    ]


def sim_device_of(url: str) -> str | None:
    """The device id a simulated stream URL names, or None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("rtsp", "rtsps", "sim"):
        return None
    if parts.scheme.lower() == "sim":
        device = parts.netloc or parts.path.strip("/")
        return device or None
    if (parts.hostname or "").lower() != SIM_STREAM_HOST:
        return None
    device = parts.path.strip("/").split("/", 1)[0]
    return device or None
