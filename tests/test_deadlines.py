"""Invariant 4: a deadline from the class at ingest; days exact, months calendar and clamped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from config.model import RetentionClass
from vault.retention.deadlines import deadline

DAYS14 = RetentionClass(days=14, purpose="p", legal_basis="b")
MONTHS3 = RetentionClass(months=3, purpose="p", legal_basis="b")


def test_days_are_exact() -> None:
    end = datetime(2026, 3, 28, 12, 0, 5, tzinfo=UTC)  # across the EU DST change
    assert deadline(end, DAYS14, "Europe/Helsinki") == end + timedelta(days=14)


def test_months_clamp_to_month_end() -> None:
    end = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert deadline(end, MONTHS3, "UTC") == datetime(2027, 2, 28, 10, 0, tzinfo=UTC)
    assert deadline(datetime(2027, 11, 30, 10, 0, tzinfo=UTC), MONTHS3, "UTC") == datetime(
        2028, 2, 29, 10, 0, tzinfo=UTC
    )
    assert deadline(datetime(2026, 1, 15, tzinfo=UTC), MONTHS3, "UTC") == datetime(2026, 4, 15, tzinfo=UTC)


def test_months_count_in_the_site_calendar() -> None:
    # 2027-01-31 22:30 UTC is already Feb 1 00:30 in Helsinki: three local months later is
    # May 1 00:30 EEST = Apr 30 21:30 UTC, not the UTC-calendar Apr 30 22:30.
    end = datetime(2027, 1, 31, 22, 30, tzinfo=UTC)
    assert deadline(end, MONTHS3, "Europe/Helsinki") == datetime(2027, 4, 30, 21, 30, tzinfo=UTC)
    assert deadline(end, MONTHS3, "UTC") == datetime(2027, 4, 30, 22, 30, tzinfo=UTC)
