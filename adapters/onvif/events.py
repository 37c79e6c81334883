"""PullPoint event channels: one per camera, thousands sharing one connection pool.

The channel speaks PullPoint SOAP directly over `CameraHttp` instead of
zeep's event service: the topic parsers work on the raw notification XML, the
subscription's reference parameters must be echoed verbatim, and zeep's
PullPointManager runs its own renewal tasks that would hide failures the
channel health has to count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from adapters.clock import utcnow
from adapters.onvif import soap
from adapters.onvif.answers import (
    SubscriptionTimes,
    parse_create_pull_point_response,
    parse_events_xaddr,
    parse_renew_response,
    parse_system_date_and_time,
)
from adapters.onvif.errors import ProbeError, classify_error
from adapters.onvif.http import DEFAULT_TIMEOUT, CameraHttp, CameraRequestError, ResponseTooLarge
from adapters.onvif.interpreter import NotificationInterpreter
from adapters.onvif.models import ChannelHealth, ProbeFailure
from adapters.onvif.notifications import parse_pull_messages_response
from adapters.onvif.security import (
    ForeignHostRefused,
    PinPolicy,
    clock_offset,
    format_host,
    pin_uri,
    redact_uri,
)
from adapters.onvif.soapxml import parse_soap_fault
from adapters.onvif.topics import PARSERS, TopicRegistry
from adapters.safexml import XmlRefused
from camera_registry.events import DeviceEvent, Severity

__all__ = [
    "EventChannelManager",
    "EventChannelSettings",
    "EventSubmitError",
    "EventSubscription",
]

logger = logging.getLogger(__name__)

Submit = Callable[[DeviceEvent], Awaitable[None]]
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class EventChannelSettings:
    """Timing of one camera's event channel."""

    subscription_lifetime: timedelta = timedelta(minutes=2)
    renew_before: timedelta = timedelta(seconds=30)
    pull_timeout: timedelta = timedelta(seconds=20)
    message_limit: int = 100
    call_timeout: float = DEFAULT_TIMEOUT
    backoff_initial: float = 1.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if self.renew_before >= self.subscription_lifetime:
            raise ValueError("renew_before must be shorter than subscription_lifetime")
        if self.pull_timeout >= self.subscription_lifetime - self.renew_before:
            raise ValueError("pull_timeout must leave time to renew before expiry")
        if not 0 < self.message_limit <= 1024:
            raise ValueError("message_limit must be 1..1024")
        if self.call_timeout <= 0 or self.backoff_initial <= 0:
            raise ValueError("timeouts and backoff must be positive")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be ≥ backoff_initial")


@dataclass(slots=True)
class _Progress:
    """A channel's changing health fields (updated in place on every pull)."""

    state: str = "stopped"
    subscribed_since: datetime | None = None
    last_successful_pull: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    pulls: int = 0
    renewals: int = 0
    renew_failures: int = 0
    resubscriptions: int = 0
    messages_total: int = 0


class _ChannelFailure(Exception):
    """The channel must re-subscribe; carries the operator-facing reason."""


@dataclass(slots=True)
class _Subscription:
    address: str
    reference_parameters: tuple[bytes, ...]
    created_at: datetime
    expires_at: datetime


