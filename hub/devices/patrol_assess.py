"""What one patrol probe means for a camera: judged, learned from, turned into what to store.

`judge` reads a probe (and its video-quality diagnosis) as evidence for the camera's
health machine; `ProbeAssessor.assess` runs on a VQD worker thread and prepares the
sample, transition, evidence snapshot, baseline and events of one probe, which the
patrol service then stores in one transaction and announces.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cv2

from adapters.rtsp import (
    Check,
    Diagnosis,
    ProbeFailure,
    SceneReference,
    StreamProbe,
    VqdBaseline,
    VqdThresholds,
    diagnose,
    learn_baseline,
    scene_reference,
)
from camera_registry.events import DeviceEvent, Severity
from camera_registry.health import Evidence, HealthTracker, Transition, transition_event
from camera_registry.models import HealthState
from hub.devices.health_storage import (
    BaselineRow,
    EvidenceImage,
    HealthSampleRow,
)
from hub.devices.patrol_config import PatrolSettings
from hub.devices.storage import PatrolTarget

__all__ = [
    "CREDENTIALS_ACCEPTED_KIND",
    "CREDENTIALS_FAULT",
    "CREDENTIALS_REASON_CODE",
    "CREDENTIALS_REJECTED_KIND",
    "SOURCE",
    "Assessment",
    "CameraMemory",
    "ProbeAssessor",
    "evidence_json",
    "judge",
]

SOURCE = "patrol"
#: The fault (and health reason code) of a camera that refuses the stored login.
CREDENTIALS_FAULT = "credentials_rejected"
CREDENTIALS_REASON_CODE = "auth.credentials_rejected"
CREDENTIALS_REJECTED_KIND = "device.credentials_rejected"
CREDENTIALS_ACCEPTED_KIND = "device.credentials_accepted"
_SEVERITY: dict[str, Severity] = {
    Check.SIGNAL_LOSS: Severity.MAJOR,
    Check.FROZEN: Severity.MAJOR,
    Check.OCCLUSION: Severity.MAJOR,
    Check.SCENE_CHANGE: Severity.MAJOR,
}


def judge(probe: StreamProbe, diagnosis: Diagnosis | None, *, has_login: bool = True) -> Evidence:
    """What one probe says about a camera: ONLINE, DEGRADED (with faults) or OFFLINE.

    A refused login is DEGRADED with the single fault `credentials_rejected`: the
    camera answers, the hub cannot see its picture, and nothing about the picture
    is judged (there is none).
    """
    if probe.failure is ProbeFailure.AUTH_FAILED:
        why = (
            "the camera refused the stored login"
            if has_login
            else "the camera demands a login and none is stored"
        )
        return Evidence(
            HealthState.DEGRADED,
            f"credentials rejected: {why}; check the stored login",
            source=SOURCE,
            faults=(CREDENTIALS_FAULT,),
            details={
                "code": CREDENTIALS_REASON_CODE,
                "params": {"login_stored": has_login},
                "failure": probe.failure.value,
            },
        )
    if not probe.reachable:
        failure = probe.failure.value if probe.failure else "failed"
        return Evidence(
            HealthState.OFFLINE,
            f"{failure}: {probe.error or 'no answer'}"[:500],
            source=SOURCE,
            details={
                "failure": failure,
                "code": f"probe.{failure}",
                "params": {"error": (probe.error or "")[:200]},
            },
        )
    if diagnosis is not None and not diagnosis.ok:
        reason = diagnosis.explain()
        if not probe.ok and probe.failure is not None:
            reason = f"the camera answers but sends no picture ({probe.failure.value}): {reason}"
        faults = tuple(str(f) for f in diagnosis.faults)
        return Evidence(
            HealthState.DEGRADED,
            reason[:500],
            source=SOURCE,
            faults=faults,
            details={
                "code": f"vqd.{faults[0]}" if len(faults) == 1 else "vqd.faults",
                "params": {"faults": ", ".join(faults), "count": len(faults)},
            },
        )
    size = f"{probe.width}x{probe.height}" if probe.width and probe.height else "unknown size"
    return Evidence(
        HealthState.ONLINE,
        f"picture ok ({probe.codec or 'video'} {size}, {probe.frames_decoded} frames)",
        source=SOURCE,
        details={
            "code": "picture.ok",
            "params": {
                "codec": probe.codec or "video",
                "size": size,
                "frames": probe.frames_decoded,
            },
        },
    )


@dataclass(slots=True)
class CameraMemory:
    """What the patrol remembers about one camera between probes."""

    tracker: HealthTracker
    active_faults: tuple[str, ...] = ()
    baseline: VqdBaseline | None = None
    reference: SceneReference | None = None
    reference_png: bytes | None = None
    last_evidence_at: datetime | None = None


@dataclass(slots=True)
class Assessment:
    """One probe's outcome, ready to store and announce."""

    sample: HealthSampleRow
    transition: Transition | None
    evidence: EvidenceImage | None
    baseline: BaselineRow | None
    reason: str
    events: list[DeviceEvent] = field(default_factory=list)


