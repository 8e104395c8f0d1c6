"""A wall clock a test sets by hand, for code that takes a clock (recorder.segmenter.Clock)."""

from __future__ import annotations

from datetime import datetime


class SetClock:
    """``now()`` is whatever the test last put in ``t``."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t
