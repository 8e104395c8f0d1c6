"""Retention deadlines: the moment a segment's privacy-notice promise says it must be gone.

A deadline is fixed at ingest from the segment's *end* (the last moment it recorded) and its
class. `days` are exact multiples of 24 hours. `months` are calendar months in the site's
time zone, clamped to the month's last day (2026-11-30 + 3 months = 2027-02-28), which is how a
person reads "kept 3 months".
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from config.model import RetentionClass


def add_months(dt: datetime, months: int) -> datetime:
    y, m = divmod(dt.month - 1 + months, 12)
    year, month = dt.year + y, m + 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return dt.replace(year=year, month=month, day=day)


def deadline(end: datetime, cls: RetentionClass, timezone: str = "UTC") -> datetime:
    if end.tzinfo is None:
        raise ValueError("segment end must be timezone-aware")
    if cls.days is not None:
        return (end + timedelta(days=cls.days)).astimezone(UTC)
    assert cls.months is not None
    local = end.astimezone(ZoneInfo(timezone))
    shifted = add_months(local.replace(tzinfo=None), cls.months).replace(tzinfo=ZoneInfo(timezone))
    return shifted.astimezone(UTC)
