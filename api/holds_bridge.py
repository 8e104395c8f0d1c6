"""Incidents ↔ legal holds (vault.holds, branch retention). Placeholder until it is merged."""

from __future__ import annotations

from typing import Any


def place(st: Any, session: Any, incident: Any, who: Any) -> str | None:
    return None


def release(st: Any, session: Any, incident: Any, who: Any, reason: str) -> None:
    return None
