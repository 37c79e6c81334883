"""Live view for the console: who may watch which camera, and the relay that serves it.

The browser names a camera and sends a WebRTC offer. The hub checks role and
jurisdiction, builds the camera's RTSP URL *with* its decrypted login here (it is
never sent out, logged or stored), records the start in the audit log, and asks
the relay for an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.webrtc import LiveAnswer, LiveLimits, LiveRefused, LiveRelay, SourceOpener
from camera_registry.models import Credentials
from camera_registry.urls import with_credentials
from hub.auth import audit_storage as audit_log
from hub.auth.principal import Principal
from hub.config import LiveSettings
from hub.devices.storage import camera_source
from hub.storage import SqlStore

__all__ = ["CameraNotVisible", "CredentialOpener", "LiveRefused", "LiveViews"]

log = logging.getLogger(__name__)

#: The source URL of a device without RTSP URLs (e.g. `gb28181://<channel>`), or None.
OtherSource = Callable[[str], Awaitable[str | None]]
#: Decrypts a device's sealed credentials (`hub.crypto.CredentialCipher.open`).
CredentialOpener = Callable[[str, bytes], Credentials]


class CameraNotVisible(LookupError):
    """No such camera for this caller (missing, outside the scope, or not a stream)."""


@dataclass(frozen=True, slots=True)
class LiveStart:
    """An admitted viewer."""

    answer: LiveAnswer
    camera_id: str


class LiveViews:
    """Admits viewers by role and scope and relays the camera to them."""

    def __init__(
        self,
        store: SqlStore,
        settings: LiveSettings,
        *,
        open_credentials: CredentialOpener | None = None,
    ) -> None:
        self.store = store
        self.relay = LiveRelay(
            LiveLimits(
                per_camera=min(settings.max_viewers_per_camera, settings.max_viewers_total),
                total=settings.max_viewers_total,
            ),
            passthrough=settings.passthrough_h264,
            idle_close_s=settings.idle_close_seconds,
        )
        self._open_credentials = open_credentials
        self._other_sources: list[OtherSource] = []

    def add_source(self, opener: SourceOpener, url_for: OtherSource) -> None:
        """Serve devices without RTSP URLs from another protocol: `url_for` names the
        source of a device (None: not its device), `opener` plays such URLs."""
        self.relay.add_source(opener)
        self._other_sources.append(url_for)

    async def stop(self) -> None:
        """Close every viewer and camera pull."""
        await self.relay.close()

    async def _source_url(self, principal: Principal, camera_id: str) -> str:
        async with self.store.reading() as tx:
            source = await camera_source(tx, camera_id)
        if source is None or not principal.can_see(source.jurisdiction_path):
            raise CameraNotVisible(camera_id)
        if not source.rtsp_urls and source.enabled:
            for other_source in self._other_sources:
                url = await other_source(camera_id)
                if url is not None:
                    return url
        if not source.rtsp_urls or not source.enabled:
            raise LiveRefused("stream_unavailable", "this device has no live stream")
        url = source.rtsp_urls[0]
        if source.sealed_credentials is not None and self._open_credentials is not None:
            try:
                creds = self._open_credentials(source.device_id, source.sealed_credentials)
            except Exception as exc:
                log.warning("live view: credentials of %s do not decrypt", camera_id)
                raise LiveRefused("stream_unavailable", "the camera login is unusable") from exc
            url = with_credentials(url, creds.username, creds.password.get_secret_value())
        return url

    async def start(
        self, principal: Principal, camera_id: str, sdp: str, sdp_type: str
    ) -> LiveStart:
        """Answer an offer; raises CameraNotVisible (→ 404) or LiveRefused."""
        url = await self._source_url(principal, camera_id)
        answer = await self.relay.offer(camera_id, url, sdp, sdp_type)
        async with self.store.transaction() as tx:
            await audit_log.record(
                tx,
                principal.actor,
                "live.start",
                camera_id,
                principal.remote_addr,
                {"viewer": answer.viewer_id, "passthrough": answer.passthrough},
            )
        return LiveStart(answer, camera_id)

    async def stop_viewer(self, principal: Principal, viewer_id: str) -> bool:
        """End one viewer (any caller who may see its camera)."""
        camera_id = self.relay.camera_of(viewer_id)
        if camera_id is None:
            return False
        async with self.store.reading() as tx:
            source = await camera_source(tx, camera_id)
        if source is None or not principal.can_see(source.jurisdiction_path):
            return False
        return await self.relay.close_viewer(viewer_id)
