"""Shared fixtures. Tests use the real thing: real files, real ffmpeg, real SQLite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.appliance import Appliance, make_appliance


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
