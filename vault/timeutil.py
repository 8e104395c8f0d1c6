"""Time handling: everything is timezone-aware UTC inside Holdfast; parsing is strict."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_iso(value: str, what: str = "time") -> datetime:
    """Parse ISO 8601; a time without an offset is refused, since guessing the zone moves evidence."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"{what}: {value!r} is not an ISO 8601 time (e.g. 2026-11-21T08:30:00Z)") from None
    if dt.tzinfo is None:
        raise ValueError(f"{what}: {value!r} has no UTC offset (add Z or +02:00)")
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is a valid ISO string whose UTC instant precedes year 1.
        raise ValueError(f"{what}: {value!r} lies outside the representable years 1-9999 in UTC") from None


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")
