"""Camera recorder acceptance: `holdfast record camera` as a real process against a real RTSP server.

The stream is a pre-encoded 1080p25 H.264 file at ~4 Mbit/s (GOP 2 s) that the GStreamer server
loops in real time: the brief's camera bitrate without an x264 encoder eating a core.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import RtspServerFactory
from tests.support.appliance import Appliance
from tests.support.media import FFPROBE, make_h264_annexb, requires_ffmpeg
from tests.support.rtsp import RtspServer
from tests.support.scan import plaintext_media_files
from tests.support.wait import wait_for
from vault.index.schema import Gap, Segment

pytestmark = [pytest.mark.slow, requires_ffmpeg]

CAMERA = "office-1"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stream_1080p(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s of 1080p25 H.264 at 4 Mbit/s CBR, looped by the server."""
    path = tmp_path_factory.mktemp("media") / "cam1080p.h264"
    return make_h264_annexb(path, seconds=10, bitrate_kbps=4000)


class Recorder:
    """`holdfast record camera office-1` as a child process with its log in a file."""

    def __init__(self, appliance: Appliance, log: Path) -> None:
        self.appliance = appliance
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Recorder:
        with open(self.log, "ab") as f:
            self.proc = self.appliance.popen("record", "camera", CAMERA, stdout=f, stderr=f)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 10) -> tuple[int, float]:
        """SIGTERM; returns (exit status, seconds it took)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        return rc, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


StartRecorder = Callable[..., Recorder]


@pytest.fixture
def camera_1080p(rtsp_server_factory: RtspServerFactory, stream_1080p: Path) -> RtspServer:
    """office-1's camera: the 1080p stream looped at /office-1."""
    return rtsp_server_factory([f"/{CAMERA}"], file=str(stream_1080p))


@pytest.fixture
def recorder(appliance: Appliance, tmp_path: Path, request: pytest.FixtureRequest) -> StartRecorder:
    """start(url, log="recorder.log", **fields): point office-1 at `url` (and set those fields of
    its [[cameras]] entry; url None: the config as it is) and start its recorder, logging to
    tmp_path/log; killed at teardown."""

    def start(url: str | None, log: str = "recorder.log", **fields: float) -> Recorder:
        if url is not None:
            point_camera_at(appliance, url, **fields)
        rec = Recorder(appliance, tmp_path / log).start()
        request.addfinalizer(rec.kill)
        return rec

    return start


def point_camera_at(appliance: Appliance, url: str, **fields: float) -> None:
    """Rewrite office-1's URL and set fields of its [[cameras]] entry (e.g. segment_seconds=3)."""
    text = appliance.config_path.read_text()
    text, n = re.subn(r'^url = "rtsp://127\.0\.0\.1:8554/office-1"$', f'url = "{url}"', text, flags=re.M)
    assert n == 1
    head, _, rest = text.partition('id = "office-1"\n')
    block, sep, tail = rest.partition("\n[")  # office-1's entry ends where the next table starts
    for key, value in fields.items():
        block, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", block, flags=re.M)
        if n == 0:
            block += f"\n{key} = {value}"
    appliance.config_path.write_text(head + 'id = "office-1"\n' + block + sep + tail)


def partials(appliance: Appliance) -> list[Path]:
    return sorted((appliance.cfg.paths.spool / ".partial").glob(f"{CAMERA}.*.seg.part"))


def ingest(appliance: Appliance) -> str:
    return appliance.cli("ingest", "--once").stdout.decode()


def indexed(appliance: Appliance) -> tuple[list[Segment], list[Gap]]:
    with appliance.vault() as v, v.sessions() as s:
        segs = s.query(Segment).filter_by(source=CAMERA).order_by(Segment.start).all()
        gaps = s.query(Gap).filter_by(source=CAMERA).order_by(Gap.start).all()
        s.expunge_all()
    return segs, gaps


def ffprobe_segment(appliance: Appliance, seg_id: str, tmp: Path) -> dict[str, object]:
    """`holdfast segments cat` into ffprobe (on tmpfs-like tmp: test data only)."""
    data = appliance.cli("segments", "cat", seg_id).stdout
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_streams", "-show_format", "-of", "json", "-i", "pipe:0"],
        input=data,
        capture_output=True,
        check=True,
    )
    return json.loads(out.stdout)


def video_stream(appliance: Appliance, seg_id: str, tmp: Path) -> dict[str, object]:
    """The one video stream ffprobe finds in the segment."""
    info = ffprobe_segment(appliance, seg_id, tmp)
    (video,) = [x for x in info["streams"] if x["codec_type"] == "video"]  # type: ignore[union-attr,index]
    return video  # type: ignore[no-any-return]


