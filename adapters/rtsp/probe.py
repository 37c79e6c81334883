"""Open an RTSP stream, decode a short burst, keep evidence: the one I/O module.

`probe_stream` blocks (network and decode); the hub calls it through
`ProbePool`, which runs it in a bounded worker pool off the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, cast

import av
import av.error
import cv2

from adapters.rtsp.models import BgrFrame, ProbeFailure, StreamProbe, redact_text, redact_url

__all__ = ["ProbePool", "jpeg_of", "probe_of_pictures", "probe_stream"]

logger = logging.getLogger(__name__)

Transport = Literal["tcp", "udp"]

_UNREACHABLE_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNRESET, errno.EIO}
)


@dataclass(frozen=True, slots=True)
class _Failed(Exception):
    """A classified probe failure travelling from where it happens to the result."""

    failure: ProbeFailure
    message: str


def _open_failure(exc: Exception, elapsed_s: float, timeout_s: float) -> _Failed:
    """Classify why `av.open` failed; the message never contains credentials."""
    message = redact_text(str(exc))
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return _Failed(ProbeFailure.AUTH_FAILED, message)
    if isinstance(exc, av.error.HTTPClientError | av.error.HTTPServerError):
        return _Failed(ProbeFailure.REJECTED, message)
    # FFmpeg reports an interrupted (timed out) open as "invalid data" or EXIT:
    # the clock is the reliable witness.
    if elapsed_s >= timeout_s * 0.95:
        return _Failed(ProbeFailure.TIMEOUT, f"no answer within {timeout_s:g} s ({message})")
    if isinstance(exc, ConnectionError) or (
        isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS
    ):
        return _Failed(ProbeFailure.UNREACHABLE, message)
    return _Failed(ProbeFailure.PROTOCOL_ERROR, message)


def _analysis_size(width: int, height: int, analysis_width: int) -> tuple[int, int]:
    if width <= analysis_width:
        return width, height
    scaled_height = max(2, round(height * analysis_width / width / 2) * 2)
    return analysis_width, scaled_height


def _to_bgr(frame: av.VideoFrame, max_width: int) -> BgrFrame:
    """The picture as BGR, scaled down (by swscale, cheaply) to at most `max_width`."""
    width, height = _analysis_size(frame.width, frame.height, max_width)
    return cast(BgrFrame, frame.reformat(width=width, height=height, format="bgr24").to_ndarray())


def _snapshot(frame: av.VideoFrame, max_width: int, quality: int) -> bytes | None:
    picture = _to_bgr(frame, max_width)
    height, width = picture.shape[:2]
    encoded, buffer = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not encoded:
        logger.warning("JPEG encoding of a %dx%d snapshot failed", width, height)
        return None
    return bytes(buffer.tobytes())


def probe_stream(
    url: str,
    *,
    frames: int = 8,
    timeout_s: float = 5.0,
    transport: Transport = "tcp",
    analysis_width: int = 320,
    snapshot_max_width: int = 1280,
    jpeg_quality: int = 80,
) -> StreamProbe:
    """Open `url`, decode up to `frames` pictures within `timeout_s`, and report.

    Never raises for a camera's fault: every failure is classified into
    `StreamProbe.failure`. Blocking; run it through `ProbePool`.
    """
    if frames < 1:
        raise ValueError("frames must be >= 1")
    if timeout_s <= 0:
        raise ValueError("timeout_s must be > 0")
    safe_url = redact_url(url)
    started = time.perf_counter()
    options = {
        "rtsp_transport": transport,
        # Tight probing: the SDP already names codec and size; default probing costs ~2 s.
        "analyzeduration": "0",
        "probesize": "32",
        # Socket I/O timeout inside FFmpeg's RTSP demuxer, in microseconds.
        "timeout": str(int(timeout_s * 1_000_000)),
    }
    try:
        container = av.open(url, options=options, timeout=(timeout_s, timeout_s))
    except (av.error.FFmpegError, OSError) as exc:
        failed = _open_failure(exc, time.perf_counter() - started, timeout_s)
        logger.info("probe %s failed to open: %s: %s", safe_url, failed.failure, failed.message)
        return StreamProbe(
            url=safe_url,
            ok=False,
            failure=failed.failure,
            error=failed.message,
            frames_requested=frames,
            total_time_s=time.perf_counter() - started,
        )
    opened = time.perf_counter()
    try:
        return _decode_burst(
            container,
            safe_url=safe_url,
            started=started,
            opened=opened,
            frames=frames,
            timeout_s=timeout_s,
            analysis_width=analysis_width,
            snapshot=functools.partial(
                _snapshot, max_width=snapshot_max_width, quality=jpeg_quality
            ),
        )
    finally:
        container.close()


def _decode_burst(
    container: Any,
    *,
    safe_url: str,
    started: float,
    opened: float,
    frames: int,
    timeout_s: float,
    analysis_width: int,
    snapshot: Callable[[av.VideoFrame], bytes | None],
) -> StreamProbe:
    """Decode up to `frames` pictures from an open container before the deadline."""
    common: dict[str, Any] = {
        "url": safe_url,
        "open_latency_s": opened - started,
        "frames_requested": frames,
    }
    if not container.streams.video:
        return StreamProbe(
            ok=False,
            failure=ProbeFailure.NO_VIDEO,
            error="the session has no video track",
            total_time_s=time.perf_counter() - started,
            **common,
        )
    stream = container.streams.video[0]
    context = stream.codec_context
    # Frame threading holds back the first pictures by one per thread; a probe
    # wants the burst now, and parallelism comes from probing many cameras.
    context.thread_count = 1
    rate = stream.average_rate or stream.guessed_rate
    common.update(
        codec=context.name,
        width=context.width or None,
        height=context.height or None,
        fps=float(rate) if rate else None,
    )

    pictures: list[BgrFrame] = []
    last: av.VideoFrame | None = None
    decode_s = 0.0
    failure: ProbeFailure | None = None
    error: str | None = None
    deadline = opened + timeout_s
    try:
        for packet in container.demux(stream):
            if time.perf_counter() > deadline:
                failure, error = ProbeFailure.STALLED, f"burst not complete within {timeout_s:g} s"
                break
            tick = time.perf_counter()
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError as exc:
                failure, error = ProbeFailure.DECODE_ERROR, redact_text(str(exc))
                break
            for frame in decoded:
                if frame.is_corrupt:
                    continue  # a picture decoded without its reference is not evidence
                pictures.append(_to_bgr(frame, analysis_width))
                last = frame
            decode_s += time.perf_counter() - tick
            if len(pictures) >= frames:
                break
        else:
            failure, error = ProbeFailure.STALLED, "the stream ended"
    except (av.error.FFmpegError, OSError) as exc:
        # A read that times out or a dropped connection mid-burst.
        failure, error = ProbeFailure.STALLED, redact_text(str(exc))

    if not pictures:
        if failure is not ProbeFailure.DECODE_ERROR:
            failure = ProbeFailure.NO_FRAMES
        logger.info("probe %s: no pictures: %s", safe_url, error)
        return StreamProbe(
            ok=False,
            failure=failure,
            error=error,
            decode_time_s=decode_s,
            total_time_s=time.perf_counter() - started,
            **common,
        )
    if common["width"] is None and last is not None:
        common.update(width=last.width, height=last.height)
    jpeg = snapshot(last) if last is not None else None
    if failure is not None:
        logger.info(
            "probe %s: %d of %d pictures: %s: %s",
            safe_url,
            len(pictures),
            frames,
            failure,
            error,
        )
    return StreamProbe(
        ok=True,
        failure=failure,
        error=error,
        frames_decoded=len(pictures),
        decode_time_s=decode_s,
        total_time_s=time.perf_counter() - started,
        frames=tuple(pictures),
        snapshot_jpeg=jpeg,
        **common,
    )


def jpeg_of(frame: av.VideoFrame, *, max_width: int = 1280, quality: int = 80) -> bytes | None:
    """A decoded picture as JPEG, scaled down to at most `max_width` (blocking)."""
    return _snapshot(frame, max_width, quality)


def probe_of_pictures(
    url: str,
    pictures: Sequence[av.VideoFrame],
    *,
    frames_requested: int,
    codec: str | None,
    open_latency_s: float | None,
    total_time_s: float,
    failure: ProbeFailure | None = None,
    error: str | None = None,
    analysis_width: int = 320,
) -> StreamProbe:
    """The probe result of pictures decoded elsewhere (a stream the hub receives itself,
    e.g. a GB/T 28181 channel), judged like an RTSP probe's burst (blocking)."""
    whole = [frame for frame in pictures if not frame.is_corrupt]
    if not whole:
        return StreamProbe(
            url=url,
            ok=False,
            failure=failure or ProbeFailure.NO_FRAMES,
            error=error,
            open_latency_s=open_latency_s,
            codec=codec,
            frames_requested=frames_requested,
            total_time_s=total_time_s,
        )
    last = whole[-1]
    return StreamProbe(
        url=url,
        ok=True,
        failure=failure,
        error=error,
        open_latency_s=open_latency_s,
        codec=codec,
        width=last.width,
        height=last.height,
        frames_requested=frames_requested,
        frames_decoded=len(whole),
        total_time_s=total_time_s,
        frames=tuple(_to_bgr(frame, analysis_width) for frame in whole),
        snapshot_jpeg=_snapshot(last, 1280, 80),
    )


