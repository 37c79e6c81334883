"""The live-view relay (I/O): RTSP in once per camera, WebRTC out to each viewer.

For each camera and mode the relay opens one `MediaPlayer` on the camera's
RTSP URL and fans its video out through one `MediaRelay` to every viewer's
`RTCPeerConnection`. In passthrough mode the player does not decode: the
camera's H.264 packets go to the browser as they are (no CPU spent on
re-encoding); a browser that cannot take H.264 gets a decoded pull that aiortc
re-encodes (VP8). The pull closes a little after its last viewer leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer, MediaRelay

from adapters.webrtc.models import (
    LiveAnswer,
    LiveLimits,
    LiveRefused,
    check_offer,
    offer_accepts_h264,
)
from camera_registry.urls import redact_url

__all__ = ["LiveRelay", "SharedSource", "SourceOpener"]

#: Opens a player (an object with `.video` and `.audio` tracks) for a source URL
#: the relay should not pull over RTSP itself, e.g. a simulated camera; returns
#: None for every other URL. The flag says the viewer takes H.264: a player may then
#: hand out undecoded H.264 packets (`av.Packet`) instead of pictures.
SourceOpener = Callable[[str, bool], Any | None]

#: Returns a player fed by a pull the hub already has of `camera_id` (e.g. the pre-alarm
#: buffer's), for a passthrough viewer; None when there is none. Called on the loop.
SharedSource = Callable[[str], Any | None]

log = logging.getLogger(__name__)

# Low-latency RTSP open (about 0.2 s instead of 2 s of probing), over TCP so a
# lossy network does not smear the picture.
_RTSP_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32"}
# A viewer whose browser never completes ICE/DTLS is dropped after this long.
_CONNECT_TIMEOUT_S = 20.0


@dataclass
class _Pull:
    key: tuple[str, bool]
    player: Any
    relay: MediaRelay
    viewers: set[str] = field(default_factory=set)
    closer: asyncio.Task[None] | None = None


@dataclass
class _Viewer:
    id: str
    camera_id: str
    pull_key: tuple[str, bool]
    pc: RTCPeerConnection
    track: Any
    watchdog: asyncio.Task[None] | None = None


class LiveRelay:
    """Serves WebRTC viewers of RTSP cameras, pulling each camera once."""

    def __init__(
        self,
        limits: LiveLimits,
        *,
        passthrough: bool = True,
        idle_close_s: float = 5.0,
        open_timeout_s: int = 10,
    ) -> None:
        self.limits = limits
        self.passthrough = passthrough
        self.idle_close_s = idle_close_s
        self.open_timeout_s = open_timeout_s
        self._pulls: dict[tuple[str, bool], _Pull] = {}
        self._viewers: dict[str, _Viewer] = {}
        self._lock = asyncio.Lock()
        self._openers: list[SourceOpener] = []
        self._shared: list[SharedSource] = []

    def add_source(self, opener: SourceOpener) -> None:
        """Serve the URLs `opener` recognises from its player instead of RTSP."""
        self._openers.append(opener)

    def share_pulls(self, source: SharedSource) -> None:
        """Serve passthrough viewers of the cameras `source` pulls already from that pull."""
        self._shared.append(source)

    def _shared_player(self, camera_id: str, passthrough: bool) -> Any:
        if not passthrough:
            return None  # a re-encoding viewer needs decoded pictures: its own pull
        for source in self._shared:
            player = source(camera_id)
            if player is not None:
                return player
        return None

    def _own_player(self, source_url: str, passthrough: bool) -> Any:
        for opener in self._openers:
            player = opener(source_url, passthrough)
            if player is not None:
                return player
        return None

    # -- what the hub asks -------------------------------------------------------

    def viewers(self, camera_id: str | None = None) -> int:
        """Viewers admitted (connecting or connected), of one camera or of all."""
        return sum(
            len(pull.viewers)
            for pull in self._pulls.values()
            if camera_id is None or pull.key[0] == camera_id
        )

    def pulls(self) -> int:
        """RTSP pulls open now."""
        return len(self._pulls)

    def player(self, camera_id: str, passthrough: bool) -> Any | None:
        """The player of a camera's open pull (passthrough or re-encoded), if any."""
        pull = self._pulls.get((camera_id, passthrough))
        return pull.player if pull is not None else None

    def camera_of(self, viewer_id: str) -> str | None:
        """The camera a viewer watches, if it exists."""
        viewer = self._viewers.get(viewer_id)
        return viewer.camera_id if viewer else None

    async def offer(self, camera_id: str, source_url: str, sdp: str, sdp_type: str) -> LiveAnswer:
        """Answer a browser's offer for `camera_id` streamed from `source_url` (may hold
        credentials: it is used here only and never logged unredacted)."""
        check_offer(sdp, sdp_type)
        passthrough = self.passthrough and offer_accepts_h264(sdp)
        async with self._lock:
            if self.viewers() >= self.limits.total:
                raise LiveRefused(
                    "busy_hub", f"this hub serves {self.limits.total} viewers already"
                )
            if self.viewers(camera_id) >= self.limits.per_camera:
                raise LiveRefused(
                    "busy_camera", f"this camera has {self.limits.per_camera} viewers already"
                )
            pull = await self._pull(camera_id, source_url, passthrough)
            viewer_id = secrets.token_urlsafe(12)
            pull.viewers.add(viewer_id)
            if pull.closer is not None:
                pull.closer.cancel()
                pull.closer = None
        try:
            answer, viewer = await self._connect(viewer_id, camera_id, pull, sdp, sdp_type)
        except Exception:
            await self._drop_viewer_id(viewer_id, pull)
            raise
        self._viewers[viewer_id] = viewer
        return LiveAnswer(viewer_id, answer.sdp, answer.type, passthrough)

    async def close_viewer(self, viewer_id: str) -> bool:
        """Stop one viewer; False when it is unknown (already gone)."""
        viewer = self._viewers.pop(viewer_id, None)
        if viewer is None:
            return False
        await self._close_viewer(viewer)
        return True

    async def close(self) -> None:
        """Stop every viewer and every pull."""
        for viewer_id in list(self._viewers):
            await self.close_viewer(viewer_id)
        for pull in list(self._pulls.values()):
            if pull.closer is not None:
                pull.closer.cancel()
            await self._stop_pull(pull)

    # -- internals -------------------------------------------------------------

    async def _pull(self, camera_id: str, source_url: str, passthrough: bool) -> _Pull:
        key = (camera_id, passthrough)
        pull = self._pulls.get(key)
        if pull is not None:
            return pull
        try:
            # av.open blocks while it connects and reads the SDP: keep it off the loop.
            player = (
                self._shared_player(camera_id, passthrough)
                or self._own_player(source_url, passthrough)
                or await asyncio.to_thread(
                    MediaPlayer,
                    source_url,
                    format="rtsp",
                    options=dict(_RTSP_OPTIONS),
                    timeout=self.open_timeout_s,
                    decode=not passthrough,
                )
            )
        except Exception as exc:
            log.warning(
                "live view: cannot open %s for camera %s: %s",
                redact_url(source_url),
                camera_id,
                type(exc).__name__,
            )
            raise LiveRefused("stream_unavailable", "the camera's stream cannot be opened") from exc
        if player.video is None:
            await asyncio.to_thread(_stop_tracks, player)
            raise LiveRefused("stream_unavailable", "the camera's stream has no usable video")
        pull = _Pull(key=key, player=player, relay=MediaRelay())
        self._pulls[key] = pull
        log.info(
            "live view: pulling camera %s (%s)",
            camera_id,
            "H.264 passthrough" if passthrough else "re-encoded",
        )
        return pull

    async def _connect(
        self, viewer_id: str, camera_id: str, pull: _Pull, sdp: str, sdp_type: str
    ) -> tuple[RTCSessionDescription, _Viewer]:
        pc = RTCPeerConnection()
        track = pull.relay.subscribe(pull.player.video, buffered=False)
        viewer = _Viewer(viewer_id, camera_id, pull.key, pc, track)

        @pc.on("connectionstatechange")
        async def _state_changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close_viewer(viewer_id)

        # The sending transceiver exists before the offer is applied, so the offer's
        # video section binds to it and the codec preference is honoured: aiortc
        # settles the codecs while applying the remote description.
        transceiver = pc.addTransceiver(track, direction="sendonly")
        if pull.key[1]:
            h264 = [
                codec
                for codec in RTCRtpSender.getCapabilities("video").codecs
                if codec.mimeType.lower() == "video/h264"
            ]
            transceiver.setCodecPreferences(h264)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=sdp_type))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        viewer.watchdog = asyncio.create_task(self._watch(viewer_id, pc))
        local = pc.localDescription
        return RTCSessionDescription(sdp=local.sdp, type=local.type), viewer

    async def _watch(self, viewer_id: str, pc: RTCPeerConnection) -> None:
        await asyncio.sleep(_CONNECT_TIMEOUT_S)
        if pc.connectionState != "connected":
            log.info("live view: viewer %s never connected; dropping it", viewer_id)
            await self.close_viewer(viewer_id)

    async def _close_viewer(self, viewer: _Viewer) -> None:
        current = asyncio.current_task()
        if viewer.watchdog is not None and viewer.watchdog is not current:
            viewer.watchdog.cancel()
        viewer.track.stop()
        await viewer.pc.close()
        pull = self._pulls.get(viewer.pull_key)
        if pull is not None:
            await self._drop_viewer_id(viewer.id, pull)

    async def _drop_viewer_id(self, viewer_id: str, pull: _Pull) -> None:
        pull.viewers.discard(viewer_id)
        if not pull.viewers and pull.closer is None:
            pull.closer = asyncio.create_task(self._close_later(pull))

    async def _close_later(self, pull: _Pull) -> None:
        # A viewer who reloads the page comes back within seconds; keep the pull.
        await asyncio.sleep(self.idle_close_s)
        async with self._lock:
            if pull.viewers or self._pulls.get(pull.key) is not pull:
                return
            del self._pulls[pull.key]
        pull.closer = None
        await self._stop_pull(pull)

    async def _stop_pull(self, pull: _Pull) -> None:
        self._pulls.pop(pull.key, None)
        with contextlib.suppress(RuntimeError):
            await asyncio.to_thread(_stop_tracks, pull.player)
        log.info("live view: closed the pull of camera %s", pull.key[0])


def _stop_tracks(player: Any) -> None:
    """Stop a player's tracks, which ends its reader thread and closes the stream."""
    for track in (player.video, player.audio):
        if track is not None:
            track.stop()