# -- invariant 1: no plaintext MP4 on disk: tests.support.scan.plaintext_media_files ------------

# -- 60 s of recording, SIGTERM, plaintext scans ------------------------------------------------


def test_sixty_seconds_six_segments_sigterm_and_no_plaintext(
    appliance: Appliance, camera_1080p: RtspServer, recorder: StartRecorder, tmp_path: Path
) -> None:
    server = camera_1080p
    rec = recorder(server.url())
    cfg = appliance.cfg
    roots = (cfg.paths.spool, cfg.paths.store)

    assert wait_for(lambda: partials(appliance), 20), rec.text()
    first_open = time.monotonic()
    # Halfway: ingest what has closed so far, then scan spool (incl. the growing partial) and store.
    time.sleep(30)
    ingest(appliance)
    assert partials(appliance), "a segment is being written right now"
    assert plaintext_media_files(*roots) == []
    # The first fragment (~2 s of media) was complete when the partial appeared: stop at ~60 s.
    time.sleep(max(0.0, first_open + 58 - time.monotonic()))
    stop_wall = datetime.now().astimezone()
    rc, took = rec.terminate()
    assert rc == 0, rec.text()
    assert took < 2.0, f"SIGTERM took {took:.2f} s"
    assert partials(appliance) == []
    assert plaintext_media_files(*roots) == []

    out = ingest(appliance)
    assert "rejected=0" in out, out
    assert plaintext_media_files(*roots) == []
    segs, gaps = indexed(appliance)
    assert gaps == []
    assert 5 <= len(segs) <= 7, [(s.start, s.duration) for s in segs]

    total = sum(s.duration for s in segs)
    span = (segs[-1].end - segs[0].start).total_seconds()
    assert abs(total - span) < 1.0, "segments leave holes between them"
    assert abs(span - 60) < 2.5, span
    assert abs((stop_wall - segs[-1].end).total_seconds()) < 2.0
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.start < b.start
        assert a.end <= b.start + timedelta(milliseconds=1), "overlap"
    for s in segs[:-1]:
        assert s.meta["end_reason"] == "segment length"
        assert 9.0 <= s.duration <= 12.5
    last = segs[-1]
    assert last.meta["end_reason"] == "sigterm" and not last.cut_short

    with appliance.vault() as v, v.sessions() as sess:
        for s in segs:
            seg = v.get_segment(sess, s.id)
            with v.open_segment(seg) as reader:
                res = reader.verify()  # raises on any damage
                assert not res.cut_short and res.trailer_authenticated
                head = reader.read(0, 64)
                assert head[4:8] == b"ftyp"
            assert s.meta["codec"] == "h264" and (s.meta["width"], s.meta["height"]) == (1920, 1080)
    # The scan is not blind: the decrypted segment, written out, is caught at once.
    leak = tmp_path / "leak"
    leak.mkdir()
    (leak / "x.bin").write_bytes(appliance.cli("segments", "cat", segs[1].id).stdout)
    assert plaintext_media_files(leak)
    for s in (segs[0], segs[-1]):
        video = video_stream(appliance, s.id, tmp_path)
        assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1920, 1080)


# -- the camera goes away for 20 s -------------------------------------------------------------


def test_outage_of_twenty_seconds_is_one_gap_and_recording_resumes(
    appliance: Appliance, camera_1080p: RtspServer, recorder: StartRecorder, tmp_path: Path
) -> None:
    server = camera_1080p
    rec = recorder(server.url())
    assert wait_for(lambda: partials(appliance), 20), rec.text()
    time.sleep(4)

    down = datetime.now().astimezone()
    server.stop()
    time.sleep(20)
    before = set(partials(appliance))
    server.start()
    up = datetime.now().astimezone()
    up_mono = time.monotonic()
    assert wait_for(lambda: set(partials(appliance)) - before, 10), rec.text()
    resumed_after = time.monotonic() - up_mono
    assert resumed_after <= 5.0, f"recording again only {resumed_after:.1f} s after the camera returned"
    time.sleep(2.5)
    assert rec.proc is not None and rec.proc.poll() is None, "the recorder must not crash"
    rc, _ = rec.terminate()
    assert rc == 0

    assert "rejected=0" in ingest(appliance)
    segs, gaps = indexed(appliance)
    assert len(gaps) == 1, [(g.start, g.end, g.reason) for g in gaps]
    gap = gaps[0]
    outage = (up - down).total_seconds()
    assert abs((gap.end - gap.start).total_seconds() - outage) <= 2.0, (gap.start, gap.end, outage)
    assert "stream ended" in gap.reason or "unreachable" in gap.reason, gap.reason
    before_gap = [s for s in segs if s.end <= gap.start]
    after_gap = [s for s in segs if s.start >= gap.end]
    assert before_gap and after_gap and len(before_gap) + len(after_gap) == len(segs)
    assert before_gap[-1].end == gap.start and after_gap[0].start == gap.end
    assert before_gap[-1].meta["end_reason"] in ("stream ended", "camera unreachable (connection refused)")
    assert "event=camera.port_open" in rec.text() or "event=camera.unavailable" in rec.text()