class ProbePool:
    """Runs `probe_stream` in a bounded pool so the event loop never blocks.

    Threads are the default: PyAV releases the GIL while FFmpeg reads and
    decodes, so threads scale across cores (benchmarks/patrol.py measures it).
    `executor="process"` is there for comparison and for decoders that do not.
    """

    def __init__(
        self,
        max_workers: int = 8,
        *,
        executor: Literal["thread", "process"] = "thread",
        frames: int = 8,
        timeout_s: float = 5.0,
        transport: Transport = "tcp",
        analysis_width: int = 320,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.max_workers = max_workers
        self._defaults: dict[str, Any] = {
            "frames": frames,
            "timeout_s": timeout_s,
            "transport": transport,
            "analysis_width": analysis_width,
        }
        self._executor: Executor = (
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rtsp-probe")
            if executor == "thread"
            else ProcessPoolExecutor(max_workers=max_workers)
        )

    async def probe(
        self, url: str, *, frames: int | None = None, timeout_s: float | None = None
    ) -> StreamProbe:
        """Probe `url` in the pool; at most `max_workers` probes run at once."""
        kwargs = dict(self._defaults)
        if frames is not None:
            kwargs["frames"] = frames
        if timeout_s is not None:
            kwargs["timeout_s"] = timeout_s
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(probe_stream, url, **kwargs)
        )

    def close(self) -> None:
        """Stop accepting probes and wait for the running ones to finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def aclose(self) -> None:
        """`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
