"""Pure parsing of ONVIF traffic into `DeviceEvent`s: the package's parsing surface.

The work is done in small modules, re-exported here:
`soapxml` (SOAP documents by local names, faults), `answers` (subscription,
clock, event-service and WS-Discovery answers), `notifications`
(PullMessages → `NotificationMessage`s), `topics` (the topic → parser
registry, standard and vendor topics), `mapping` (site-configured topic
mappings) and `interpreter` (signals → `DeviceEvent`s per device, hold times,
unknown-topic counting).
"""

from __future__ import annotations

from adapters.onvif.answers import (
    SubscriptionTimes,
    parse_create_pull_point_response,
    parse_events_xaddr,
    parse_probe_matches,
    parse_renew_response,
    parse_subscription_times,
    parse_system_date_and_time,
)
from adapters.onvif.interpreter import (
    DEFAULT_HOLD_TIME,
    DEFAULT_HOLD_TIMES,
    NotificationInterpreter,
    PropertyStateTracker,
    UnknownTopicCounter,
    to_device_event,
)
from adapters.onvif.notifications import (
    NotificationMessage,
    PullMessagesResult,
    normalize_topic,
    parse_bool,
    parse_pull_messages_response,
)
from adapters.onvif.soapxml import SoapFault, parse_soap_fault
from adapters.onvif.topics import (
    PARSERS,
    EventSignal,
    NotificationRejected,
    TopicRegistry,
)
from adapters.safexml import XmlRefused

__all__ = [
    "DEFAULT_HOLD_TIME",
    "DEFAULT_HOLD_TIMES",
    "PARSERS",
    "EventSignal",
    "NotificationInterpreter",
    "NotificationMessage",
    "NotificationRejected",
    "PropertyStateTracker",
    "PullMessagesResult",
    "SoapFault",
    "SubscriptionTimes",
    "TopicRegistry",
    "UnknownTopicCounter",
    "XmlRefused",
    "normalize_topic",
    "parse_bool",
    "parse_create_pull_point_response",
    "parse_events_xaddr",
    "parse_probe_matches",
    "parse_pull_messages_response",
    "parse_renew_response",
    "parse_soap_fault",
    "parse_subscription_times",
    "parse_system_date_and_time",
    "to_device_event",
]