# -- kill -9 mid-segment ---------------------------------------------------------------------


def test_sigkill_mid_segment_recovers_the_partial_and_carries_on(
    appliance: Appliance, camera_1080p: RtspServer, recorder: StartRecorder, tmp_path: Path
) -> None:
    server = camera_1080p
    spool = appliance.cfg.paths.spool
    rec = recorder(server.url())
    # Mid-segment: several fragments (0.5 s, ~250 kB each) sealed, well before the 10 s cut.
    assert wait_for(lambda: partials(appliance) and partials(appliance)[0].stat().st_size > 1_500_000, 20)
    time.sleep(0.5)
    (partial,) = partials(appliance)
    seg_id = partial.name.split(".")[1]
    rec.kill()
    assert plaintext_media_files(spool) == [], "the spool must hold only sealed data"
    assert list(spool.glob("*.seg")) == []

    rec2 = recorder(None, "recorder2.log")
    # The recovered segment is handed to ingest at once; the new recorder records on.
    assert wait_for(lambda: (spool / f"{seg_id}.seg").exists(), 15), rec2.text()
    assert wait_for(lambda: partials(appliance), 20), rec2.text()
    time.sleep(2.5)
    assert plaintext_media_files(spool) == []
    rc, _ = rec2.terminate()
    assert rc == 0
    assert "event=camera.recovered" in rec2.text()

    assert "rejected=0" in ingest(appliance)
    segs, gaps = indexed(appliance)
    by_id = {s.id: s for s in segs}
    recovered = by_id[seg_id]
    assert recovered.cut_short and recovered.meta["end_reason"] == "recorder killed"
    with appliance.vault() as v, v.sessions() as sess, v.open_segment(v.get_segment(sess, seg_id)) as reader:
        res = reader.verify()
        assert res.cut_short and res.plaintext_bytes > 1_000_000
        assert reader.read(0, 8)[4:8] == b"ftyp"
    # Readable up to its last complete chunk: ffprobe finds the 1080p H.264 track in it.
    video = video_stream(appliance, seg_id, tmp_path)
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1920, 1080)
    later = [s for s in segs if s.id != seg_id]
    assert later and all(not s.cut_short for s in later)
    assert all(s.start >= recovered.start for s in later)
    assert len(gaps) == 1 and gaps[0].reason.startswith("recorder killed"), [g.reason for g in gaps]
    assert plaintext_media_files(spool, appliance.cfg.paths.store) == []


# -- bad input: clear error, backoff, no busy loop ------------------------------------------------


def _failures(text: str) -> list[dict[str, str]]:
    rows = []
    for line in text.splitlines():
        if "event=camera.unavailable" in line:
            rows.append(dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)))
    return rows


@pytest.mark.parametrize("case", ["wrong password", "wrong port", "wrong path"])
def test_bad_camera_gives_a_clear_error_with_backoff(
    appliance: Appliance,
    rtsp_server_factory: RtspServerFactory,
    free_port,  # type: ignore[no-untyped-def]
    recorder: StartRecorder,
    tmp_path: Path,
    case: str,
) -> None:
    server = rtsp_server_factory(
        [f"/{CAMERA}"], width=320, height=240, pattern="ball", user="alice", password="s3cret-pw"
    )
    url, expected = {
        "wrong password": (server.url(credentials=("alice", "not-the-pw")), "wrong credentials"),
        "wrong port": (f"rtsp://127.0.0.1:{free_port()}/{CAMERA}", "camera unreachable"),
        "wrong path": (server.url("/nope"), "no such stream"),
    }[case]
    rec = recorder(url)
    t0 = time.monotonic()
    assert wait_for(lambda: _failures(rec.text()), 10), rec.text()
    first = _failures(rec.text())[0]
    assert time.monotonic() - t0 <= 10
    assert first["camera"] == CAMERA and expected in first["cause"], first
    # Backoff 1, 1, 2, 4 ... : by 9 s there are at most a handful of attempts, and the delays grow.
    time.sleep(max(0.0, t0 + 9 - time.monotonic()))
    rows = _failures(rec.text())
    delays = [float(r["retry_in"]) for r in rows]
    assert 2 <= len(rows) <= 6, rows
    assert delays == sorted(delays) and delays[-1] >= 2.0, delays
    assert "not-the-pw" not in rec.text() and "s3cret-pw" not in rec.text()
    assert list(appliance.cfg.paths.spool.glob("*.seg")) == []
    rc, took = rec.terminate()
    assert rc == 0 and took < 2.0


