"""ONVIF cameras: probe, PullPoint events with channel health, WS-Discovery, host pinning.

Pure modules: `parsers` (notifications → `DeviceEvent`s), `security` (host
pinning, credential stripping, clock offset), `soap` (request building),
`models` (value types); untrusted XML goes through the shared hardened parser
in `adapters.safexml`. The one I/O module is `client`; import it explicitly
(`from adapters.onvif.client import probe`) so that the pure parts can be used
without loading zeep.
"""

from adapters.onvif.models import (
    Candidate,
    ChannelHealth,
    DeviceInformation,
    MediaProfile,
    ProbeFailure,
    ProbeResult,
)
from adapters.onvif.parsers import (
    PARSERS,
    EventSignal,
    NotificationInterpreter,
    NotificationMessage,
    PropertyStateTracker,
    PullMessagesResult,
    SoapFault,
    UnknownTopicCounter,
    parse_pull_messages_response,
)
from adapters.onvif.security import (
    ForeignHostRefused,
    PinPolicy,
    clock_offset,
    pin_uri,
    strip_userinfo,
)
from adapters.safexml import XmlRefused, parse_untrusted_xml

__all__ = [
    "PARSERS",
    "Candidate",
    "ChannelHealth",
    "DeviceInformation",
    "EventSignal",
    "ForeignHostRefused",
    "MediaProfile",
    "NotificationInterpreter",
    "NotificationMessage",
    "PinPolicy",
    "ProbeFailure",
    "ProbeResult",
    "PropertyStateTracker",
    "PullMessagesResult",
    "SoapFault",
    "UnknownTopicCounter",
    "XmlRefused",
    "clock_offset",
    "parse_pull_messages_response",
    "parse_untrusted_xml",
    "pin_uri",
    "strip_userinfo",
]
