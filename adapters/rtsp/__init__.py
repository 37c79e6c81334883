"""RTSP: stream probe with evidence snapshot, and video-quality diagnosis."""

from adapters.rtsp.models import BgrFrame, ProbeFailure, StreamProbe, redact_text, redact_url
from adapters.rtsp.probe import ProbePool, probe_stream

__all__ = [
    "BgrFrame",
    "ProbeFailure",
    "ProbePool",
    "StreamProbe",
    "probe_stream",
    "redact_text",
    "redact_url",
]