def test_h265_camera_is_recorded_by_stream_copy(
    appliance: Appliance, rtsp_server_factory: RtspServerFactory, recorder: StartRecorder, tmp_path: Path
) -> None:
    """An H.265 camera: copied like H.264 (sample entry hev1), playable, labelled hevc."""
    server = rtsp_server_factory([f"/{CAMERA}"], codec="h265", width=640, height=360, gop=25, bitrate=800)
    rec = recorder(server.url(), segment_seconds=3)
    assert wait_for(lambda: len(list(appliance.cfg.paths.spool.glob("*.seg"))) >= 2, 30), rec.text()
    rc, _ = rec.terminate()
    assert rc == 0
    assert "rejected=0" in ingest(appliance)
    segs, gaps = indexed(appliance)
    assert len(segs) >= 2 and gaps == []
    for seg in segs:
        assert (seg.meta["codec"], seg.meta["sample_entry"]) in (("hevc", "hev1"), ("hevc", "hvc1")), seg.meta
        video = video_stream(appliance, seg.id, tmp_path)
        assert (video["codec_name"], video["width"], video["height"]) == ("hevc", 640, 360)
        assert seg.meta["duration"] >= 2.5 or seg is segs[-1], seg.meta  # 3 s cuts; the last by SIGTERM


def test_stream_that_is_not_h264_or_h265_is_refused_with_backoff(
    appliance: Appliance, rtsp_server_factory: RtspServerFactory, recorder: StartRecorder, tmp_path: Path
) -> None:
    """A Motion JPEG camera: named in the log, retried with backoff, nothing stored."""
    server = rtsp_server_factory([f"/{CAMERA}"], codec="mjpeg", width=320, height=240, pattern="ball")
    rec = recorder(server.url())
    t0 = time.monotonic()
    assert wait_for(lambda: _failures(rec.text()), 10), rec.text()
    first = _failures(rec.text())[0]
    assert first["camera"] == CAMERA, first
    assert "unsupported codec" in first["cause"] and "Motion JPEG" in first["cause"], first
    assert "H.264 or H.265" in first["cause"], first
    time.sleep(max(0.0, t0 + 9 - time.monotonic()))
    delays = [float(r["retry_in"]) for r in _failures(rec.text())]
    assert 2 <= len(delays) <= 6 and delays == sorted(delays) and delays[-1] >= 2.0, delays
    spool = appliance.cfg.paths.spool
    assert list(spool.glob("*.seg")) == [] and partials(appliance) == []
    rc, took = rec.terminate()
    assert rc == 0 and took < 2.0


@pytest.mark.parametrize(("audio", "codec"), [("aac", None), ("pcmu", "pcm_mulaw"), ("pcma", "pcm_alaw")])
def test_camera_audio_is_kept_and_g711_is_encoded_to_aac(
    appliance: Appliance,
    rtsp_server_factory: RtspServerFactory,
    recorder: StartRecorder,
    tmp_path: Path,
    audio: str,
    codec: str | None,
) -> None:
    """AAC audio is copied like the video. G.711, which many cameras send and MP4 cannot carry,
    would fail every connection under plain stream copy: it is encoded to AAC (said in the log
    and in each segment's metadata) while the video is still copied, and nothing is lost to it."""
    server = rtsp_server_factory([f"/{CAMERA}"], width=640, height=360, gop=25, audio=audio)
    rec = recorder(server.url(), segment_seconds=3)
    spool = appliance.cfg.paths.spool
    assert wait_for(lambda: len(list(spool.glob("*.seg"))) >= 2, 30), rec.text()
    rc, _ = rec.terminate()
    assert rc == 0
    log = rec.text()
    assert "event=camera.unavailable" not in log and "event=camera.disconnected" not in log, log
    assert ("event=camera.audio_encoded" in log) == (codec is not None), log
    if codec is not None:
        assert f"codec={codec} " in log

    assert "rejected=0" in ingest(appliance)
    segs, gaps = indexed(appliance)
    assert len(segs) >= 2 and gaps == []
    for seg in segs:
        assert seg.meta["audio_codec"] == "mp4a" and seg.meta.get("audio_encoded_from") == codec
        info = ffprobe_segment(appliance, seg.id, tmp_path)
        streams = {x["codec_type"]: x for x in info["streams"]}  # type: ignore[union-attr,index]
        assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
        assert float(streams["audio"]["duration"]) > 1.0  # sound all along, not a stub track


