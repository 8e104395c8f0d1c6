"""vault.store.watch: the directory watcher under the spool ingest and the PBX import."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.wait import wait_for
from vault.store.watch import DirectoryWatcher


def test_arrivals_are_returned_and_rescans_follow_their_interval(tmp_path: Path) -> None:
    with DirectoryWatcher(tmp_path, 3600) as w:
        (tmp_path / "a.partial").write_bytes(b"x")
        os.rename(tmp_path / "a.partial", tmp_path / "a.seg")
        seen: set[Path] = set()
        wait_for(lambda: seen.update(w.wait(1.0)) or tmp_path / "a.seg" in seen, timeout=30)
        assert tmp_path / "a.partial" in seen  # created, then moved in under its final name
        assert w.rescan_due() is False  # an hour has not passed
    with DirectoryWatcher(tmp_path, 0.0) as w:
        assert w.rescan_due() is True  # 0: every loop rescans