class ProbeAssessor:
    """Judges probes with the patrol's settings (thread-safe: state lives in `CameraMemory`)."""

    def __init__(self, settings: PatrolSettings) -> None:
        self.settings = settings

    def assess(
        self,
        target: PatrolTarget,
        camera: CameraMemory,
        probe: StreamProbe,
        run_id: int | None,
        at: datetime,
    ) -> Assessment:
        """Diagnose, judge and prepare what to store (runs on a VQD worker thread)."""
        s = self.settings
        diagnosis: Diagnosis | None = None
        if probe.reachable and probe.failure is not ProbeFailure.AUTH_FAILED:
            diagnosis = diagnose(
                probe.frames,
                s.thresholds,
                camera.baseline,
                camera.reference,
                expected_frames=probe.frames_requested or s.frames,
            )
        evidence = judge(probe, diagnosis, has_login=target.credentials is not None)
        baseline_row = self._learn(target.device_id, camera, probe, diagnosis, s.thresholds)
        transition = camera.tracker.observe(evidence.observed, evidence, at)
        status = camera.tracker.status()
        confirmed_faults: tuple[str, ...] = ()
        if evidence.observed is HealthState.DEGRADED and (
            status.consecutive_faults >= s.policy.faults_to_degrade
        ):
            confirmed_faults = evidence.faults
        # The login opened again (the camera answered past it): that fault is over
        # even if a picture fault remains.
        login_back = (
            CREDENTIALS_FAULT in camera.active_faults
            and probe.reachable
            and probe.failure is not ProbeFailure.AUTH_FAILED
        )
        if login_back:
            camera.active_faults = tuple(f for f in camera.active_faults if f != CREDENTIALS_FAULT)
        new_faults = tuple(f for f in confirmed_faults if f not in camera.active_faults)
        recovered = evidence.observed is HealthState.ONLINE and bool(camera.active_faults)

        snapshot = self._evidence_for(target.device_id, camera, probe, at, new_faults, transition)
        evidence_id = snapshot.id if snapshot is not None else None
        events: list[DeviceEvent] = []
        if login_back:
            events.append(
                DeviceEvent(
                    time=at,
                    device_id=target.device_id,
                    kind=CREDENTIALS_ACCEPTED_KIND,
                    severity=Severity.INFO,
                    source=SOURCE,
                    payload={"explanation": "the camera accepts the stored login again"},
                )
            )
        for fault in new_faults:
            events.append(self._fault_event(target, diagnosis, fault, evidence_id, at))
        if recovered:
            events.append(
                DeviceEvent(
                    time=at,
                    device_id=target.device_id,
                    kind="vqd.ok",
                    severity=Severity.INFO,
                    source=SOURCE,
                    payload={
                        "recovered": list(camera.active_faults),
                        "explanation": evidence.reason,
                        "evidence_id": str(evidence_id) if evidence_id else None,
                    },
                )
            )
        if confirmed_faults:
            # A fault stays active until the whole picture is fine again (vqd.ok):
            # its alarm closes only then, so a fault that comes and goes while
            # others remain is not announced twice.
            camera.active_faults = tuple(dict.fromkeys((*camera.active_faults, *new_faults)))
        elif recovered:
            camera.active_faults = ()
        if transition is not None:
            events.append(self._transition_event(transition, evidence_id))
        sample = HealthSampleRow(
            time=at,
            device_id=target.device_id,
            ok=probe.ok,
            observed=evidence.observed.value,
            failure=probe.failure.value if probe.failure else None,
            error=probe.error,
            url=probe.url,
            open_latency_ms=(
                round(probe.open_latency_s * 1000, 1) if probe.open_latency_s is not None else None
            ),
            codec=probe.codec,
            width=probe.width,
            height=probe.height,
            fps=probe.fps,
            frames=probe.frames_decoded,
            verdicts=[_verdict_dict(v) for v in diagnosis.verdicts] if diagnosis else [],
            faults=list(evidence.faults),
            evidence_id=evidence_id,
            patrol_id=run_id,
        )
        return Assessment(sample, transition, snapshot, baseline_row, evidence.reason, events)

    def _learn(
        self,
        device_id: str,
        camera: CameraMemory,
        probe: StreamProbe,
        diagnosis: Diagnosis | None,
        thresholds: VqdThresholds,
    ) -> BaselineRow | None:
        if diagnosis is None or not diagnosis.ok or not probe.frames:
            return None
        camera.baseline = learn_baseline(camera.baseline, diagnosis)
        if camera.reference is None:
            camera.reference = scene_reference(probe.frames[-1], thresholds)
            encoded, png = cv2.imencode(".png", camera.reference.thumbnail)
            camera.reference_png = bytes(png.tobytes()) if encoded else None
        baseline = camera.baseline
        return BaselineRow(
            device_id,
            baseline.sharpness if baseline else None,
            baseline.samples if baseline else 0,
            camera.reference_png,
        )

    def _evidence_for(
        self,
        device_id: str,
        camera: CameraMemory,
        probe: StreamProbe,
        at: datetime,
        new_faults: tuple[str, ...],
        transition: Transition | None,
    ) -> EvidenceImage | None:
        if probe.snapshot_jpeg is None:
            return None
        faulty = bool(camera.active_faults or new_faults)
        refresh = (
            self.settings.fault_evidence_refresh_s if faulty else self.settings.evidence_refresh_s
        )
        last = camera.last_evidence_at
        stale = last is None or (at - last).total_seconds() >= refresh
        if not (new_faults or stale or transition is not None):
            return None
        camera.last_evidence_at = at
        return EvidenceImage(uuid.uuid4(), device_id, probe.snapshot_jpeg, at, SOURCE)

    def _fault_event(
        self,
        target: PatrolTarget,
        diagnosis: Diagnosis | None,
        fault: str,
        evidence_id: uuid.UUID | None,
        at: datetime,
    ) -> DeviceEvent:
        if fault == CREDENTIALS_FAULT:
            return DeviceEvent(
                time=at,
                device_id=target.device_id,
                kind=CREDENTIALS_REJECTED_KIND,
                severity=Severity.WARNING,
                source=SOURCE,
                payload={
                    "code": CREDENTIALS_REASON_CODE,
                    "login_stored": target.credentials is not None,
                    "protocol": "rtsp",
                    "explanation": "the camera refuses the stored login; check it",
                },
            )
        payload: dict[str, Any] = {
            "check": fault,
            "evidence_id": str(evidence_id) if evidence_id else None,
        }
        if diagnosis is not None:
            with contextlib.suppress(KeyError):
                verdict = diagnosis.verdict(fault)
                payload.update(
                    score=verdict.score,
                    threshold=verdict.threshold,
                    explanation=verdict.explanation,
                )
        return DeviceEvent(
            time=at,
            device_id=target.device_id,
            kind=f"vqd.{fault}",
            severity=_SEVERITY.get(fault, Severity.WARNING),
            source=SOURCE,
            payload=payload,
        )

    @staticmethod
    def _transition_event(transition: Transition, evidence_id: uuid.UUID | None) -> DeviceEvent:
        return transition_event(
            transition, SOURCE, {"evidence_id": str(evidence_id) if evidence_id else None}
        )


def _verdict_dict(verdict: Any) -> dict[str, Any]:
    return {
        "check": str(verdict.name),
        "ok": bool(verdict.ok),
        "score": float(verdict.score),
        "threshold": float(verdict.threshold),
        "explanation": verdict.explanation,
        "judged": bool(verdict.judged),
    }


def evidence_json(transition: Transition, evidence_id: uuid.UUID | None) -> dict[str, Any]:
    evidence = transition.evidence
    if evidence is None:
        return {}
    return {
        "observed": evidence.observed.value,
        "source": evidence.source,
        "reason": evidence.reason,
        "faults": list(evidence.faults),
        "details": dict(evidence.details),
        "evidence_id": str(evidence_id) if evidence_id else None,
    }
