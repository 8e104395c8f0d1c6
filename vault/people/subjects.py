"""Data subjects' access requests (GDPR art. 15): the record the DPO answers against a deadline.

A request names who asks (a description, not an account), whether and how their identity was
verified (Heka verifies identity first), the sources and time range they were in, and the day it
must be answered by (Heka: 30 days, Kunta-asunnot: two weeks: `api.subject_request_days`).
Opening one places a legal hold on that footage so it survives until answered; answering it
releases the hold with a reason. Lives in `vault` beside incidents so a CLI can reach it too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vault.index.db import Base, UTCDateTime


class SubjectRequest(Base):
    __tablename__ = "subject_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(Text)
    identity_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    identity_note: Mapped[str] = mapped_column(Text, default="")
    #: The DPO who recorded the identity check, and when: every export names them.
    identity_verified_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    identity_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sources: Mapped[list[str]] = mapped_column(JSON)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | answered
    hold_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    opened_by: Mapped[str] = mapped_column(String(64))
    closed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    close_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: One entry per export: who, when, blur mode, sources (no footage, no file hashes needed here).
    exports: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    __table_args__ = (Index("ix_subject_requests_state", "state"),)
