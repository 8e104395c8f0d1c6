"""GET /metrics on the real app: a camera's last-segment age grows while its RTSP server is down
(real GStreamer server, real `holdfast record camera`, real `holdfast ingest` and `holdfast serve`),
and who may read it (loopback without login; from elsewhere an admin's token)."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from tests.conftest import RtspServerFactory, free_port
from tests.support.appliance import Appliance
from tests.support.media import make_h264_annexb, requires_ffmpeg
from tests.support.wait import wait_for
from vault.people.users import Actor, add_user

CAMERA = "office-1"
AGE = "holdfast_camera_last_segment_age_seconds"


def camera_age(text: str, camera: str = CAMERA) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == AGE and s.labels.get("camera") == camera:
                return float(s.value)
    return None


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in reversed(started):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@requires_ffmpeg
def test_metrics_age_grows_while_the_camera_server_is_down(
    appliance: Appliance,
    rtsp_server_factory: RtspServerFactory,
    procs: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    # A small pre-encoded stream with a 1 s GOP and 2 s segments: the first segment is indexed
    # within seconds and the test stays short on a shared 2-core machine.
    stream = make_h264_annexb(tmp_path / "cam.h264", seconds=10, width=320, height=240, gop=25)
    server = rtsp_server_factory([f"/{CAMERA}"], file=str(stream))
    text = appliance.config_path.read_text()
    text, n = re.subn(
        rf'^url = "rtsp://127\.0\.0\.1:8554/{CAMERA}"\nretention = "office-camera"\nsegment_seconds = 10$',
        f'url = "{server.url()}"\nretention = "office-camera"\nsegment_seconds = 2\nstall_seconds = 2',
        text,
        flags=re.M,
    )
    assert n == 1, text
    appliance.config_path.write_text(text)
    port = free_port()
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("recorder", "ingest", "api")}  # noqa: SIM115
    try:
        procs.append(
            appliance.popen("record", "camera", CAMERA, stdout=logs["recorder"], stderr=subprocess.STDOUT)
        )
        procs.append(appliance.popen("ingest", stdout=logs["ingest"], stderr=subprocess.STDOUT))
        procs.append(
            appliance.popen("serve", "--port", str(port), stdout=logs["api"], stderr=subprocess.STDOUT)
        )

        def log(name: str) -> str:
            return (tmp_path / f"{name}.log").read_text(errors="replace")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                assert r.headers["Content-Type"].startswith("text/plain")
                return r.read().decode()

        def scraped_age() -> float | None:
            try:
                return camera_age(scrape())
            except OSError:
                return None

        # Recording: a segment is indexed and its age stays around a segment's length.
        assert wait_for(lambda: scraped_age() is not None, 30, step=0.25), (
            log("recorder") + log("ingest") + log("api")
        )
        up_age = scraped_age()
        assert up_age is not None and up_age < 15, up_age

        # The camera's server goes away: the recorder closes its segment and records a gap;
        # once ingest has drained the spool nothing new arrives, and the age only grows.
        server.stop()
        spool = appliance.cfg.paths.spool
        assert wait_for(
            lambda: not list((spool / ".partial").glob(f"{CAMERA}.*")) and not list(spool.glob("*.seg")), 15
        ), log("recorder")
        # A connection's segments are stamped from its first fragment's arrival, which ffmpeg's
        # stream probing delays by up to a second: the last end can lie that much ahead of now,
        # and the age reads 0 until the clock passes it.
        assert wait_for(lambda: (scraped_age() or 0.0) > 0.0, 5, step=0.25)
        t1, a1 = time.monotonic(), scraped_age()
        time.sleep(5)
        t2, a2 = time.monotonic(), scraped_age()
        assert a1 is not None and a2 is not None
        assert a2 - a1 >= 5.0 - 0.5 and a2 - a1 <= (t2 - t1) + 1.0, (a1, a2, t2 - t1)
        m = scrape()
        assert all(line.startswith(("#", "holdfast_")) for line in m.splitlines() if line)
        assert 'holdfast_camera_gaps_total{camera="office-1"}' in m
        assert 'holdfast_class_held{class="office-camera"} 0.0' in m
        assert procs[0].poll() is None, "the recorder keeps retrying: " + log("recorder")
    finally:
        for f in logs.values():
            f.close()


def test_metrics_off_the_box_needs_an_admin(appliance: Appliance) -> None:
    """TestClient's peer is "testclient", not loopback: like a scraper on another host."""
    cfg = appliance.cfg
    with appliance.vault() as v:
        v.migrate()
        with v.sessions.begin() as s:
            by = Actor("test-setup", "local-operator")
            add_user(s, "ops", "admin", [], "admin password 1", v.clock(), access_log=v.access_log, by=by)
            add_user(
                s,
                "guard",
                "security",
                ["demo"],
                "guard password 1",
                v.clock(),
                access_log=v.access_log,
                by=by,
            )
    client = TestClient(create_app(cfg))

    def token(name: str, pw: str) -> str:
        r = client.post("/api/v1/auth/token", data={"username": name, "password": pw})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers={"Authorization": f"Bearer {token('guard', 'guard password 1')}"})
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    r = client.get("/metrics", headers={"Authorization": f"Bearer {token('ops', 'admin password 1')}"})
    assert r.status_code == 200 and "holdfast_class_segments" in r.text
