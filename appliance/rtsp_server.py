#!/usr/bin/python3
"""A real RTSP server for the demo, tests and benchmarks (GStreamer GstRtspServer).

Run with Debian's /usr/bin/python3, which has the gi bindings (the venv does not):

    /usr/bin/python3 appliance/rtsp_server.py 8554 --mount /office-1 --mount /garage-1

Why a real server: the recorder talks to cameras over RTSP through ffmpeg, and the only honest
test of timeouts, reconnects, wrong credentials and keyframe cutting is a real RTSP peer.

It binds to 127.0.0.1 only, serves each mount as a shared media (one encoder per mount, however
many clients), prints ``READY port=N`` on stdout once listening, and exits cleanly (status 0) on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

PATTERNS = ("snow", "ball", "smpte", "black", "white", "gradient", "pinwheel", "circular")


def live_pipeline(args: argparse.Namespace) -> str:
    """A live x264 encode: the RTP timestamps follow the wall clock like a real camera.

    ``--codec h265`` serves H.265 (x265), as newer cameras do; ``--codec mjpeg`` serves Motion
    JPEG, as older cameras do: what a recorder that keeps only H.264/H.265 must refuse clearly.
    """
    if args.codec == "mjpeg":
        video = (
            f"videotestsrc is-live=true pattern={args.pattern} "
            f"! video/x-raw,format=I420,width={args.width},height={args.height},framerate={args.fps}/1 "
            "! jpegenc ! rtpjpegpay name=pay0 pt=26"  # RFC 2435 carries 4:2:0 or 4:2:2 only
        )
    elif args.codec == "h265":
        video = (
            f"videotestsrc is-live=true pattern={args.pattern} "
            f"! video/x-raw,format=I420,width={args.width},height={args.height},framerate={args.fps}/1 "
            f"! x265enc tune=zerolatency speed-preset=ultrafast bitrate={args.bitrate} "
            f"key-int-max={args.gop} "
            "! rtph265pay name=pay0 pt=96 config-interval=1"
        )
    else:
        video = (
            f"videotestsrc is-live=true pattern={args.pattern} "
            f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast bitrate={args.bitrate} "
            f"key-int-max={args.gop} "
            "! video/x-h264,profile=baseline "
            "! rtph264pay name=pay0 pt=96 config-interval=1"
        )
    return f"( {video} {AUDIO[args.audio]} )" if args.audio else f"( {video} )"


#: A camera's microphone track: a live 440 Hz tone in the codecs IP cameras send (G.711 mu-law
#: and A-law at 8 kHz, the RTP static payload types 0 and 8; AAC at 16 kHz).
_TONE = "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample"
AUDIO = {
    "pcmu": f"{_TONE} ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0",
    "pcma": f"{_TONE} ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8",
    "aac": f"{_TONE} ! audio/x-raw,rate=16000,channels=1 ! avenc_aac ! rtpmp4gpay name=pay1 pt=97",
}


class FileMediaFactory(GstRtspServer.RTSPMediaFactory):
    """Serves a pre-encoded Annex-B H.264 file in an endless loop, paced in real time.

    Why: live encoding costs ~0.4 core per 1080p mount, too much for many-camera benchmarks.
    The access units are read once; an appsrc pushes them at ``fps`` with running, monotonic
    timestamps, so a loop restart looks to clients like a camera that keeps going.
    """

    def __init__(self, access_units: list[bytes], fps: int) -> None:
        super().__init__()
        self.access_units = access_units
        self.fps = fps

    def do_create_element(self, url: GstRtspServer.RTSPUrl) -> Gst.Element:  # noqa: N802
        """Build a fresh bin per media (once per mount, since the media is shared)."""
        caps = f"video/x-h264,stream-format=byte-stream,alignment=au,framerate={self.fps}/1"
        launch = (
            f'( appsrc name=src is-live=true format=time do-timestamp=false caps="{caps}" '
            "! h264parse config-interval=-1 "
            "! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        element = Gst.parse_launch(launch)
        src = element.get_by_name("src")
        state = {"n": 0, "t0": -1}
        frame_ns = Gst.SECOND // self.fps
        units = self.access_units

        def need_data(appsrc: Gst.Element, _length: int) -> None:
            # Streaming thread, only once PLAYING. Timestamps start at the current running time
            # and advance one frame per access unit; the sinks' clock sync paces them.
            if state["t0"] < 0:
                clock = appsrc.get_clock()
                now = clock.get_time() - appsrc.get_base_time() if clock is not None else 0
                state["t0"] = max(0, now)
            n = state["n"]
            data = units[n % len(units)]
            buf = Gst.Buffer.new_wrapped(data)
            buf.pts = state["t0"] + n * frame_ns
            buf.dts = buf.pts
            buf.duration = frame_ns
            state["n"] = n + 1
            appsrc.emit("push-buffer", buf)

        src.connect("need-data", need_data)
        return element


def split_access_units(data: bytes) -> list[bytes]:
    """Split an Annex-B H.264 stream into access units (one per picture).

    A new access unit starts at an AUD, SPS, PPS or SEI that follows a slice, or at a slice whose
    first_mb_in_slice is 0 (its first payload bit is 1 in ue(v) coding). That is enough for the
    single-slice-per-picture streams that ffmpeg/x264 produce for tests.
    """
    starts: list[int] = []
    i = 0
    n = len(data)
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0 or j + 3 >= n:
            break
        starts.append(j + 3)
        i = j + 3
    units: list[bytes] = []
    current: list[bytes] = []
    seen_slice = False
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else n
        nal = data[s:end].rstrip(b"\x00") if k + 1 < len(starts) else data[s:end]
        if not nal:
            continue
        nal_type = nal[0] & 0x1F
        is_slice = nal_type in (1, 5)
        first_mb_zero = is_slice and len(nal) > 1 and (nal[1] & 0x80) != 0
        boundary = seen_slice and (nal_type in (6, 7, 8, 9) or first_mb_zero)
        if boundary and current:
            units.append(b"".join(current))
            current = []
            seen_slice = False
        current.append(b"\x00\x00\x00\x01" + nal)
        if is_slice:
            seen_slice = True
    if current and seen_slice:
        units.append(b"".join(current))
    return units


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command line: port, mounts and stream shape."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("port", type=int, help="TCP port on 127.0.0.1 (0 picks a free one)")
    p.add_argument("--mount", action="append", dest="mounts", help="mount path, repeatable")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--bitrate", type=int, default=4000, help="kbit/s")
    p.add_argument("--gop", type=int, default=50, help="x264 key-int-max (frames)")
    p.add_argument("--pattern", default="snow", choices=PATTERNS)
    p.add_argument("--user", help="require RTSP basic/digest auth with this user")
    p.add_argument("--password", help="password for --user")
    p.add_argument("--auth", choices=("digest", "basic"), default="digest", help="method offered with --user")
    p.add_argument("--file", help="loop this Annex-B .h264 file instead of encoding live")
    p.add_argument(
        "--codec", choices=("h264", "h265", "mjpeg"), default="h264", help="codec of the live encode"
    )
    p.add_argument(
        "--audio", choices=sorted(AUDIO), help="add a live audio track in this codec (not with --file)"
    )
    args = p.parse_args(argv)
    args.mounts = args.mounts or ["/office-1"]
    args.mounts = [m if m.startswith("/") else "/" + m for m in args.mounts]
    if (args.user is None) != (args.password is None):
        p.error("--user and --password go together")
    return args


def make_factory(
    args: argparse.Namespace, access_units: list[bytes] | None
) -> GstRtspServer.RTSPMediaFactory:
    """One shared factory per mount; with auth only the role 'user' may access/construct."""
    if access_units is not None:
        factory: GstRtspServer.RTSPMediaFactory = FileMediaFactory(access_units, args.fps)
    else:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(live_pipeline(args))
    factory.set_shared(True)
    if args.user is not None:
        factory.add_role_from_structure(
            Gst.Structure.from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )[0]
        )
    return factory


def main(argv: list[str]) -> int:
    """Start the server, announce READY, run until SIGTERM/SIGINT."""
    args = parse_args(argv)
    Gst.init(None)

    access_units: list[bytes] | None = None
    if args.file is not None and args.audio:
        print("--audio needs the live encode: it cannot be combined with --file", file=sys.stderr)
        return 2
    if args.file is not None:
        with open(args.file, "rb") as f:
            access_units = split_access_units(f.read())
        if not access_units:
            print(f"no H.264 access units in {args.file}", file=sys.stderr)
            return 2

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for mount in args.mounts:
        mounts.add_factory(mount, make_factory(args, access_units))

    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        # The GI binding takes one enum value, not a flag set: offer one method per server.
        if args.auth == "digest":
            auth.add_digest(args.user, args.password, token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
        server.set_auth(auth)

    loop = GLib.MainLoop()
    try:
        server.attach(None)
    except GLib.Error as exc:
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc.message}", file=sys.stderr)
        return 1
    if server.get_bound_port() <= 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    def quit_loop() -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, quit_loop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, quit_loop)

    print(f"READY port={server.get_bound_port()}", flush=True)
    loop.run()
    sys.stdout.flush()
    # Skip interpreter teardown of live GStreamer threads: it can hang or crash at exit.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
