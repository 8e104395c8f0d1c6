"""Accounts, sessions and incidents: who may do what, and the cases footage is kept for.

Lives in `vault` (not `api`) so the CLI can add users without importing the web app. Passwords
are argon2id hashes (argon2-cffi's defaults, RFC 9106 low-memory profile); session and bearer
tokens are random 256-bit values of which only the SHA-256 is stored, so a stolen database
copy does not log anyone in.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from vault.db import Base, UTCDateTime, begin_write
from vault.errors import HoldfastError
from vault.log import event
from vault.timeutil import iso

log = logging.getLogger("holdfast.users")

ROLES = ("security", "auditor", "dpo", "admin")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
#: Consecutive failures before an account is locked, and for how long.
LOCK_AFTER = 5
LOCK_MINUTES = 15
MIN_PASSWORD = 10

_hasher = PasswordHasher()  # argon2id
#: Verified against when the user does not exist, so timing does not reveal which names exist.


@functools.cache
def _dummy_hash() -> str:
    """Verified against for unknown users so timing does not reveal which names exist; made
    lazily because an argon2 hash costs 64 MiB and tens of milliseconds every CLI start would pay."""
    return _hasher.hash("holdfast-no-such-user")


class UserError(HoldfastError):
    """A user cannot be created or changed as asked."""


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    sites: Mapped[list[str]] = mapped_column(JSON)
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiSession(Base):
    """A login: a browser session cookie or a bearer token for scripts (`kind`)."""

    __tablename__ = "api_sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))  # cookie | bearer
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_api_sessions_user", "user_id"),)


class Incident(Base):
    """A case: site, cameras, time range; opening one places a legal hold on its footage."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    cameras: Mapped[list[str]] = mapped_column(JSON)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    description: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    hold_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    opened_by: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    close_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    notes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    __table_args__ = (Index("ix_incidents_site", "site"),)


# -- passwords and users -------------------------------------------------------------------


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password too short: at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def add_user(session: Session, name: str, role: str, sites: list[str], password: str, now: datetime) -> User:
    """Create an account; `security` needs at least one site, other roles take none."""
    if not NAME_RE.match(name):
        raise UserError(f"user name {name!r} must match {NAME_RE.pattern}")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if role == "security" and not sites:
        raise UserError("a security user needs at least one --site (deny by default)")
    if role != "security" and sites:
        raise UserError(f"role {role!r} is not bound to sites; drop --site")
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise UserError(f"user {name!r} already exists")
    user = User(
        name=name,
        role=role,
        sites=sorted(set(sites)),
        password_hash=hash_password(password),
        disabled=False,
        failed_logins=0,
        created_at=now,
    )
    session.add(user)
    session.flush()
    event(log, "users.added", user=name, role=role, sites=",".join(user.sites))
    return user


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    #: ok | bad_credentials | locked | disabled
    outcome: str
    failures: int = 0


def authenticate(session: Session, name: str, password: str, now: datetime) -> LoginResult:
    """Check a password, counting failures; LOCK_AFTER in a row lock the account for a while."""
    user = session.scalar(select(User).where(User.name == name)) if NAME_RE.match(name) else None
    if user is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_dummy_hash(), password)
        return LoginResult(None, "bad_credentials")
    if user.disabled:
        return LoginResult(None, "disabled")
    if user.locked_until is not None and user.locked_until > now:
        return LoginResult(None, "locked", user.failed_logins)
    try:
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        user.failed_logins += 1
        if user.failed_logins >= LOCK_AFTER:
            user.locked_until = now + timedelta(minutes=LOCK_MINUTES)
            event(log, "auth.locked", logging.WARNING, user=name, failures=user.failed_logins)
            return LoginResult(None, "locked", user.failed_logins)
        return LoginResult(None, "bad_credentials", user.failed_logins)
    user.failed_logins = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return LoginResult(user, "ok")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session(session: Session, user: User, kind: str, now: datetime, minutes: int) -> str:
    token = secrets.token_urlsafe(32)
    session.add(
        ApiSession(
            token_sha256=_token_hash(token),
            user_id=user.id,
            kind=kind,
            created_at=now,
            expires_at=now + timedelta(minutes=minutes),
        )
    )
    return token


def session_user(session: Session, token: str, now: datetime) -> User | None:
    """The user a live token belongs to; expired tokens are deleted on sight."""
    if not token or len(token) > 128:
        return None
    row = session.get(ApiSession, _token_hash(token))
    if row is None:
        return None
    if row.expires_at <= now:
        session.delete(row)
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    return user


def end_session(session: Session, token: str) -> None:
    row = session.get(ApiSession, _token_hash(token))
    if row is not None:
        session.delete(row)


def add_incident_note(session: Session, incident_id: int, author: str, at: datetime, text: str) -> Incident:
    """Append a note to an incident's notes, in the caller's transaction.

    Notes are one JSON list on the incident row, so adding one is read-modify-write: the row is
    locked first (SQLite: BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE) so that notes added
    at the same moment by other users are all kept."""
    begin_write(session)
    inc = session.scalars(
        select(Incident)
        .where(Incident.id == incident_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if inc is None:
        raise UserError(f"no incident {incident_id}")
    inc.notes = [*(inc.notes or []), {"by": author, "at": iso(at), "text": text}]
    return inc
