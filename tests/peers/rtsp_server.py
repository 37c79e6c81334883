"""A GStreamer RTSP server that plays healthy and broken cameras for the tests.

Run it with Debian's interpreter (`/usr/bin/python3`), which has the `gi`
bindings; the project's venv does not. It binds 127.0.0.1 only and serves:

- `/ball`    a textured scene (four test-pattern tiles, scrolling bars, a moving
             ball): healthy
- `/blur`    the same scene through a Gaussian blur (out-of-focus lens)
- `/frozen`  the same scene standing still: every frame identical (frozen picture)
- `/stalled` a few frames of colour bars, then nothing (stream stops sending)
- `/black`   100 % black (signal loss, too dark)
- `/blue`    a blue screen (an encoder's "no signal" picture)
- `/snow`    television snow (noise)
- `/solid`   one uniform olive colour (lens covered: occlusion, colour cast)
- `/grey`    one uniform mid grey (occlusion without a colour cast)
- `/sound`   the healthy scene with an AAC audio track (a camera with a microphone)
- `/g711`    the healthy scene with G.711 A-law audio (what most cameras here send)

With `--auth user:password` every mount demands RTSP Digest authentication
(a camera with a login): a wrong password or none is answered 401.

It prints `READY rtsp://127.0.0.1:<port>` on stdout once it accepts
connections, and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

_ENCODE = (
    "videoconvert ! video/x-raw,format=I420 ! "
    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={key_int} bitrate={kbps} ! "
    "video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1"
)


def _caps(width: int, height: int, fps: int, fmt: str | None = None) -> str:
    format_field = f",format={fmt}" if fmt else ""
    return f"video/x-raw{format_field},width={width},height={height},framerate={fps}/1"


def _scene(width: int, height: int, fps: int, *, ball: bool) -> tuple[str, list[str]]:
    """Four static pattern tiles, optionally with a moving ball composited on top."""
    half_w, half_h = width // 2, height // 2
    tiles = ["circular", "pinwheel", "smpte75", "gradient"]
    pads = []
    sources = []
    for index, pattern in enumerate(tiles):
        x, y = (index % 2) * half_w, (index // 2) * half_h
        pads.append(
            f"sink_{index}::xpos={x} sink_{index}::ypos={y} "
            f"sink_{index}::width={half_w} sink_{index}::height={half_h}"
        )
        # The colour bars scroll, so the healthy scene moves like a real street.
        speed = " horizontal-speed=2" if ball and pattern == "smpte75" else ""
        sources.append(
            f"videotestsrc is-live=true pattern={pattern}{speed} ! "
            f"{_caps(half_w, half_h, fps)} ! mix.sink_{index}"
        )
    if ball:
        pads.append("sink_4::xpos=0 sink_4::ypos=0")
        # A transparent background so the tiles show through around the ball.
        sources.append(
            "videotestsrc is-live=true pattern=ball background-color=0x00000000 "
            f"foreground-color=0xffff4040 ! {_caps(width, height, fps, 'AYUV')} ! mix.sink_4"
        )
    mixer = f"compositor name=mix background=black {' '.join(pads)} ! {_caps(width, height, fps)}"
    return mixer, sources


def launch_lines(width: int, height: int, fps: int, kbps: int) -> dict[str, tuple[str, bool]]:
    """Mount path -> (launch line, shared) for every stream the server offers."""
    encode = _ENCODE.format(key_int=fps, kbps=kbps)
    caps = _caps(width, height, fps)

    def scene(*, ball: bool, filters: str = "") -> str:
        mixer, sources = _scene(width, height, fps, ball=ball)
        return f"( {mixer} ! {filters}{encode} {' '.join(sources)} )"

    def with_audio(line: str, encode: str = "avenc_aac ! rtpmp4gpay", rate: int = 16000) -> str:
        audio = (
            "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! "
            f"audio/x-raw,rate={rate},channels=1 ! {encode} name=pay1 pt=97"
        )
        return f"{line[:-2]} {audio} )"

    def pattern(extra: str) -> str:
        return f"( videotestsrc is-live=true {extra} ! {caps} ! {encode} )"

    return {
        "/ball": (scene(ball=True), True),
        "/blur": (
            scene(
                ball=True,
                filters="videoconvert ! video/x-raw,format=AYUV ! gaussianblur sigma=6 ! ",
            ),
            True,
        ),
        "/frozen": (scene(ball=False), True),
        # Not shared: every client gets its own few frames, then silence.
        "/stalled": (pattern("pattern=smpte num-buffers=3"), False),
        "/black": (pattern("pattern=black"), True),
        "/blue": (pattern("pattern=blue"), True),
        "/snow": (pattern("pattern=snow"), True),
        "/solid": (pattern("pattern=solid-color foreground-color=0xff6b8e23"), True),
        "/grey": (pattern("pattern=solid-color foreground-color=0xff808080"), True),
        "/sound": (with_audio(scene(ball=True)), True),
        "/g711": (with_audio(scene(ball=True), "alawenc ! rtppcmapay", 8000), True),
    }


def _require_digest(server: GstRtspServer.RTSPServer, login: str) -> None:
    """Digest authentication on every mount: only `login` (user:password) opens them."""
    user, _, password = login.partition(":")
    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "camera-user")
    auth.add_digest(user, password, token)
    server.set_auth(auth)


def main(argv: list[str] | None = None) -> int:
    """Serve the test streams until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--kbps", type=int, default=1500)
    parser.add_argument("--auth", default="", help="user:password every mount demands (Digest)")
    parser.add_argument("--print-launch", action="store_true", help="print launch lines and exit")
    args = parser.parse_args(argv)

    lines = launch_lines(args.width, args.height, args.fps, args.kbps)
    if args.print_launch:
        for path, (line, shared) in lines.items():
            print(f"{path} shared={shared}: {line}")
        return 0

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    if args.auth:
        _require_digest(server, args.auth)
    for path, (line, shared) in lines.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(line)
        factory.set_shared(shared)
        if args.auth:
            factory.add_role_from_structure(
                Gst.Structure.from_string(
                    "camera-user, media.factory.access=(boolean)true,"
                    " media.factory.construct=(boolean)true"
                )[0]
            )
        mounts.add_factory(path, factory)

    if server.attach(None) == 0:
        print(f"ERROR cannot bind 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"READY rtsp://127.0.0.1:{args.port} mounts={','.join(lines)}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
