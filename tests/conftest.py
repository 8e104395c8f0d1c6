"""Shared fixtures: free ports and a real RTSP server (GstRtspServer in /usr/bin/python3)."""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from tests.support import postgres, rgw
from tests.support.appliance import (
    Appliance,
    leftover_scratches,
    make_appliance,
    remove_appliance_scratches,
)
from tests.support.rgw import use_s3_store
from tests.support.rtsp import RtspServer, gst_rtsp_available
from tests.support.rtsp import free_port as _free_port

DEFAULT_MOUNTS = ("/office-1", "/garage-1")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port()


@functools.cache
def _gst_rtsp() -> tuple[bool, str]:
    return gst_rtsp_available()


def require_gst_rtsp() -> None:
    """Skip the calling test, with the reason, when GstRtspServer cannot be imported."""
    ok, reason = _gst_rtsp()
    if not ok:
        pytest.skip(reason)


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """The free_port() helper as a fixture: call it for each port a test needs."""
    return free_port


RtspServerFactory = Callable[..., RtspServer]


@pytest.fixture
def rtsp_server_factory() -> Iterator[RtspServerFactory]:
    """Start custom servers: factory(mounts=(...), port=0, **opts); all stopped at teardown."""
    require_gst_rtsp()
    servers: list[RtspServer] = []

    def factory(
        mounts: tuple[str, ...] | list[str] = DEFAULT_MOUNTS, port: int = 0, **opts: Any
    ) -> RtspServer:
        server = RtspServer(port, mounts, **opts)
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def rtsp_server(rtsp_server_factory: RtspServerFactory) -> RtspServer:
    """A started server: 1080p25 snow at 4 Mbit/s, GOP 50, mounts /office-1 and /garage-1."""
    return rtsp_server_factory()


# -- the appliance itself ------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def no_scratch_left_on_tmpfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the session if a `holdfast init` scratch this process's tests caused is still in
    /dev/shm at the end. The scratch is beside, not inside, the directory pytest cleans, so a
    test that starts an appliance without make_appliance (the demo, an init run as a process)
    must remove it itself, after its processes are gone. Only configs under this process's
    basetemp are looked at: other xdist workers and other runs share /dev/shm."""
    yield
    remove_appliance_scratches()
    left = leftover_scratches(tmp_path_factory.getbasetemp())
    for scratch in left:
        shutil.rmtree(scratch, ignore_errors=True)
    if left:
        pytest.fail(
            "tmpfs scratch left behind (removed now; the test that made the config must remove it "
            "once its processes are gone):\n"
            + "\n".join(f"  {s} (paths.scratch of {c})" for s, c in left.items())
        )


@pytest.fixture
def appliance(tmp_path: Path) -> Appliance:
    """A fresh `holdfast init` directory (config, keys, SQLite index, spool, store)."""
    return make_appliance(tmp_path / "site")


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail("ffmpeg is not installed: `make test` installs it (apt-get install ffmpeg)")
    return path


# -- PostgreSQL: the scale-out index; the same ingest tests run on both backends -----------


class _Service(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


def _for_the_session(available: Callable[[], tuple[bool, str]], start: Callable[[], S]) -> Iterator[S]:
    """A private server started once for the session and stopped after it; the test is skipped,
    saying why, where `available()` finds it cannot run on this machine."""
    ok, why = available()
    if not ok:
        pytest.skip(why)
    service = start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres.PostgresCluster]:
    yield from _for_the_session(postgres.available, lambda: postgres.PostgresCluster().start())


def use_database(app: Appliance, url: str) -> Appliance:
    """Point an appliance's config at another database URL and migrate it."""
    text = app.config_path.read_text()
    text = re.sub(r'^url = "sqlite:///.*"$', f'url = "{url}"', text, count=1, flags=re.M)
    app.config_path.write_text(text)
    with app.vault() as v:
        v.migrate()
    return app


@pytest.fixture(params=["sqlite", "postgresql"])
def db_appliance(request: pytest.FixtureRequest, tmp_path: Path) -> Appliance:
    """The same appliance on SQLite and on PostgreSQL, local store: for what the database
    serialises (logs, accounts, notes), where the store plays no part."""
    app = make_appliance(tmp_path / "site")
    if request.param == "postgresql":
        use_database(app, request.getfixturevalue("postgres_cluster").create_database())
    return app


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-s3"])
def any_appliance(request: pytest.FixtureRequest, tmp_path: Path) -> Appliance:
    """The same appliance on SQLite and on PostgreSQL (and PostgreSQL with the S3 store, the
    scale-out pair): nothing in the logic is SQLite-only or local-disk-only."""
    app = make_appliance(tmp_path / "site")
    if request.param.startswith("postgresql"):
        cluster = request.getfixturevalue("postgres_cluster")
        use_database(app, cluster.create_database())
    if request.param.endswith("-s3"):
        use_s3_store(app, request.getfixturevalue("rgw_cluster"))
    return app


# -- Ceph RGW: the S3 store; the same retention, hold, crash, tamper and API tests run on both --


@pytest.fixture(scope="session")
def rgw_cluster() -> Iterator[rgw.RgwCluster]:
    """One private Ceph (mon, memstore OSD, radosgw) for the whole session: ~3-10 s to start."""
    yield from _for_the_session(rgw.available, lambda: rgw.RgwCluster().start())


@pytest.fixture(params=["local", "s3"])
def store_appliance(request: pytest.FixtureRequest, tmp_path: Path) -> Appliance:
    """The same appliance with the local store and with the S3 store on Ceph RGW."""
    app = make_appliance(tmp_path / "site")
    if request.param == "s3":
        use_s3_store(app, request.getfixturevalue("rgw_cluster"))
    return app
