"""What went wrong talking to a camera, in classes a maintainer can act on."""

from __future__ import annotations

import socket
from collections.abc import Iterable

import zeep.exceptions

from adapters.onvif.http import CameraRequestError, ResponseTooLarge
from adapters.onvif.models import ProbeFailure
from adapters.onvif.security import ForeignHostRefused
from adapters.onvif.soapxml import SoapFault
from adapters.safexml import XmlRefused

__all__ = ["ProbeError", "classify_error"]


class ProbeError(Exception):
    """A probe or channel call failed; `failure` says what kind of failure."""

    def __init__(self, failure: ProbeFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure

    def __str__(self) -> str:
        return f"{self.failure.value}: {self.args[0]}"


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify_error(exc: BaseException) -> ProbeError:
    """Map whatever a camera call raised onto an operator-facing failure kind."""
    for error in _chain(exc):
        if isinstance(error, ProbeError):
            return error
        if isinstance(error, CameraRequestError):
            return ProbeError(error.failure, str(error))
        if isinstance(error, ForeignHostRefused):
            return ProbeError(ProbeFailure.REFUSED, str(error))
        if isinstance(error, (ResponseTooLarge, XmlRefused)):
            return ProbeError(ProbeFailure.PROTOCOL, str(error))
        if isinstance(error, SoapFault):
            kind = ProbeFailure.AUTH if error.is_auth_failure else ProbeFailure.PROTOCOL
            return ProbeError(kind, str(error))
        if isinstance(error, zeep.exceptions.Fault):
            fault = SoapFault(
                str(error.code or ""),
                tuple(str(getattr(s, "text", s)) for s in (error.subcodes or ())),
                str(error.message or ""),
            )
            kind = ProbeFailure.AUTH if fault.is_auth_failure else ProbeFailure.PROTOCOL
            return ProbeError(kind, str(fault))
        if isinstance(error, zeep.exceptions.TransportError):
            if error.status_code in (401, 403):
                return ProbeError(ProbeFailure.AUTH, f"HTTP {error.status_code} from camera")
            return ProbeError(ProbeFailure.PROTOCOL, f"HTTP {error.status_code}: unusable answer")
        if isinstance(error, (zeep.exceptions.Error, zeep.exceptions.XMLSyntaxError)):
            return ProbeError(ProbeFailure.PROTOCOL, f"{type(error).__name__}: {error}"[:300])
        if isinstance(error, TimeoutError):
            return ProbeError(ProbeFailure.TIMEOUT, "camera did not answer in time")
        if isinstance(error, (ConnectionError, socket.gaierror)):
            return ProbeError(ProbeFailure.UNREACHABLE, str(error))
    return ProbeError(ProbeFailure.PROTOCOL, f"{type(exc).__name__}: {exc}"[:300])
