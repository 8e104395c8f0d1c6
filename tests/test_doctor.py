"""`holdfast doctor`: every failure it checks is produced for real here and reported with its fix."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RtspServerFactory, free_port
from tests.support.appliance import Appliance


def set_config(app: Appliance, pattern: str, repl: str, count: int = 0) -> None:
    text, n = re.subn(pattern, repl, app.config_path.read_text(), count=count, flags=re.M)
    assert n, pattern
    app.config_path.write_text(text)


def point_cameras(app: Appliance, urls: dict[str, str]) -> None:
    for cam, url in urls.items():
        set_config(app, rf'^url = "rtsp://[^"]*/{cam}"$', f'url = "{url}"')


@pytest.fixture
def app(appliance: Appliance) -> Appliance:
    """Cameras on a closed port by default, clock sync not required: checks start from a known state."""
    port = free_port()
    point_cameras(appliance, {c: f"rtsp://127.0.0.1:{port}/{c}" for c in ("office-1", "garage-1")})
    set_config(appliance, r"^require_clock_sync = true$", "require_clock_sync = false")
    return appliance


def doctor(app: Appliance, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    p = subprocess.run(
        [
            *__import__("tests.support.appliance", fromlist=["HOLDFAST"]).HOLDFAST,
            "doctor",
            "--json",
            "--camera-timeout",
            "2",
        ],
        env=env or app.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    return p.returncode, rows


def failing(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in rows.items() if v["status"] == "FAIL"}


def test_healthy_box_with_cameras_up_and_one_needing_credentials(
    app: Appliance, rtsp_server_factory: RtspServerFactory
) -> None:
    open_srv = rtsp_server_factory(mounts=("/office-1",), width=320, height=240, pattern="ball")
    auth_srv = rtsp_server_factory(
        mounts=("/garage-1",), width=320, height=240, pattern="ball", user="cam", password="s3cret"
    )
    point_cameras(app, {"office-1": open_srv.url("/office-1"), "garage-1": auth_srv.url("/garage-1")})
    rc, rows = doctor(app)
    assert failing(rows) == {} and rc == 0, rows
    assert rows["camera office-1"]["status"] == "OK" and rows["camera garage-1"]["status"] == "OK"
    assert rows["units"]["status"] in ("SKIP", "OK")

    # Wrong password: the server answers 401 to our digest; reported as credentials.
    point_cameras(app, {"garage-1": auth_srv.url("/garage-1", credentials=("cam", "wrong"))})
    rc, rows = doctor(app)
    assert rc == 1 and set(failing(rows)) == {"camera garage-1"}
    row = rows["camera garage-1"]
    assert row["detail"].startswith("credentials") and "wrong user or password" in row["detail"]
    assert "user and password" in row["fix"]
    # No credentials at all.
    point_cameras(app, {"garage-1": auth_srv.url("/garage-1", credentials=False)})
    rc, rows = doctor(app)
    assert rows["camera garage-1"]["detail"].startswith("credentials")


def test_camera_on_a_closed_port_is_unreachable(app: Appliance) -> None:
    rc, rows = doctor(app)
    assert rc == 1
    row = rows["camera office-1"]
    assert row["status"] == "FAIL" and row["detail"].startswith("unreachable") and "refused" in row["detail"]
    assert "network" in row["fix"]


def test_private_key_readable_by_others(app: Appliance) -> None:
    key = app.cfg.keys.dir / "seal.key"
    key.chmod(0o644)
    rc, rows = doctor(app)
    assert rc == 1
    row = rows["keys seal.key"]
    assert row["status"] == "FAIL" and "0644" in row["detail"] and row["fix"] == f"chmod 600 {key}"
    key.chmod(0o600)
    _, rows = doctor(app)
    assert rows["keys"]["status"] == "OK"


def test_ffmpeg_missing_from_path(app: Appliance, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    rc, rows = doctor(app, env={**app.env(), "PATH": str(empty)})
    assert rc == 1
    assert rows["ffmpeg"]["status"] == "FAIL" and "apt-get install ffmpeg" in rows["ffmpeg"]["fix"]
    assert rows["ffprobe"]["status"] == "FAIL"


def test_unmigrated_database(app: Appliance) -> None:
    fresh = app.dir / "fresh.db"
    set_config(app, r'^url = "sqlite:///.*"$', f'url = "sqlite:///{fresh}"')
    rc, rows = doctor(app)
    row = rows["database"]
    assert rc == 1 and row["status"] == "FAIL" and "revision none" in row["detail"]
    assert "holdfast ingest --once" in row["fix"]
    app.cli("ingest", "--once")
    _, rows = doctor(app)
    assert rows["database"]["status"] == "OK"


def test_store_above_high_water_on_a_small_tmpfs(app: Appliance) -> None:
    store = app.cfg.paths.store
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(store)], capture_output=True)
    if p.returncode != 0:
        # No mount privilege in this container: the same check via a configured tiny mark.
        set_config(app, r"^high_water_percent = .*$", "high_water_percent = 0.001")
    try:
        if p.returncode == 0:
            (store / "fill").write_bytes(b"\0" * 950_000)
        rc, rows = doctor(app)
        row = rows["disk store"]
        assert rc == 1 and row["status"] == "FAIL" and "high-water" in row["detail"]
        assert "disk-pressure" in row["fix"]
    finally:
        if p.returncode == 0:
            subprocess.run(["umount", str(store)], check=True)


def test_clock_not_synchronised_fails_closed(app: Appliance) -> None:
    from appliance.doctor import clock_state

    set_config(app, r"^require_clock_sync = false$", "require_clock_sync = true")
    rc, rows = doctor(app)
    if clock_state() is True:
        assert rows["clock"]["status"] == "OK"
        pytest.skip("this machine's clock is NTP-synchronised: the unsynchronised case cannot be produced")
    row = rows["clock"]
    assert rc == 1 and row["status"] == "FAIL" and "purger refuses" in row["detail"]
    assert "timedatectl set-ntp true" in row["fix"] and "require_clock_sync = false" in row["fix"]


def test_invalid_config(app: Appliance) -> None:
    set_config(app, r'^retention = "parking-camera"$', 'retention = "parkin"')
    rc, rows = doctor(app)
    assert rc == 1
    assert rows["config"]["status"] == "FAIL" and 'unknown class "parkin"' in rows["config"]["detail"]
    assert "holdfast config check" in rows["config"]["fix"]