def test_new_stream_parameters_start_segments_with_the_new_init(
    appliance: Appliance, rtsp_server_factory: RtspServerFactory, recorder: StartRecorder, tmp_path: Path
) -> None:
    """The camera is reconfigured from 640x360 to 1280x720 (it restarts its stream, as cameras
    do): segments after the change carry the new init and play at the new size."""
    small = make_h264_annexb(tmp_path / "360p.h264", seconds=6, width=640, height=360, gop=25)
    large = make_h264_annexb(tmp_path / "720p.h264", seconds=6, width=1280, height=720, gop=25)
    server = rtsp_server_factory([f"/{CAMERA}"], file=str(small))
    rec = recorder(server.url())
    assert wait_for(lambda: partials(appliance), 20), rec.text()
    time.sleep(3)
    server.stop()
    before = set(partials(appliance))
    rtsp_server_factory([f"/{CAMERA}"], port=server.port, file=str(large))
    assert wait_for(lambda: set(partials(appliance)) - before, 15), rec.text()
    time.sleep(3)
    rc, _ = rec.terminate()
    assert rc == 0, rec.text()

    assert "rejected=0" in ingest(appliance)
    segs, _gaps = indexed(appliance)
    sizes = [(s.meta["width"], s.meta["height"]) for s in segs]
    assert sizes[0] == (640, 360) and sizes[-1] == (1280, 720), sizes
    assert sizes == sorted(sizes), "no segment mixes or reverts the sizes"
    assert segs[0].meta["init_signature"] != segs[-1].meta["init_signature"]
    for s, size in ((segs[0], (640, 360)), (segs[-1], (1280, 720))):
        video = video_stream(appliance, s.id, tmp_path)
        assert (video["width"], video["height"]) == size


def test_non_rtsp_url_is_refused_with_a_clear_error(appliance: Appliance) -> None:
    point_camera_at(appliance, "http://127.0.0.1:1/office-1")
    p = appliance.cli("record", "camera", CAMERA, check=False, timeout=10)
    err = p.stderr.decode()
    assert p.returncode == 2, err  # RestartPreventExitStatus=2: systemd does not loop on it
    assert "cameras[0].url" in err and "not an RTSP URL" in err, err


def test_unknown_camera_exits_with_ex_config(appliance: Appliance) -> None:
    p = appliance.cli("record", "camera", "no-such-cam", check=False, timeout=10)
    assert p.returncode == 78 and "no-such-cam" in p.stderr.decode()


# -- systemd unit ---------------------------------------------------------------------------------


#: Unit template -> (its holdfast arguments, an instance to verify).
UNITS = {
    "holdfast-recorder@.service": ("record camera %i", "office-1"),
    "holdfast-site-recorder@.service": ("record camera --site %i", "hq"),
}


@pytest.mark.parametrize("template", sorted(UNITS))
def test_systemd_unit_verifies(tmp_path: Path, template: str) -> None:
    """`systemd-analyze verify` checks that ExecStart's binary exists and is executable.

    /opt/holdfast is where the package installs; in this checkout the entry point is the venv's
    `holdfast` script, so the test verifies a copy whose ExecStart points there, with the rest
    of the unit (every hardening directive) unchanged.
    """
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    command, instance = UNITS[template]
    text = (REPO / "appliance" / "systemd" / template).read_text()
    assert f"ExecStart=/opt/holdfast/.venv/bin/holdfast {command}\n" in text
    for directive in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Restart=always",
        "User=holdfast",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "RuntimeDirectory=",
        "BindReadOnlyPaths=/var/lib/holdfast/keys/seal.pub\n",
    ):
        assert directive in text, directive
    (rw,) = re.findall(r"^ReadWritePaths=(.*)$", text, flags=re.M)
    assert rw.split() == ["/var/lib/holdfast/spool"]
    entry = Path(sys.executable).with_name("holdfast")
    exec_start = f"{entry} {command}" if entry.exists() else f"{sys.executable} -m cli.main {command}"
    unit = tmp_path / template.replace("@.", f"@{instance}.")
    unit.write_text(text.replace(f"/opt/holdfast/.venv/bin/holdfast {command}", exec_start))
    p = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
