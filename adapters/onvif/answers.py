"""Pure parsing of a camera's SOAP answers: subscriptions, clock, event service, discovery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from adapters.onvif.models import Candidate
from adapters.onvif.soapxml import body_of, checked_body, first, local_name, text_of
from adapters.safexml import XmlRefused, parse_untrusted_xml, parse_xs_datetime

__all__ = [
    "SubscriptionTimes",
    "parse_create_pull_point_response",
    "parse_events_xaddr",
    "parse_probe_matches",
    "parse_renew_response",
    "parse_subscription_times",
    "parse_system_date_and_time",
]


@dataclass(frozen=True, slots=True)
class SubscriptionTimes:
    """CurrentTime / TerminationTime as the camera reported them."""

    current_time: datetime | None
    termination_time: datetime | None

    def remaining(self) -> timedelta | None:
        """Subscription lifetime left, measured on the camera's own clock."""
        if self.current_time is None or self.termination_time is None:
            return None
        return self.termination_time - self.current_time


def parse_subscription_times(element: Any) -> SubscriptionTimes:
    """Read CurrentTime/TerminationTime children of a subscription answer element."""
    return SubscriptionTimes(
        current_time=parse_xs_datetime(text_of(first(element, "CurrentTime"))),
        termination_time=parse_xs_datetime(text_of(first(element, "TerminationTime"))),
    )


def parse_create_pull_point_response(
    data: bytes,
) -> tuple[str, tuple[bytes, ...], SubscriptionTimes]:
    """Subscription address, reference parameters (raw XML to echo) and times."""
    body = checked_body(data)
    response = first(body, "CreatePullPointSubscriptionResponse")
    if response is None:
        raise XmlRefused("answer is not a CreatePullPointSubscriptionResponse")
    reference = first(response, "SubscriptionReference")
    address = text_of(first(reference, "Address")) if reference is not None else None
    if not address:
        raise XmlRefused("subscription answer without an address")
    parameters: list[bytes] = []
    params_el = first(reference, "ReferenceParameters") if reference is not None else None
    if params_el is not None:
        for child in params_el:
            if isinstance(child.tag, str) and len(parameters) < 8:
                parameters.append(etree.tostring(child))
    return address, tuple(parameters), parse_subscription_times(response)


def parse_renew_response(data: bytes) -> SubscriptionTimes:
    """Parse a RenewResponse; a fault raises `SoapFault`."""
    body = checked_body(data)
    response = first(body, "RenewResponse")
    if response is None:
        raise XmlRefused("answer is not a RenewResponse")
    return parse_subscription_times(response)


def parse_system_date_and_time(data: bytes) -> datetime | None:
    """The camera's UTC clock from a GetSystemDateAndTimeResponse (None if absent)."""
    body = checked_body(data)
    utc = first(body, "GetSystemDateAndTimeResponse", "SystemDateAndTime", "UTCDateTime")
    if utc is None:
        return None
    parts: dict[str, int] = {}
    for group, names in (
        ("Date", ("Year", "Month", "Day")),
        ("Time", ("Hour", "Minute", "Second")),
    ):
        for name in names:
            text = text_of(first(utc, group, name))
            if text is None or not text.isdigit():
                return None
            parts[name] = int(text)
    try:
        return datetime(
            parts["Year"],
            parts["Month"],
            parts["Day"],
            parts["Hour"],
            parts["Minute"],
            parts["Second"],
            tzinfo=UTC,
        )
    except ValueError:
        return None


def parse_events_xaddr(data: bytes) -> str | None:
    """The event service XAddr from a GetCapabilities or GetServices answer."""
    body = checked_body(data)
    capabilities = first(body, "GetCapabilitiesResponse", "Capabilities")
    if capabilities is not None:
        return text_of(first(capabilities, "Events", "XAddr"))
    services = first(body, "GetServicesResponse")
    if services is not None:
        for service in services:
            if text_of(first(service, "Namespace")) == "http://www.onvif.org/ver10/events/wsdl":
                return text_of(first(service, "XAddr"))
    return None


def parse_probe_matches(data: bytes, responder: str | None = None) -> list[Candidate]:
    """Candidates from a WS-Discovery ProbeMatches message."""
    body = body_of(parse_untrusted_xml(data, max_bytes=256 * 1024))
    matches = first(body, "ProbeMatches")
    candidates: list[Candidate] = []
    if matches is None:
        return candidates
    for match in matches:
        if local_name(match) != "ProbeMatch":
            continue
        endpoint = text_of(first(match, "EndpointReference", "Address"))
        if not endpoint:
            continue
        candidates.append(
            Candidate(
                endpoint=endpoint,
                xaddrs=tuple((text_of(first(match, "XAddrs")) or "").split()),
                scopes=tuple((text_of(first(match, "Scopes")) or "").split()),
                types=tuple((text_of(first(match, "Types")) or "").split()),
                responder=responder,
            )
        )
    return candidates
