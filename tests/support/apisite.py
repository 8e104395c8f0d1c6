"""An appliance with footage, a second site and one user per role, for the API tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.appliance import Appliance, make_appliance
from tests.support.footage import record

PASSWORD = "correct horse battery"
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
USERS = {
    "sec": ("security", ["demo"]),
    "north": ("security", ["north"]),
    "aud": ("auditor", []),
    "dpo": ("dpo", []),
    "adm": ("admin", []),
}

EXTRA_CONFIG = """
[[sites]]
id = "north"
name = "Another site"
timezone = "Europe/Helsinki"

[[cameras]]
id = "north-1"
site = "north"
url = "rtsp://127.0.0.1:8554/north-1"
retention = "office-camera"
"""


@dataclass
class ApiSite:
    app: Appliance
    segments: list[str]
    north_segments: list[str]


def build_site(directory: Path, count: int = 14) -> ApiSite:
    """office-1: `count` 10 s segments from T0 with a 30 s gap after the 6th; north-1: 2 segments."""
    app = make_appliance(directory)
    with open(app.config_path, "a", encoding="utf-8") as f:
        f.write(EXTRA_CONFIG)
    for name, (role, sites) in USERS.items():
        args = ["users", "add", name, "--role", role, "--password-stdin"]
        for s in sites:
            args += ["--site", s]
        app.cli(*args, input=(PASSWORD + "\n").encode())
    record(app, "office-1", T0, count, 10.0, gap_after={5: 30.0}, gap_reason="camera offline: network")
    record(app, "north-1", T0, 2, 10.0)
    v = app.vault()
    from vault.index import segments_in_range

    with v.sessions() as s:
        segs = [x.id for x in segments_in_range(s, "office-1")]
        north = [x.id for x in segments_in_range(s, "north-1")]
    v.close()
    return ApiSite(app, segs, north)


@pytest.fixture(scope="module")
def api_site(tmp_path_factory: pytest.TempPathFactory) -> ApiSite:
    return build_site(tmp_path_factory.mktemp("apisite") / "site")
