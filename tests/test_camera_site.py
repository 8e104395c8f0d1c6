"""One recorder process for several cameras (`holdfast record camera --site SITE`), as processes.

Each camera keeps its own ffmpeg, gaps and backoff inside the shared process: one camera's outage
or failure must not touch another's recording. The daemon speaks to systemd through a real
datagram socket here (NOTIFY_SOCKET), exactly as under PID 1.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import RtspServerFactory
from tests.support.appliance import Appliance
from tests.support.media import make_h264_annexb, requires_ffmpeg
from tests.support.notify import NotifySocket
from tests.support.scan import plaintext_media_files
from tests.support.wait import wait_for
from vault.index.schema import Gap, Segment

pytestmark = [pytest.mark.slow, requires_ffmpeg]

CAMERAS = ("office-1", "garage-1")
WATCHDOG_SECONDS = 4.0


@pytest.fixture(scope="module")
def small_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "small.h264"
    return make_h264_annexb(path, seconds=6, width=640, height=360, gop=25, bitrate_kbps=800)


def configure(appliance: Appliance, urls: dict[str, str], segment_seconds: int = 4) -> None:
    text = appliance.config_path.read_text()
    for cam, url in urls.items():
        text, n = re.subn(rf'^url = "rtsp://127\.0\.0\.1:8554/{cam}"$', f'url = "{url}"', text, flags=re.M)
        assert n == 1, cam
    text = text.replace("segment_seconds = 10", f"segment_seconds = {segment_seconds}")
    appliance.config_path.write_text(text)


def partials(appliance: Appliance, cam: str) -> list[Path]:
    return sorted((appliance.cfg.paths.spool / ".partial").glob(f"{cam}.*.seg.part"))


def indexed(appliance: Appliance, cam: str) -> tuple[list[Segment], list[Gap]]:
    with appliance.vault() as v, v.sessions() as s:
        segs = s.query(Segment).filter_by(source=cam).order_by(Segment.start).all()
        gaps = s.query(Gap).filter_by(source=cam).order_by(Gap.start).all()
        s.expunge_all()
    return segs, gaps


class SiteRecorder:
    """`holdfast record camera --site demo` with its own notify socket and log file."""

    def __init__(self, appliance: Appliance, tmp: Path, name: str) -> None:
        self.notify = NotifySocket(tmp / f"{name}.sock")
        self.log = tmp / f"{name}.log"
        with open(self.log, "ab") as f:
            self.proc = appliance.popen(
                "record",
                "camera",
                "--site",
                "demo",
                env=self.notify.env(WATCHDOG_SECONDS),
                stdout=f,
                stderr=f,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self) -> str:
        values = self.notify.values("STATUS")
        return values[-1] if values else ""

    def watchdog_gaps(self) -> list[float]:
        t = self.notify.times("WATCHDOG=1")
        return [b - a for a, b in zip(t, t[1:], strict=False)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


@pytest.fixture
def site_recorder(
    appliance: Appliance, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[str], SiteRecorder]:
    """start(name): a started SiteRecorder of the appliance, its files named `name`; stopped at
    teardown."""

    def start(name: str) -> SiteRecorder:
        rec = SiteRecorder(appliance, tmp_path, name)
        request.addfinalizer(rec.stop)
        return rec

    return start


@pytest.fixture
def small_camera(rtsp_server_factory: RtspServerFactory, small_stream: Path) -> RtspServerFactory:
    """camera(*mounts): an RTSP server looping the small stream on those mounts."""
    return lambda *mounts: rtsp_server_factory(mounts, file=str(small_stream))


def test_site_recorder_isolates_cameras_survives_kill_and_speaks_to_systemd(
    appliance: Appliance, small_camera: RtspServerFactory, site_recorder: Callable[[str], SiteRecorder]
) -> None:
    office = small_camera("/office-1")
    garage = small_camera("/garage-1")
    configure(appliance, {"office-1": office.url("/office-1"), "garage-1": garage.url("/garage-1")})
    spool = appliance.cfg.paths.spool

    rec = site_recorder("first")
    # READY only once every camera records.
    assert wait_for(lambda: rec.notify.values("READY"), 30), rec.text()
    assert all(partials(appliance, c) for c in CAMERAS), "READY before every camera recorded"
    assert wait_for(lambda: rec.status() == "recording 2/2 cameras", 5), rec.notify.poll()
    time.sleep(5)

    # garage-1's camera goes away: office-1 records on, untouched; STATUS names garage-1.
    down = datetime.now().astimezone()
    garage.stop()
    assert wait_for(lambda: rec.status().startswith("recording 1/2 cameras; reconnecting to garage-1"), 10), (
        rec.notify.poll()
    )
    time.sleep(6)
    before = set(partials(appliance, "garage-1"))
    garage.start()
    up = datetime.now().astimezone()
    assert wait_for(lambda: set(partials(appliance, "garage-1")) - before, 6), rec.text()
    assert wait_for(lambda: rec.status() == "recording 2/2 cameras", 5), rec.notify.poll()
    time.sleep(3)

    # kill -9 mid-segment (each camera has a whole 64 KiB chunk sealed): the next process
    # recovers every camera's partial, cut short.
    assert wait_for(
        lambda: all(p.stat().st_size > 70_000 for c in CAMERAS for p in partials(appliance, c)), 10
    )
    rec.proc.kill()
    rec.proc.wait()
    killed = {c: partials(appliance, c)[0].name.split(".")[1] for c in CAMERAS}
    assert plaintext_media_files(spool) == []
    wd = rec.watchdog_gaps()
    assert len(wd) >= 8 and max(wd) < WATCHDOG_SECONDS, wd  # pinged all along, outage included

    rec2 = site_recorder("second")
    assert wait_for(lambda: rec2.notify.values("READY"), 30), rec2.text()
    # Recovered, or (a segment opened in the instant before the kill) reported and dropped.
    dropped = {
        c for c, seg_id in killed.items() if f"event=camera.partial_dropped camera={c} " in rec2.text()
    }
    assert len(dropped) < len(CAMERAS), rec2.text()
    assert all((spool / f"{killed[c]}.seg").exists() for c in CAMERAS if c not in dropped), rec2.text()
    time.sleep(3)
    t0 = time.monotonic()
    rec2.proc.send_signal(signal.SIGTERM)
    assert rec2.proc.wait(10) == 0
    assert time.monotonic() - t0 < 2.5, "SIGTERM must close every camera's segment within 2 s"
    assert "STOPPING=1" in [m for _, m in rec2.notify.poll()]
    assert "event=camera.crashed" not in rec.text() + rec2.text()
    assert plaintext_media_files(spool) == []

    out = appliance.cli("ingest", "--once").stdout.decode()
    assert "rejected=0" in out, out
    office_segs, office_gaps = indexed(appliance, "office-1")
    garage_segs, garage_gaps = indexed(appliance, "garage-1")
    # office-1 lost only the instant of the kill; garage-1 also its camera's outage.
    assert [g.reason.split(";")[0] for g in office_gaps] == ["recorder killed"], office_gaps
    assert [g.reason.split(";")[0] for g in garage_gaps][1:] == ["recorder killed"], garage_gaps
    outage = garage_gaps[0]
    assert abs((outage.end - outage.start).total_seconds() - (up - down).total_seconds()) <= 2.0
    for segs, gaps in ((office_segs, office_gaps), (garage_segs, garage_gaps)):
        spans = sorted([(s.start, s.end) for s in segs] + [(g.start, g.end) for g in gaps])
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, "overlap"  # no overlap, and everything is a segment or a gap
            assert (start - end).total_seconds() < 0.5, (end, start)
    by_id = {s.id: s for s in office_segs + garage_segs}
    for cam, seg_id in killed.items():
        if cam not in dropped:
            assert by_id[seg_id].cut_short and by_id[seg_id].meta["end_reason"] == "recorder killed"
    assert all(
        s.meta["end_reason"] != "recorder killed" for s in by_id.values() if s.id not in killed.values()
    )
    assert plaintext_media_files(spool, appliance.cfg.paths.store) == []


def test_one_camera_failing_unexpectedly_restarts_alone(
    appliance: Appliance, small_camera: RtspServerFactory, site_recorder: Callable[[str], SiteRecorder]
) -> None:
    """A fault only one camera hits (its state file is a directory: disk damage) is logged with
    where it happened and retried with backoff, while the other camera records on."""
    server = small_camera("/office-1", "/garage-1")
    configure(appliance, {c: server.url(f"/{c}") for c in CAMERAS})
    state = appliance.cfg.paths.spool / ".recorder" / "garage-1.json"
    state.mkdir(parents=True)

    rec = site_recorder("faulty")
    crashed = lambda n: rec.text().count("event=camera.crashed") >= n  # noqa: E731
    open_fds = lambda: len(os.listdir(f"/proc/{rec.proc.pid}/fd"))  # noqa: E731
    assert wait_for(lambda: crashed(2), 20), rec.text()
    fds_after_two = open_fds()
    assert wait_for(lambda: crashed(4), 20), rec.text()
    # Failing every few seconds for months must not leak a descriptor per attempt.
    assert open_fds() <= fds_after_two + 1, (fds_after_two, open_fds())
    crashes = [ln for ln in rec.text().splitlines() if "event=camera.crashed" in ln]
    assert all("camera=garage-1" in ln and "IsADirectoryError" in ln for ln in crashes), crashes
    assert re.search(r'at="recorder/camera\.py:\d+ \(in pathlib\.py:\d+\)"', crashes[0]), crashes[0]
    retries = [float(re.search(r"retry_in=([\d.]+)", ln)[1]) for ln in crashes]  # type: ignore[index]
    assert retries[:4] == [1.0, 2.0, 4.0, 8.0], retries
    assert partials(appliance, "office-1") and not partials(appliance, "garage-1")
    # Between retries STATUS names the failure (a fresh attempt briefly reads "connecting").
    assert wait_for(lambda: "garage-1 failed (IsADirectoryError" in rec.status(), 2), rec.status()
    assert not rec.notify.values("READY")  # not every camera records

    state.rmdir()  # repaired: the camera starts at its next retry
    assert wait_for(lambda: partials(appliance, "garage-1"), 15), rec.text()
    assert wait_for(lambda: rec.notify.values("READY"), 5)
    rec.proc.send_signal(signal.SIGTERM)
    assert rec.proc.wait(10) == 0
    assert "rejected=0" in appliance.cli("ingest", "--once").stdout.decode()
    office_segs, _ = indexed(appliance, "office-1")
    garage_segs, _ = indexed(appliance, "garage-1")
    assert office_segs and garage_segs
    # office-1 was never interrupted: its segments abut from its first to its last.
    for a, b in zip(office_segs, office_segs[1:], strict=False):
        assert abs((b.start - a.end).total_seconds()) < 0.5, (a.end, b.start)


def test_a_second_recorder_of_the_same_camera_waits_for_the_first(
    appliance: Appliance, small_camera: RtspServerFactory, tmp_path: Path
) -> None:
    """Two processes for one camera (a per-camera unit and a per-site unit, or a copy run by
    hand) would recover each other's live partials: the second waits, naming the first's PID."""
    server = small_camera("/office-1", "/garage-1")
    configure(appliance, {c: server.url(f"/{c}") for c in CAMERAS})
    with open(tmp_path / "one.log", "ab") as f1, open(tmp_path / "two.log", "ab") as f2:
        first = appliance.popen("record", "camera", "office-1", stdout=f1, stderr=f1)
        try:
            assert wait_for(lambda: partials(appliance, "office-1"), 20)
            second = appliance.popen("record", "camera", "--site", "demo", stdout=f2, stderr=f2)
            try:
                text = lambda: (tmp_path / "two.log").read_text()  # noqa: E731
                assert wait_for(lambda: "event=camera.busy" in text(), 15), text()
                busy = next(ln for ln in text().splitlines() if "event=camera.busy" in ln)
                assert "camera=office-1" in busy and f"holder_pid={first.pid}" in busy, busy
                assert wait_for(lambda: partials(appliance, "garage-1"), 20)  # the other camera records
                assert len(partials(appliance, "office-1")) == 1  # and office-1 stays the first's
                assert "event=camera.recovered" not in text()
                first.send_signal(signal.SIGTERM)
                assert first.wait(10) == 0
                n = len(list(appliance.cfg.paths.spool.glob("*.seg")))
                # The second takes over office-1 at its next retry (backoff of at most 30 s).
                assert wait_for(lambda: partials(appliance, "office-1"), 35), text()
                assert len(list(appliance.cfg.paths.spool.glob("*.seg"))) >= n
                second.send_signal(signal.SIGTERM)
                assert second.wait(10) == 0
            finally:
                if second.poll() is None:
                    second.kill()
        finally:
            if first.poll() is None:
                first.kill()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), 2, "name the cameras to record, or one site"),
        (("office-1", "--site", "demo"), 2, "not both"),
        (("--site", "nowhere"), 78, "unknown site 'nowhere'"),
    ],
)
def test_record_camera_arguments(
    appliance: Appliance, args: tuple[str, ...], code: int, message: str
) -> None:
    p = appliance.cli("record", "camera", *args, check=False, timeout=30)
    assert p.returncode == code and message in p.stderr.decode(), p.stderr


def test_site_without_enabled_cameras_exits_with_ex_config(appliance: Appliance) -> None:
    text = appliance.config_path.read_text().replace(
        'retention = "office-camera"\n', 'retention = "office-camera"\nenabled = false\n'
    )
    text = text.replace('retention = "parking-camera"\n', 'retention = "parking-camera"\nenabled = false\n')
    appliance.config_path.write_text(text)
    p = appliance.cli("record", "camera", "--site", "demo", check=False, timeout=30)
    assert p.returncode == 78 and "no enabled cameras" in p.stderr.decode(), p.stderr
