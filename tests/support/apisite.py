"""An appliance with footage, a second site and one user per role, for the API tests.

The fixtures (`api_site`, `client`, `tokens`) are imported by name into each API test module,
so each module builds its own site once (module scope) and no test depends on another file.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from config.model import HoldfastConfig
from tests.support.accounts import PASSWORD, add_user, log_in
from tests.support.appliance import Appliance, make_appliance
from tests.support.footage import record
from tests.support.rgw import RgwCluster, use_s3_store

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
USERS = {
    "sec": ("security", ["demo"]),
    "north": ("security", ["north"]),
    "aud": ("auditor", []),
    "dpo": ("dpo", []),
    "adm": ("admin", []),
}

#: A second site with one camera, appended to an appliance's config.
NORTH_SITE = """
[[sites]]
id = "north"
name = "Another site"
timezone = "Europe/Helsinki"
country = "FI"

[[cameras]]
id = "north-1"
site = "north"
url = "rtsp://127.0.0.1:8554/north-1"
retention = "office-camera"
"""
EXTRA_CONFIG = (
    NORTH_SITE
    + """
[[lines]]
id = "cs-2"
site = "demo"
retention = "call-audio"
hash_remote = true
announced = true
"""
)
#: Calls sealed into the site: (call_id, line, agent, direction, remote, minutes after T0).
CALLS = [
    ("call-1", "cs-1", "anna", "in", "+358 40 123 4567", 1),
    ("call-2", "cs-1", "bert", "out", "+358 50 765 4321", 2),
    ("call-3", "cs-2", "anna", "in", "+358 40 123 4567", 3),
]
CALL_SECONDS = 6.0


@dataclass
class ApiSite:
    app: Appliance
    segments: list[str]
    north_segments: list[str]
    calls: dict[str, str]  # call_id -> segment id


def build_site(directory: Path, count: int = 14, rgw: RgwCluster | None = None) -> ApiSite:
    """office-1: `count` 10 s segments from T0 with a 30 s gap after the 6th; north-1: 2 segments.

    With `rgw`, the segments are stored in a bucket on it (the S3 store)."""
    app = make_appliance(directory)
    if rgw is not None:
        use_s3_store(app, rgw)
    with open(app.config_path, "a", encoding="utf-8") as f:
        f.write(EXTRA_CONFIG)
    for name, (role, sites) in USERS.items():
        add_user(app, name, role, *sites)
    record(app, "office-1", T0, count, 10.0, gap_after={5: 30.0}, gap_reason="camera offline: network")
    record(app, "north-1", T0, 2, 10.0)
    record_calls(app)
    v = app.vault()
    from vault.index.queries import find_segments

    with v.sessions() as s:
        segs = [x.id for x in find_segments(s, "office-1", None, None, None)]
        north = [x.id for x in find_segments(s, "north-1", None, None, None)]
        calls = {
            str(x.meta["call_id"]): x.id
            for line in ("cs-1", "cs-2")
            for x in find_segments(s, line, None, None, None)
        }
    v.close()
    return ApiSite(app, segs, north, calls)


def record_calls(app: Appliance) -> None:
    """Ogg Opus calls (ffmpeg), sealed with call metadata as the recorder writes it; cs-2 hashes the remote."""
    from vault.media.callmeta import hash_remote, load_remote_hash_key
    from vault.timeutil import iso

    audio = app.dir / "media" / "call.ogg"
    audio.parent.mkdir(exist_ok=True)
    make_call_audio(audio, CALL_SECONDS)
    app.cli("call", "hash-key", "--init")
    key = load_remote_hash_key(app.cfg.keys.dir)
    for call_id, line, agent, direction, remote, minutes in CALLS:
        start = iso(T0 + timedelta(minutes=minutes))
        party = f"remote_hash={hash_remote(key, remote)}" if line == "cs-2" else f"remote={remote}"
        meta = [f"agent={agent}", f"direction={direction}", f"call_id={call_id}", f"line={line}", party]
        meta += ["mime=audio/ogg; codecs=opus", f"call_start={start}", "container=ogg"]
        args = ["seal", "--source", line, "--start", start, "--duration", str(CALL_SECONDS)]
        for m in meta:
            args += ["--meta", m]
        app.cli(*args, str(audio))
    app.cli("ingest", "--once")


def make_call_audio(out: Path, seconds: float) -> Path:
    """A 440 Hz tone encoded as the call recorder does: Opus in Ogg, 24 kbit/s."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
        + ["-i", f"sine=frequency=440:duration={seconds}:sample_rate=48000"]
        + ["-c:a", "libopus", "-b:a", "24k", "-application", "voip", "-f", "ogg", str(out)],
        check=True,
        timeout=60,
    )
    return out


def with_api(cfg: HoldfastConfig, **api: Any) -> HoldfastConfig:
    """`cfg` with some `[api]` keys changed: an app built from it is another worker's settings."""
    return cfg.model_copy(update={"api": cfg.api.model_copy(update=api)})


@pytest.fixture(scope="module")
def api_site(tmp_path_factory: pytest.TempPathFactory) -> ApiSite:
    return build_site(tmp_path_factory.mktemp("apisite") / "site")


@pytest.fixture(scope="module")
def client(api_site: ApiSite) -> Iterator[TestClient]:
    with TestClient(create_app(api_site.app.cfg)) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(client: TestClient) -> dict[str, str]:
    """A bearer token for every user in USERS."""
    return log_in(client, USERS)


__all__ = [
    "CALLS",
    "NORTH_SITE",
    "PASSWORD",
    "T0",
    "USERS",
    "ApiSite",
    "api_site",
    "build_site",
    "client",
    "tokens",
    "with_api",
]
