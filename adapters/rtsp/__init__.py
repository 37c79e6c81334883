"""RTSP: stream probe with evidence snapshot, and video-quality diagnosis."""

from adapters.rtsp.models import BgrFrame, ProbeFailure, StreamProbe, redact_text, redact_url
from adapters.rtsp.probe import ProbePool, jpeg_of, probe_of_pictures, probe_stream
from adapters.rtsp.vqd import (
    Check,
    Diagnosis,
    SceneReference,
    Verdict,
    VqdBaseline,
    VqdThresholds,
    diagnose,
    learn_baseline,
    scene_reference,
)

__all__ = [
    "BgrFrame",
    "Check",
    "Diagnosis",
    "ProbeFailure",
    "ProbePool",
    "SceneReference",
    "StreamProbe",
    "Verdict",
    "VqdBaseline",
    "VqdThresholds",
    "diagnose",
    "jpeg_of",
    "learn_baseline",
    "probe_of_pictures",
    "probe_stream",
    "redact_text",
    "redact_url",
    "scene_reference",
]
