"""Polling for what a daemon under test does in its own time (files, log lines, STATUS)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float, step: float = 0.1) -> bool:
    """True as soon as ``predicate()`` is truthy; after ``timeout`` s, its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
