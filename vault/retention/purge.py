"""The purger: delete what the privacy notice says must go, never what a hold keeps, and log it.

Crash-safe order for every segment (Moonfire's garbage-table idea, plus crypto-shredding):

1. one transaction: row -> state 'purging', envelope -> NULL (the key is destroyed: the blob
   and every copy of it are unreadable from here on), a `purge_pending` row records the reason;
2. delete the blob: unlink and fsync its directory (local), or DeleteObjects by version id,
   1,000 versions a call (S3); a blob a previous run already deleted counts as deleted;
3. one transaction: append the purge-log entry (skipped if one exists for the segment), delete
   the segment row and the pending row, sign a checkpoint of the log.

A kill -9 anywhere leaves either a 'stored' row (nothing happened) or a 'purging' row that the
next run finishes first; the log entry and the row deletion commit together, so every purged
segment has exactly one entry and every entry names a segment that is gone.

Fails closed on an untrusted clock (`check_clock`): no NTP sync (unless configured off), or a
clock (read after the queries) behind the last purge run, the last purge-log entry or the newest
segment.

Over 500 lines because the crash-safe order above is one procedure for both stores and the erasure
path; splitting it would hide the order it exists to keep.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import metadata
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from config.model import HoldfastConfig
from vault.errors import HoldfastError
from vault.index.schema import PurgeLogRow, PurgePending, PurgerState, Segment
from vault.ops.logsetup import event
from vault.retention import holds
from vault.retention.clocksync import clock_synchronised
from vault.sealed import keyrotation
from vault.sealed.canonical import canonical_json
from vault.timeutil import iso, parse_iso
from vault.vault import Vault

log = logging.getLogger("holdfast.purge")

REASONS = ("expired", "disk-pressure", "erasure-request")
#: A segment end this far in the future (a recorder or PBX on a slightly fast clock) is tolerated.
SEGMENT_END_SKEW = timedelta(minutes=5)
MAX_BATCH = 10_000
STATE_LAST_RUN = "last_run"
STATE_STORE_FULL = "store_full"


def _purger_version() -> str:
    try:
        return f"holdfast-purge/{metadata.version('holdfast')}"
    except metadata.PackageNotFoundError:
        return "holdfast-purge/0+unknown"


PURGER_VERSION = _purger_version()


class ClockUntrusted(HoldfastError):
    """The purge refused to run because the clock cannot be trusted; nothing was deleted."""


class PurgeError(HoldfastError):
    """A purge request that cannot be carried out as asked."""


class PurgeBusy(HoldfastError):
    """Another purger (on this or another box) holds the index's purge lock; this one did nothing."""


#: PostgreSQL advisory lock key of the one purger across all boxes sharing an index ("HFPURGE").
PURGE_LOCK_KEY = 0x4846505552474500


@contextmanager
def purge_lock(vault: Vault) -> Iterator[None]:
    """One purger at a time across every box that shares the index (PostgreSQL advisory lock,
    held on its own connection for the whole pass; released if the process dies). SQLite is
    one box's index: its write transactions already serialise purgers there."""
    if vault.engine.dialect.name != "postgresql":
        yield
        return
    with vault.engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PURGE_LOCK_KEY}).scalar()
        conn.commit()
        if not got:
            holder = conn.execute(
                text(
                    "SELECT a.pid, coalesce(host(a.client_addr), 'local'), a.application_name, a.backend_start "
                    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted "
                    "AND ((l.classid::bigint << 32) | l.objid::bigint) = :k"
                ),
                {"k": PURGE_LOCK_KEY},
            ).first()
            who = (
                f" (PostgreSQL backend pid {holder[0]} from {holder[1]}, connected since {iso(holder[3])})"
                if holder is not None
                else ""
            )
            event(log, "purge.busy", logging.WARNING, holder=who.strip() or "unknown")
            raise PurgeBusy(
                f"another purger holds the purge lock on this index{who}; one purger runs at a time "
                "across all boxes: this pass did nothing, the next timer run tries again"
            )
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PURGE_LOCK_KEY})
            conn.commit()


# -- the clock guard -------------------------------------------------------------------------


def _state(session: Session, name: str) -> str | None:
    row = session.get(PurgerState, name)
    return None if row is None else row.value