class EventSubscription:
    """One camera's PullPoint event channel, as an async context manager.

    Subscribes, pulls in a loop, renews before expiry and re-subscribes with
    jittered exponential backoff on any failure. Events go to `submit`;
    `health()` returns a `ChannelHealth` snapshot at any time. The channel also
    submits `onvif.channel_lost` / `onvif.channel_restored` events so a camera
    that stops answering is visible as such.
    """

    def __init__(
        self,
        device_id: str,
        host: str,
        port: int,
        username: str,
        password: str,
        submit: Submit,
        *,
        events_xaddr: str | None = None,
        settings: EventChannelSettings | None = None,
        policy: PinPolicy = PinPolicy.REWRITE,
        http: CameraHttp | None = None,
        setup_limiter: asyncio.Semaphore | None = None,
        scheme: str = "http",
        interpreter: NotificationInterpreter | None = None,
        registry: TopicRegistry = PARSERS,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.device_id = device_id
        self.host = host
        self.port = port
        if scheme not in ("http", "https"):
            raise ValueError(f"an ONVIF camera is spoken to over http or https, not {scheme!r}")
        self.scheme = scheme
        self._credentials = soap.Credentials(username, password)
        self._submit = submit
        self._settings = settings or EventChannelSettings()
        self._policy = policy
        self._own_http = http is None
        self._http = http or CameraHttp()
        self._setup_limiter = setup_limiter
        self._interpreter = interpreter or NotificationInterpreter(device_id, registry=registry)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not security
        self._configured_events_xaddr = events_xaddr
        self._events_xaddr: str | None = None
        self._subscription: _Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._health = _Progress()
        # The same request every pull: built once.
        self._pull_request = soap.pull_messages(
            self._settings.pull_timeout, self._settings.message_limit
        )
        self._pull_deadline = (
            self._settings.call_timeout + self._settings.pull_timeout.total_seconds()
        )
        self._offset = timedelta(0)
        self._lost_reported = False

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        """Start the channel's task (idempotent)."""
        if self._task is None or self._task.done():
            self._update(state="starting")
            self._task = asyncio.create_task(self.run(), name=f"onvif-events-{self.device_id}")

    async def stop(self) -> None:
        """Stop pulling, unsubscribe (best effort, short) and release the connection pool."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._unsubscribe()
        self._update(state="stopped")
        if self._own_http:
            await self._http.aclose()

    def health(self) -> ChannelHealth:
        """A snapshot of this channel's health, with current per-topic counters."""
        progress = self._health
        return ChannelHealth(
            device_id=self.device_id,
            state=progress.state,
            subscribed_since=progress.subscribed_since,
            last_successful_pull=progress.last_successful_pull,
            last_error=progress.last_error,
            last_error_at=progress.last_error_at,
            consecutive_failures=progress.consecutive_failures,
            pulls=progress.pulls,
            renewals=progress.renewals,
            renew_failures=progress.renew_failures,
            resubscriptions=progress.resubscriptions,
            messages_total=progress.messages_total,
            messages_per_topic=self._interpreter.messages_per_topic,
            unknown_topics=self._interpreter.unknown_topics.counts(self.device_id),
            malformed_messages=self._interpreter.malformed,
            clock_offset=self._offset,
        )

    @property
    def pulls(self) -> int:
        """Successful pulls so far (cheaper than a whole `health()` snapshot)."""
        return self._health.pulls

    # -- the loop ----------------------------------------------------------

    async def run(self) -> None:
        """Run the channel until cancelled; failures lead to a backed-off re-subscribe."""
        while True:
            try:
                await self._subscribe()
                await self._pull_loop()
            except asyncio.CancelledError:
                raise
            except EventSubmitError:
                # The hub could not take an event: stop rather than drop events silently.
                logger.exception(
                    "camera %s: event submission failed, channel stops", self.device_id
                )
                raise
            except Exception as exc:  # any failure → count, report, back off, re-subscribe
                await self._on_failure(exc)

    async def _on_failure(self, exc: Exception) -> None:
        reason = str(classify_error(exc)) if not isinstance(exc, _ChannelFailure) else str(exc)
        failures = self._health.consecutive_failures + 1
        now = self._clock()
        self._update(
            state="backoff", last_error=reason, last_error_at=now, consecutive_failures=failures
        )
        logger.warning(
            "camera %s: event channel failed (%d in a row): %s", self.device_id, failures, reason
        )
        await self._unsubscribe()
        if not self._lost_reported:
            self._lost_reported = True
            await self._emit(self._channel_event("onvif.channel_lost", reason, now))
        delay = min(
            self._settings.backoff_max, self._settings.backoff_initial * 2 ** (failures - 1)
        )
        await asyncio.sleep(self._rng.uniform(delay / 2, delay))

    def _channel_event(self, kind: str, reason: str | None, now: datetime) -> DeviceEvent:
        payload: dict[str, Any] = {"host": self.host, "port": self.port}
        if reason:
            payload["reason"] = reason
        return DeviceEvent(
            time=now,
            device_id=self.device_id,
            kind=kind,
            severity=Severity.WARNING if kind == "onvif.channel_lost" else Severity.INFO,
            source="onvif",
            payload=payload,
        )

    async def _pull_loop(self) -> None:
        while True:
            subscription = self._subscription
            if subscription is None:  # only _unsubscribe clears it, and not while pulling
                raise _ChannelFailure("no subscription")
            if self._clock() >= subscription.expires_at - self._settings.renew_before:
                await self._renew(subscription)
            answer = await self._call(
                subscription.address,
                *self._pull_request,
                reference_parameters=subscription.reference_parameters,
                deadline=self._pull_deadline,
            )
            result = parse_pull_messages_response(answer)
            now = self._clock()
            if result.termination_time is not None and result.current_time is not None:
                # Some cameras extend the subscription on every pull; trust what they say.
                subscription.expires_at = now + (result.termination_time - result.current_time)
            progress = self._health
            progress.last_successful_pull = now
            progress.pulls += 1
            progress.messages_total += len(result.messages)
            progress.consecutive_failures = 0
            progress.state = "subscribed"
            if not (result.messages or result.malformed or self._interpreter.tracker.holds_any()):
                continue  # an idle pull: nothing to interpret, nothing to expire
            for event in self._interpreter.interpret(result, now):
                await self._emit(event)

    async def _emit(self, event: DeviceEvent) -> None:
        try:
            await self._submit(event)
        except Exception as exc:
            raise EventSubmitError(f"submit failed for {event.kind}: {exc}") from exc

    # -- SOAP steps --------------------------------------------------------

    async def _subscribe(self) -> None:
        self._update(state="starting")
        if self._setup_limiter is not None:
            async with self._setup_limiter:
                await self._create_subscription()
        else:
            await self._create_subscription()
        if self._health.subscribed_since is not None:
            self._update(resubscriptions=self._health.resubscriptions + 1)
        now = self._clock()
        self._update(state="subscribed", subscribed_since=now)
        if self._lost_reported:
            self._lost_reported = False
            await self._emit(self._channel_event("onvif.channel_restored", None, now))

    async def _create_subscription(self) -> None:
        device_url = f"{self.scheme}://{format_host(self.host)}:{self.port}/onvif/device_service"
        await self._sync_clock(device_url)
        if self._events_xaddr is None:
            advertised = self._configured_events_xaddr
            if advertised is None:
                answer = await self._call(device_url, *soap.get_capabilities_events())
                advertised = parse_events_xaddr(answer)
                if advertised is None:
                    raise _ChannelFailure("camera advertises no event service")
            self._events_xaddr = pin_uri(
                advertised, self.host, self.port, policy=self._policy, scheme=self.scheme
            )
        lifetime = self._settings.subscription_lifetime
        answer = await self._call(
            self._events_xaddr, *soap.create_pull_point_subscription(lifetime)
        )
        address, parameters, times = parse_create_pull_point_response(answer)
        pinned = pin_uri(address, self.host, self.port, policy=self._policy, scheme=self.scheme)
        now = self._clock()
        self._subscription = _Subscription(
            pinned, parameters, now, now + _lifetime(times, lifetime)
        )
        logger.info("camera %s: event subscription created at %s", self.device_id, pinned)

    async def _sync_clock(self, device_url: str) -> None:
        action, body = soap.get_system_date_and_time()
        sent = self._clock()
        try:
            answer = await self._call(device_url, action, body, signed=False)
        except ProbeError as exc:
            if exc.failure is not ProbeFailure.AUTH:
                raise
            answer = await self._call(device_url, action, body)
        received = self._clock()
        device_utc = parse_system_date_and_time(answer)
        if device_utc is not None:
            self._offset = clock_offset(device_utc, sent, received)

    async def _renew(self, subscription: _Subscription) -> None:
        lifetime = self._settings.subscription_lifetime
        try:
            answer = await self._call(
                subscription.address,
                *soap.renew(lifetime),
                reference_parameters=subscription.reference_parameters,
            )
            times = parse_renew_response(answer)
        except Exception as exc:
            self._update(renew_failures=self._health.renew_failures + 1)
            raise _ChannelFailure(f"renew failed: {classify_error(exc)}") from exc
        subscription.expires_at = self._clock() + _lifetime(times, lifetime)
        self._update(renewals=self._health.renewals + 1)

    async def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        try:
            await self._call(
                subscription.address,
                *soap.unsubscribe(),
                reference_parameters=subscription.reference_parameters,
                deadline=min(2.0, self._settings.call_timeout),
            )
        except Exception as exc:  # the camera may already have dropped it; nothing to undo
            logger.debug("camera %s: unsubscribe failed: %s", self.device_id, classify_error(exc))

    async def _call(
        self,
        url: str,
        action: str,
        body: str,
        *,
        reference_parameters: tuple[bytes, ...] = (),
        deadline: float | None = None,
        signed: bool = True,
    ) -> bytes:
        security = None
        if signed:
            created = self._clock() + self._offset
            security = soap.username_token(self._credentials, secrets.token_bytes(16), created)
        document = soap.envelope(
            body,
            action=action,
            to=url,
            security=security,
            reference_parameters=reference_parameters,
            message_id=f"urn:uuid:{secrets.token_hex(16)}",
        )
        try:
            answer = await self._http.post(
                url,
                document,
                {"Content-Type": soap.content_type(action)},
                pinned=(self.host, self.port),
                scheme=self.scheme,
                deadline=deadline or self._settings.call_timeout,
            )
        except (CameraRequestError, ResponseTooLarge, ForeignHostRefused) as exc:
            raise classify_error(exc) from exc
        if answer.status != 200:
            fault = None
            with contextlib.suppress(XmlRefused):
                fault = parse_soap_fault(answer.body) if answer.body.strip() else None
            if fault is not None:
                raise classify_error(fault) from fault
            kind = ProbeFailure.AUTH if answer.status in (401, 403) else ProbeFailure.PROTOCOL
            raise ProbeError(kind, f"HTTP {answer.status} from {redact_uri(url)}")
        return answer.body

    def _update(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self._health, name, value)


class EventSubmitError(Exception):
    """`submit` raised: the channel stops instead of dropping events (cause attached)."""


def _lifetime(times: SubscriptionTimes, requested: timedelta) -> timedelta:
    remaining = times.remaining()
    if remaining is None or remaining <= timedelta(0):
        return requested
    return min(remaining, requested * 10)


# ---------------------------------------------------------------------------
# Many cameras


class EventChannelManager:
    """Event channels for thousands of cameras: one task each, one connection pool.

    Subscription set-up (clock read, event service lookup, CreatePullPoint) is
    bounded by a semaphore so a hub restart does not storm the network; the
    long-polls themselves are bounded by the pool's connection limit.
    """

    def __init__(
        self,
        submit: Submit,
        *,
        settings: EventChannelSettings | None = None,
        max_concurrent_setups: int = 32,
        http: CameraHttp | None = None,
        registry: TopicRegistry = PARSERS,
        clock: Clock = utcnow,
    ) -> None:
        if max_concurrent_setups <= 0:
            raise ValueError("max_concurrent_setups must be positive")
        self._submit = submit
        self._settings = settings or EventChannelSettings()
        self._setup_limiter = asyncio.Semaphore(max_concurrent_setups)
        self._own_http = http is None
        self._http = http or CameraHttp()
        self._registry = registry
        self._clock = clock
        self._channels: dict[str, EventSubscription] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __len__(self) -> int:
        return len(self._channels)

    def add(
        self,
        device_id: str,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        events_xaddr: str | None = None,
        policy: PinPolicy = PinPolicy.REWRITE,
        scheme: str = "http",
    ) -> None:
        """Start the event channel of one camera (replacing none: remove first)."""
        if device_id in self._channels:
            raise ValueError(f"camera {device_id} already has an event channel")
        channel = EventSubscription(
            device_id,
            host,
            port,
            username,
            password,
            self._submit,
            events_xaddr=events_xaddr,
            settings=self._settings,
            policy=policy,
            http=self._http,
            setup_limiter=self._setup_limiter,
            scheme=scheme,
            registry=self._registry,
            clock=self._clock,
        )
        self._channels[device_id] = channel
        channel.start()

    async def remove(self, device_id: str) -> None:
        """Stop and forget one camera's channel."""
        channel = self._channels.pop(device_id, None)
        if channel is not None:
            await channel.stop()

    def pull_counts(self) -> dict[str, int]:
        """Successful pulls of every channel, by device id (cheap: no health snapshots)."""
        return {device_id: channel.pulls for device_id, channel in self._channels.items()}

    def health(self) -> dict[str, ChannelHealth]:
        """Health snapshot of every channel, by device id."""
        return {device_id: channel.health() for device_id, channel in self._channels.items()}

    async def close(self) -> None:
        """Stop every channel and close the shared pool."""
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(channel.stop() for channel in channels))
        if self._own_http:
            await self._http.aclose()
