"""Accounts, sessions and incidents: who may do what, and the cases footage is kept for.

Lives in `vault` (not `api`) so the CLI can add users without importing the web app. Passwords
are argon2id hashes (argon2-cffi's defaults, RFC 9106 low-memory profile); session and bearer
tokens are random 256-bit values of which only the SHA-256 is stored, so a stolen database
copy does not log anyone in.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import (
    Engine,
    and_,
    bindparam,
    case,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from vault.errors import HoldfastError
from vault.index.db import begin_write
from vault.index.schema import ApiSession, Incident, User
from vault.ledger.ledgers import AccessLog
from vault.ops.logsetup import event
from vault.timeutil import iso

log = logging.getLogger("holdfast.users")

ROLES = ("security", "auditor", "dpo", "admin")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
#: Consecutive failures before an account is locked, and for how long.
LOCK_AFTER = 5
LOCK_MINUTES = 15
MIN_PASSWORD = 10

_hasher = PasswordHasher()  # argon2id
#: Verified against when there is no usable account hash (unknown, disabled or locked account), so
#: every login costs one argon2 verification with the same parameters and timing says nothing
#: about which accounts exist. Fixed: computing it would cost the first login an extra hash.
DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$GLtX/cTBbpQ57T6+jkvhLw$+KSydG63G/gcLf6cyaRSUbSKQjWpKylehsvsE/aU8Gc"
)
#: The access log's purpose for account administration entries.
ACCOUNT_PURPOSE = "account administration"


class UserError(HoldfastError):
    """A user cannot be created or changed as asked."""


class UnknownUser(UserError):
    """No account by that name."""


@dataclass(frozen=True)
class Actor:
    """Who changes an account, as the access log names them (an admin, or the console's OS user)."""

    name: str
    role: str


# -- passwords and users -------------------------------------------------------------------


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password too short: at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def _check_role_sites(role: str, sites: list[str]) -> None:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if role == "security" and not sites:
        raise UserError("a security user needs at least one site (deny by default)")
    if role != "security" and sites:
        raise UserError(f"role {role!r} is not bound to sites; drop the sites")


def _audit(
    session: Session, access_log: AccessLog, by: Actor, action: str, now: datetime, name: str, **details: Any
) -> None:
    access_log.record_by(session, by, action=action, purpose=ACCOUNT_PURPOSE, at=now, account=name, **details)


def add_user(
    session: Session,
    name: str,
    role: str,
    sites: list[str],
    password: str,
    now: datetime,
    *,
    access_log: AccessLog,
    by: Actor,
) -> User:
    """Create an account; `security` needs at least one site, other roles take none. Logged
    (`account.add`) in the access log, in the caller's transaction, naming `by`."""
    if not NAME_RE.match(name):
        raise UserError(f"user name {name!r} must match {NAME_RE.pattern}")
    _check_role_sites(role, sites)
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
    _audit(session, access_log, by, "account.add", now, name, account_role=role, sites=user.sites)
    event(log, "users.added", user=name, role=role, sites=",".join(user.sites), by=by.name)
    return user


def get_user(session: Session, name: str) -> User:
    """The account, locked for change (its row: PostgreSQL FOR UPDATE; SQLite: BEGIN IMMEDIATE)."""
    begin_write(session)
    user = session.scalars(
        select(User).where(User.name == name).with_for_update().execution_options(populate_existing=True)
    ).first()
    if user is None:
        raise UnknownUser(f"no user {name!r} (see `holdfast users list`)")
    return user


def end_sessions(session: Session, user_id: int) -> int:
    """Delete every session and bearer token of the user; returns how many there were."""
    n = session.execute(delete(ApiSession).where(ApiSession.user_id == user_id)).rowcount
    return int(n or 0)


def set_role(
    session: Session,
    access_log: AccessLog,
    by: Actor,
    name: str,
    role: str,
    sites: list[str],
    now: datetime,
) -> User:
    """Change an account's role (and its sites: required for security, none otherwise)."""
    _check_role_sites(role, sites)
    user = get_user(session, name)
    before_role, before_sites = user.role, list(user.sites or [])
    user.role, user.sites = role, sorted(set(sites))
    _audit(
        session,
        access_log,
        by,
        "account.set_role",
        now,
        name,
        account_role=role,
        sites=user.sites,
        previous_role=before_role,
        previous_sites=before_sites,
    )
    return user


def set_sites(
    session: Session, access_log: AccessLog, by: Actor, name: str, sites: list[str], now: datetime
) -> User:
    """Change the sites of a security account (at least one)."""
    user = get_user(session, name)
    if user.role != "security":
        raise UserError(f"user {name!r} has role {user.role!r}, which is not bound to sites")
    _check_role_sites(user.role, sites)
    before = list(user.sites or [])
    user.sites = sorted(set(sites))
    _audit(session, access_log, by, "account.set_sites", now, name, sites=user.sites, previous_sites=before)
    return user


def set_disabled(
    session: Session, access_log: AccessLog, by: Actor, name: str, disabled: bool, now: datetime
) -> User:
    """Disable (every session ends at once; logins refused) or enable an account."""
    user = get_user(session, name)
    user.disabled = disabled
    ended = end_sessions(session, user.id) if disabled else 0
    action = "account.disable" if disabled else "account.enable"
    _audit(session, access_log, by, action, now, name, **({"sessions_ended": ended} if disabled else {}))
    return user


def unlock(session: Session, access_log: AccessLog, by: Actor, name: str, now: datetime) -> User:
    """Clear the failure counter and the lock."""
    user = get_user(session, name)
    before = user.failed_logins
    user.failed_logins, user.locked_until = 0, None
    _audit(session, access_log, by, "account.unlock", now, name, failed_logins=before)
    return user


def logout_everywhere(session: Session, access_log: AccessLog, by: Actor, name: str, now: datetime) -> int:
    """End every session and token of the account (log out everywhere); returns how many."""
    user = get_user(session, name)
    ended = end_sessions(session, user.id)
    _audit(session, access_log, by, "account.logout", now, name, sessions_ended=ended)
    return ended


def remove_user(session: Session, access_log: AccessLog, by: Actor, name: str, now: datetime) -> None:
    """Delete an account and every session it has (its name stays in the logs it appears in)."""
    user = get_user(session, name)
    ended = end_sessions(session, user.id)
    role = user.role
    session.delete(user)
    session.flush()
    _audit(session, access_log, by, "account.remove", now, name, account_role=role, sessions_ended=ended)


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    #: ok | bad_credentials | locked | disabled
    outcome: str
    failures: int = 0


def _verify(password_hash: str, password: str) -> bool:
    """One argon2 verification (64 MiB, tens of ms); the API bounds how many run at once."""
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def authenticate(
    sessions: sessionmaker[Session],
    name: str,
    password: str,
    now: datetime,
) -> LoginResult:
    """Check a password; LOCK_AFTER failures in a row lock the account for LOCK_MINUTES.

    Every outcome costs exactly one argon2 verification (against DUMMY_HASH when there is no
    usable account) and no sleep. The attempt is counted *before* the password is checked, with
    one atomic UPDATE that refuses once the account is locked, so however many guesses arrive
    at once, at most LOCK_AFTER are checked per lock period. No transaction is open while the
    password is checked (it would hold SQLite's write lock for the argon2 time).
    """
    user_id: int | None = None
    password_hash = DUMMY_HASH
    outcome = "bad_credentials"
    attempt = 0
    with sessions.begin() as s:
        row = (
            s.execute(select(User.id, User.password_hash, User.disabled).where(User.name == name)).first()
            if NAME_RE.match(name)
            else None
        )
        if row is not None and row.disabled:
            outcome = "disabled"
        elif row is not None:
            expired = and_(User.locked_until.is_not(None), User.locked_until <= now)
            counted = s.execute(
                update(User)
                .where(
                    User.id == row.id,
                    User.disabled.is_(False),
                    or_(User.locked_until.is_(None), User.locked_until <= now),
                )
                .values(
                    failed_logins=case((expired, 1), else_=User.failed_logins + 1),
                    locked_until=case(
                        (expired, None),
                        (User.failed_logins + 1 >= LOCK_AFTER, now + timedelta(minutes=LOCK_MINUTES)),
                        else_=User.locked_until,
                    ),
                )
                .returning(User.failed_logins)
                .execution_options(synchronize_session=False)
            ).first()
            if counted is None:
                outcome = "locked"
            else:
                user_id, password_hash, attempt = int(row.id), str(row.password_hash), int(counted[0])
    ok = _verify(password_hash, password)
    if user_id is None:
        return LoginResult(None, outcome)
    if not ok:
        if attempt >= LOCK_AFTER:
            event(log, "auth.locked", logging.WARNING, user=name, failures=attempt)
            return LoginResult(None, "locked", attempt)
        return LoginResult(None, "bad_credentials", attempt)
    with sessions.begin() as s:
        # Cleared only if no other attempt was counted since this one: a guess racing a
        # correct login keeps its count.
        s.execute(
            update(User)
            .where(User.id == user_id, User.failed_logins == attempt)
            .values(failed_logins=0, locked_until=None)
            .execution_options(synchronize_session=False)
        )
        user = s.get(User, user_id)
        if user is None or user.disabled:
            return LoginResult(None, "disabled")
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        s.expunge(user)
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


@dataclass(frozen=True)
class TokenOwner:
    """Who a live token belongs to: what every API request needs to know, and no more."""

    user_id: int
    name: str
    role: str
    sites: tuple[str, ...]


#: token_owner's statement, built once: constructing it cost more than running it.
_OWNER = (
    select(User.id, User.name, User.role, User.sites, User.disabled, ApiSession.expires_at)
    .join(ApiSession, ApiSession.user_id == User.id)
    .where(ApiSession.token_sha256 == bindparam("digest"))
)


def token_owner(engine: Engine, token: str, now: datetime) -> TokenOwner | None:
    """The owner of a live token in one indexed join on a plain connection (no ORM session, no
    write): this runs on every API request. An expired token is deleted when seen.

    `engine` may be the autocommit reader (`Vault.reader`, as the API passes it): the delete is
    one statement that checks the expiry itself, atomic on its own, so it needs no transaction
    around it and no snapshot shared with the read."""
    if not token or len(token) > 128:
        return None
    digest = _token_hash(token)
    with engine.connect() as c:
        row = c.execute(_OWNER, {"digest": digest}).first()
    if row is None or row.disabled:
        return None
    if row.expires_at <= now:
        with engine.begin() as c:
            c.execute(
                delete(ApiSession).where(ApiSession.token_sha256 == digest, ApiSession.expires_at <= now)
            )
        return None
    return TokenOwner(int(row.id), str(row.name), str(row.role), tuple(row.sites or ()))


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