def _set_state(session: Session, name: str, value: str | None) -> None:
    row = session.get(PurgerState, name)
    if value is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(PurgerState(name=name, value=value))
    else:
        row.value = value


def check_clock(
    session: Session,
    now: datetime,
    require_sync: bool,
    sync_check: Callable[[], bool | None],
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Raise ClockUntrusted unless the clock is synchronised and not behind anything we already saw.

    The marks are compared against `clock()` read AFTER the queries (`now` without a clock):
    every mark was taken from the clock before it committed, so it committed before the query
    saw it and a reading after the query is not behind it unless the clock really went back.
    Comparing against `now` (read before the query) would refuse whenever ingest commits a
    segment between the two, which is normal operation.
    """
    if require_sync:
        synced = sync_check()
        if synced is not True:
            why = "cannot tell whether it is" if synced is None else "the kernel reports it is not"
            raise ClockUntrusted(
                f"purge refused: the system clock is not NTP-synchronised ({why}); a wrong clock would "
                "delete footage early. Fix time sync (systemd-timesyncd or chrony), or, for a site "
                "without NTP, set [purge] require_clock_sync = false knowingly"
            )
    marks: list[tuple[str, datetime | None, timedelta]] = []
    last_run = _state(session, STATE_LAST_RUN)
    marks.append(("last purge run", parse_iso(last_run) if last_run else None, timedelta(0)))
    marks.append(
        ("last purge-log entry", session.scalar(select(func.max(PurgeLogRow.purged_at))), timedelta(0))
    )
    marks.append(
        ("newest segment's ingest time", session.scalar(select(func.max(Segment.ingested_at))), timedelta(0))
    )
    marks.append(("newest segment's end", session.scalar(select(func.max(Segment.end))), SEGMENT_END_SKEW))
    if clock is not None:
        now = max(now, clock())
    for what, t, slack in marks:
        if t is not None and now + slack < t:
            raise ClockUntrusted(
                f"purge refused: the clock went backwards: now is {iso(now)}, but the {what} is {iso(t)} "
                f"({(t - now).total_seconds():.0f} s later). Fix the clock; the purge resumes by itself "
                "once it is past that time"
            )


def policy_version(cfg: HoldfastConfig, class_name: str) -> str:
    """Hash of the retention class settings: which promise a purge kept, without copying it each time."""
    cls = cfg.retention.get(class_name)
    body: dict[str, Any] = {"class": class_name, "settings": cls.model_dump() if cls else None}
    return hashlib.sha256(canonical_json(body)).hexdigest()[:16]


# -- the purger --------------------------------------------------------------------------------


@dataclass
class PurgeReport:
    dry_run: bool = False
    resumed: int = 0
    purged: dict[str, int] = field(default_factory=lambda: {r: 0 for r in REASONS})
    checkpoints: int = 0
    holds_expired: int = 0
    store_full: bool = False
    would_purge: list[dict[str, str]] = field(default_factory=list)
    usage_percent: float | None = None
    keys_destroyed: list[str] = field(default_factory=list)
    keys_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "resumed": self.resumed,
            "purged": self.purged,
            "checkpoints": self.checkpoints,
            "holds_expired": self.holds_expired,
            "store_full": self.store_full,
            "usage_percent": self.usage_percent,
            "would_purge": self.would_purge,
            "keys_destroyed": self.keys_destroyed,
            "keys_error": self.keys_error,
        }


class Purger:
    def __init__(
        self,
        vault: Vault,
        sync_check: Callable[[], bool | None] = clock_synchronised,
        batch_size: int | None = None,
    ) -> None:
        self.vault = vault
        self.cfg = vault.cfg
        self.sync_check = sync_check
        # Bounded: a batch is one IN (...) list, and SQLite allows 32,766 parameters.
        self.batch_size = min(batch_size or vault.cfg.purge.batch_size, MAX_BATCH)
        vault.migrate()

    # -- building blocks ---------------------------------------------------------------------

    def _guard(self, session: Session, now: datetime) -> None:
        try:
            check_clock(
                session, now, self.cfg.purge.require_clock_sync, self.sync_check, clock=self.vault.clock
            )
        except ClockUntrusted as e:
            event(log, "purge.refused", logging.ERROR, now=iso(now), reason=str(e))
            raise

    def _mark(self, ids: list[str], reason: str, now: datetime, session: Session) -> list[str]:
        """Step 1 (caller's transaction): shred the keys and mark; only rows still 'stored' and unheld.

        The condition is part of the UPDATE and the marked ids come back from it, so another
        purger (or an erasure) marking the same rows at the same time marks each row once."""
        if not ids:
            return []
        ok = list(
            session.scalars(
                update(Segment)
                .where(Segment.id.in_(ids), Segment.state == "stored", ~holds.held_clause(now))
                .values(state="purging", envelope=None)
                .returning(Segment.id),
                execution_options={"synchronize_session": False},
            )
        )
        if not ok:
            return []
        session.add_all(PurgePending(segment_id=i, reason=reason, marked_at=now) for i in ok)
        session.flush()
        return ok

    def _finish(self, ids: Iterable[str] | None, report: PurgeReport) -> int:
        """Steps 2 and 3 for marked rows (all of them when `ids` is None: the restart path)."""
        v = self.vault
        with v.sessions() as s:
            q = select(Segment.id, Segment.storage_key, Segment.storage_version).where(
                Segment.state == "purging"
            )
            if ids is not None:
                q = q.where(Segment.id.in_(list(ids)))
            rows = s.execute(q).all()
        if not rows:
            return 0
        # Local: unlink each, one fsync per touched directory. S3: DeleteObjects by version id,
        # 1,000 a call; a version already gone counts as deleted (a resumed purge).
        v.store.delete_blobs((key, version) for _sid, key, version in rows)
        ids_ = [sid for sid, _key, _version in rows]
        with v.sessions.begin() as s:
            # The purge log's lock first: another purger finishing the same rows waits here and
            # then finds them gone, so each segment gets exactly one entry; the time is read
            # under the lock, so entries are in time order too.
            v.purge_log.lock(s)
            now = v.clock()
            segs = list(
                s.scalars(
                    select(Segment)
                    .where(Segment.id.in_(ids_), Segment.state == "purging")
                    .order_by(Segment.deadline)
                )
            )
            got = [seg.id for seg in segs]
            reasons = dict(
                s.execute(
                    select(PurgePending.segment_id, PurgePending.reason).where(
                        PurgePending.segment_id.in_(got)
                    )
                ).all()
            )
            logged = set(s.scalars(select(PurgeLogRow.segment_id).where(PurgeLogRow.segment_id.in_(got))))
            items = []
            for seg in segs:
                reason = reasons.get(seg.id, "expired")
                report.purged[reason] = report.purged.get(reason, 0) + 1
                if seg.id in logged:
                    # Defensive: entry and row deletion commit together, so this cannot happen;
                    # if it ever does, the one entry stands and the row just goes.
                    continue
                items.append(
                    (
                        {
                            "segment": seg.id,
                            "source": seg.source,
                            "class": seg.retention_class,
                            "start": iso(seg.start),
                            "end": iso(seg.end),
                            "sha256": seg.sha256,
                            "stored_bytes": seg.stored_bytes,
                            "deadline": iso(seg.deadline),
                            "purged_at": iso(now),
                            "reason": reason,
                            "policy_version": policy_version(self.cfg, seg.retention_class),
                            "purger_version": PURGER_VERSION,
                        },
                        {"segment_id": seg.id, "reason": reason, "purged_at": now},
                    )
                )
            v.purge_log.append_many(s, items)
            s.execute(
                delete(Segment).where(Segment.id.in_(got)), execution_options={"synchronize_session": False}
            )
            s.execute(delete(PurgePending).where(PurgePending.segment_id.in_(got)))
            s.flush()
            if v.purge_log.checkpoint(s, v.sign_key, now) is not None:
                report.checkpoints += 1
            _set_state(s, STATE_LAST_RUN, iso(max(now, self._last_run(s) or now)))
        event(log, "purge.batch", segments=len(rows), log_size=self._log_size())
        return len(rows)

    def _last_run(self, s: Session) -> datetime | None:
        v = _state(s, STATE_LAST_RUN)
        return parse_iso(v) if v else None

    def _log_size(self) -> int:
        with self.vault.sessions() as s:
            return self.vault.purge_log.size(s)

    def usage(self, session: Session) -> tuple[int, int]:
        """(used, total) of the store: its filesystem, or the configured quota over indexed bytes."""
        quota = self.cfg.purge.store_quota_bytes
        if quota:
            used = session.scalar(select(func.coalesce(func.sum(Segment.stored_bytes), 0))) or 0
            return int(used), int(quota)
        return self.vault.store.usage()

    def _expired_ids(self, s: Session, now: datetime, limit: int) -> list[str]:
        return list(
            s.scalars(
                select(Segment.id)
                .where(Segment.state == "stored", Segment.deadline <= now, ~holds.held_clause(now))
                .order_by(Segment.deadline)
                .limit(limit)
            )
        )

    def _pressure_ids(self, s: Session, now: datetime, need: int, limit: int) -> list[str]:
        out: list[str] = []
        freed = 0
        q = (
            select(Segment.id, Segment.stored_bytes)
            .where(Segment.state == "stored", ~holds.held_clause(now))
            .order_by(Segment.start)
            .limit(limit)
        )
        for sid, size in s.execute(q):
            out.append(sid)
            freed += int(size)
            if freed >= need:
                break
        return out

    # -- one pass ------------------------------------------------------------------------------

    def run(self, dry_run: bool = False) -> PurgeReport:
        """One pass: finish interrupted purges, purge expired, then relieve disk pressure.

        Raises PurgeBusy, having done nothing, when another purger holds the lock."""
        if dry_run:
            return self._run(dry_run)
        with purge_lock(self.vault):
            return self._run(dry_run)

    def _run(self, dry_run: bool) -> PurgeReport:
        v = self.vault
        report = PurgeReport(dry_run=dry_run)
        now = v.clock()
        if dry_run:
            with v.sessions() as s:
                self._guard(s, now)
                for sid in self._expired_ids(s, now, 1_000_000):
                    report.would_purge.append({"segment": sid, "reason": "expired"})
            return report
        with v.sessions.begin() as s:
            # Purgers and erasures read the clock in turn, under the purge log's lock: one that
            # read it earlier must not judge it against a mark another has just written.
            v.purge_log.lock(s)
            now = v.clock()
            self._guard(s, now)
            report.holds_expired = len(holds.expire_holds(s, v.access_log, now))
            _set_state(s, STATE_LAST_RUN, iso(now))
        report.resumed = self._finish(None, report)
        if report.resumed:
            event(log, "purge.resumed", segments=report.resumed)
        while True:
            with v.sessions.begin() as s:
                marked = self._mark(self._expired_ids(s, now, self.batch_size), "expired", now, s)
            if not marked:
                break
            self._finish(marked, report)
        self._relieve_pressure(now, report)
        self._prune_keys(report)
        self._compact()
        event(
            log,
            "purge.done",
            **{k: n for k, n in report.purged.items()},
            resumed=report.resumed,
            keys_destroyed=",".join(report.keys_destroyed) or None,
        )
        return report

    def _relieve_pressure(self, now: datetime, report: PurgeReport) -> None:
        v = self.vault
        high = self.cfg.purge.high_water_percent
        while True:
            with v.sessions.begin() as s:
                used, total = self.usage(s)
                pct = 100.0 * used / total if total else 0.0
                report.usage_percent = round(pct, 2)
                if pct <= high:
                    if _state(s, STATE_STORE_FULL) is not None:
                        event(log, "purge.store_ok", usage_percent=round(pct, 2))
                    _set_state(s, STATE_STORE_FULL, None)
                    return
                need = int(used - total * high / 100.0) + 1
                marked = self._mark(
                    self._pressure_ids(s, now, need, self.batch_size), "disk-pressure", now, s
                )
                if not marked:
                    msg = (
                        f"store at {pct:.1f}% (high-water {high}%) and everything left is under legal "
                        "hold: nothing was deleted; ingest stops storing (new segments wait in the spool). "
                        "Add storage or release holds"
                    )
                    _set_state(s, STATE_STORE_FULL, msg)
                    report.store_full = True
                    event(log, "purge.store_full", logging.CRITICAL, usage_percent=round(pct, 2), detail=msg)
                    return
            event(log, "purge.disk_pressure", usage_percent=round(pct, 2), segments=len(marked))
            self._finish(marked, report)

    def _prune_keys(self, report: PurgeReport) -> None:
        """Destroy old seal keys whose last envelope this (or an earlier) pass shredded.

        A failure here does not undo or fail the purge (its log is committed); it is reported
        with the fix, and the next pass tries again."""
        try:
            report.keys_destroyed = keyrotation.prune_and_log(self.vault)
        except OSError as e:
            report.keys_error = (
                f"key prune failed: {e}; the purger needs write access to {self.cfg.keys.dir} "
                "(holdfast-purge.service: ReadWritePaths=/var/lib/holdfast/keys); retried next pass"
            )
            event(log, "keys.prune_failed", logging.ERROR, error=str(e), fix=report.keys_error)

    def _compact(self) -> None:
        """Fold the WAL back so shredded key pages are overwritten (with secure_delete) on disk too."""
        if self.vault.engine.dialect.name == "sqlite":
            with self.vault.engine.connect() as c:
                c.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))

    # -- a targeted delete (erasure request, operator) -------------------------------------------

    def mark_for_erasure(
        self, segment_ids: list[str], *, actor: str, role: str, reason: str
    ) -> tuple[list[str], dict[str, list[str]]]:
        """Step 1 only (shred + mark, reason `erasure-request`), each attempt in the access log;
        `run()` (or `delete_segment`) finishes them like any interrupted purge. Needs no signing
        key. Returns (marked, {refused id: covering hold ids}); ids not (or no longer) stored are
        skipped. Fails closed on an untrusted clock (a hold's end date is judged by it)."""
        v = self.vault
        with v.sessions.begin() as s:
            v.purge_log.lock(s)  # the clock is read in turn with purgers (see run())
            now = v.clock()
            self._guard(s, now)
            segs = list(
                s.scalars(select(Segment).where(Segment.id.in_(segment_ids), Segment.state == "stored"))
            )
            refused: dict[str, list[str]] = {}
            for seg in segs:
                covering = holds.holds_covering(s, seg, now)
                extra: dict[str, Any] = (
                    {"result": "denied: under legal hold", "holds": [h.id for h in covering]}
                    if covering
                    else {}
                )
                v.access_log.record(
                    s,
                    user=actor,
                    role=role,
                    action="segment.erase",
                    purpose=reason,
                    at=now,
                    source=seg.source,
                    start=seg.start,
                    end=seg.end,
                    segment=seg.id,
                    **extra,
                )
                if covering:
                    refused[seg.id] = [h.id for h in covering]
            marked = self._mark([x.id for x in segs if x.id not in refused], "erasure-request", now, s)
        event(log, "purge.erasure_marked", marked=len(marked), refused=len(refused), actor=actor)
        return marked, refused

    def delete_segment(self, segment_id: str, *, actor: str, role: str, reason: str) -> None:
        """Delete one segment now (GDPR erasure); refused, and the refusal logged, if it is held."""
        if not (reason or "").strip():
            raise PurgeError("deleting a segment needs a reason (the erasure request it answers)")
        v = self.vault
        with v.sessions() as s:
            v.get_segment(s, segment_id)  # SegmentNotFound for an unknown id
        marked, refused = self.mark_for_erasure([segment_id], actor=actor, role=role, reason=reason)
        if segment_id in refused:
            event(log, "purge.erase_refused", logging.WARNING, segment=segment_id, actor=actor)
            raise holds.SegmentHeld(
                f"segment {segment_id} is under legal hold ({', '.join(refused[segment_id])}); "
                "nobody can delete it until the hold is released by someone with the release permission"
            )
        if not marked:
            raise PurgeError(f"segment {segment_id} is already being purged")
        self._finish([segment_id], PurgeReport())
        with v.sessions.begin() as s:
            v.access_log.checkpoint(s, v.sign_key, v.clock())


def store_full_reason(session: Session) -> str | None:
    """Set by the purger when only held data is left above the high-water mark; ingest checks it."""
    return _state(session, STATE_STORE_FULL)
