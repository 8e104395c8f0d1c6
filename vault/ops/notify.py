"""systemd sd_notify: READY, WATCHDOG and STATUS for Type=notify units; a no-op outside systemd."""

from __future__ import annotations

import os

import sdnotify

_notifier = sdnotify.SystemdNotifier()


def notify(*states: str) -> None:
    if os.environ.get("NOTIFY_SOCKET"):
        _notifier.notify("\n".join(states))


def watchdog_interval() -> float | None:
    """Half the unit's WatchdogSec, or None when no watchdog is configured."""
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2e6 if usec and usec.isdigit() else None
