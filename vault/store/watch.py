"""Watching a directory for files to take: inotify (watchdog) wakes the loop, a rescan is the truth.

Serves the spool ingest (vault.store.ingest) and the PBX directory (recorder.pbx). An event is only a
hint: one can be missed (a full inotify queue, a file moved in before the watch started), so
each loop also rescans the directory on its own schedule.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


class DirectoryWatcher:
    """One directory (not recursive), watched while the `with` block runs.

    `wait(timeout)` returns the paths created in or moved into the directory since the last
    call, as soon as there is one (or [] after `timeout`); with `any_change`, any event (a file
    still being written, too) ends the wait early. `rescan_due()` says when `rescan_seconds`
    have passed since the last rescan it allowed (0: every time).
    """

    def __init__(self, directory: Path, rescan_seconds: float, any_change: bool = False) -> None:
        self.directory = directory
        self.rescan_seconds = rescan_seconds
        self.any_change = any_change
        self._events: queue.Queue[Path | None] = queue.Queue()
        self._observer: Any = None
        self._last_scan = time.monotonic()

    def __enter__(self) -> DirectoryWatcher:
        events, any_change = self._events, self.any_change

        class Handler(FileSystemEventHandler):
            def on_any_event(self, ev: FileSystemEvent) -> None:
                if ev.event_type == "created":
                    events.put(Path(str(ev.src_path)))
                elif ev.event_type == "moved":
                    events.put(Path(str(ev.dest_path)))
                elif any_change:
                    events.put(None)

        self._observer = Observer()
        self._observer.schedule(Handler(), str(self.directory), recursive=False)
        self._observer.start()
        self._last_scan = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def wait(self, timeout: float) -> list[Path]:
        """Paths that arrived since the last call, waiting up to `timeout` s for the first event."""
        try:
            first = self._events.get(timeout=timeout)
        except queue.Empty:
            return []
        got = [first]
        while True:
            try:
                got.append(self._events.get_nowait())
            except queue.Empty:
                break
        return [p for p in got if p is not None]

    def rescan_due(self) -> bool:
        """True (and the clock restarts) once `rescan_seconds` have passed since the last rescan."""
        now = time.monotonic()
        if now - self._last_scan < self.rescan_seconds:
            return False
        self._last_scan = now
        return True


def listing(directory: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """The rescan: files in `directory` by name, hidden ones (a leading dot: being written) left
    out, those `keep` accepts; [] while the directory does not exist."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    return [directory / n for n in names if not n.startswith(".") and keep(directory / n)]
