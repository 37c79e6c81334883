"""MQTT 5 shared subscriptions: which filters a hub node of a cluster subscribes to.

With `shared_group` set, every filter of the topic scheme is subscribed as
`$share/<group>/<filter>`: the broker hands each message to one node of the group,
which stores it and acknowledges it after its commit, as a single hub does.

Command acknowledgements are also subscribed without sharing, as *observer*
copies at QoS 0: a broadcast command waits on the node that sent it, and the
shared copy of the unit's answer may go to another node (which stores it). The
observer copy only completes the waiting command; it is never stored. MQTT 5
subscription identifiers tell the copies apart.

The filters and packet properties are pure; `subscribe` only queues the packets on
a paho client (its network thread sends them).
"""

from __future__ import annotations

from collections.abc import Iterable

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from adapters.mqtt.models import MessageType, MqttSettings, VendorMapping
from adapters.mqtt.topics import subscriptions

__all__ = [
    "OBSERVER_SUBSCRIPTION_ID",
    "SHARED_SUBSCRIPTION_ID",
    "connect_properties",
    "disconnect_properties",
    "is_observer_copy",
    "node_client_id",
    "observer_filters",
    "shared_filters",
    "subscribe",
]

#: Subscription identifier of the shared (stored, acknowledged) filters.
SHARED_SUBSCRIPTION_ID = 1
#: Subscription identifier of the observer (never stored) filters.
OBSERVER_SUBSCRIPTION_ID = 2


def shared_filters(group: str, prefix: str, mappings: tuple[VendorMapping, ...] = ()) -> list[str]:
    """Every filter of the scheme (and of the vendor mappings) shared in `group`."""
    return [f"$share/{group}/{topic}" for topic in subscriptions(prefix, mappings)]


def observer_filters(prefix: str) -> list[str]:
    """What every node receives whatever the sharing: the units' command acknowledgements."""
    return [f"{prefix}/+/{MessageType.COMMAND_ACK.value}"]


def is_observer_copy(subscription_ids: Iterable[int]) -> bool:
    """True when a message arrived only through the observer subscription."""
    ids = set(subscription_ids)
    return OBSERVER_SUBSCRIPTION_ID in ids and SHARED_SUBSCRIPTION_ID not in ids


def node_client_id(client_id: str, node_id: str) -> str:
    """The client id of one node of a cluster: its own session at the broker, the same
    across its restarts (a shared session per node keeps what was sent to it)."""
    return f"{client_id}-{node_id}"


def connect_properties(settings: MqttSettings) -> Properties | None:
    """MQTT 5 CONNECT properties: the persistent session's expiry and the in-flight window."""
    if settings.protocol != "5":
        return None
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = settings.session_expiry_s
    properties.ReceiveMaximum = settings.receive_maximum
    return properties


def disconnect_properties(settings: MqttSettings, end_session: bool) -> Properties | None:
    """MQTT 5 DISCONNECT properties: expiry 0 deletes the session at the broker."""
    if not end_session or settings.protocol != "5":
        return None
    properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    return properties


def subscribe(client: paho.Client, settings: MqttSettings, *, drain_only: bool) -> set[int]:
    """Queue the session's SUBSCRIBE (or, for a drain, UNSUBSCRIBE) packets; their ids.

    Without sharing: every filter at the configured QoS. Shared: the shared filters
    (stored, acknowledged after commit) and the observer ones (QoS 0, never stored),
    each with its subscription identifier. A drain of another node's session
    unsubscribes the shared filters, so the broker routes nothing new to it.
    """
    group = settings.shared_group
    if group is None:
        topics = subscriptions(settings.topic_prefix, settings.vendor_mappings)
        if settings.protocol != "5":
            levels: list[tuple[str, int]] = [(topic, settings.qos) for topic in topics]
            _, mid = client.subscribe(levels)
            return _ids(mid)
        # retainHandling=1: retained messages only for a new subscription, not on every
        # reconnect of the persistent session.
        options = SubscribeOptions(qos=settings.qos, retainHandling=1)
        _, mid = client.subscribe([(topic, options) for topic in topics])
        return _ids(mid)
    shared = shared_filters(group, settings.topic_prefix, settings.vendor_mappings)
    if drain_only:
        _, mid = client.unsubscribe(shared)
        return _ids(mid)
    mids: set[int] = set()
    for topics, qos, identifier in (
        (shared, settings.qos, SHARED_SUBSCRIPTION_ID),
        (observer_filters(settings.topic_prefix), 0, OBSERVER_SUBSCRIPTION_ID),
    ):
        properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
        properties.SubscriptionIdentifier = identifier
        # A shared subscription is never sent retained messages when it is made
        # (MQTT 5, 4.8.2), so no retain handling is needed on it.
        options = SubscribeOptions(qos=qos)
        _, mid = client.subscribe([(topic, options) for topic in topics], properties=properties)
        mids |= _ids(mid)
    return mids


def _ids(mid: int | None) -> set[int]:
    # paho gives no packet id when the client is not connected (nothing was queued).
    return set() if mid is None else {mid}
