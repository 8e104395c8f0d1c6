"""Spool ingest: verify, index with a retention deadline, move into the store; crash-safe.

Order of operations for one segment (see docs/ingest-and-store.md, "Ingest and crash safety"):

1. authenticate the whole spooled file (every chunk) with the vault's private key;
2. write its stored form (envelope detached) to `store/...`: temp file, fsync, rename, fsync dir;
   on S3: PUT (Content-MD5 checked by the server) then HEAD of the new version, with its legal
   hold already ON when a hold covers its range;
3. insert the index row, carrying the envelope (and the object version), in one transaction;
4. unlink the spool file and fsync the spool directory.

A kill -9 between any two steps leaves the spool file in place; the rerun finds either no row
(redo 2 and 3: step 2 replaces its own earlier output atomically) or a row with this very
envelope (a duplicate delivery: only step 4 remains). So every segment is either still in the
spool or in both the store and the index, and the index never has it twice.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from config.model import ID_PATTERN
from vault.errors import StoreError
from vault.index.schema import Gap, PurgeLogRow, PurgePending, Segment, Source
from vault.ops.logsetup import event
from vault.ops.notify import notify, watchdog_interval
from vault.retention import deadlines
from vault.retention.purge import store_full_reason
from vault.sealed.seal import (
    SealError,
    SegmentReader,
    Truncated,
    detach_envelope,
    inspect,
    read_header,
    shred_envelope,
)
from vault.store import legalholds
from vault.store.fsutil import fsync_dir
from vault.store.spool import ERASE_SUFFIX, GAP_SUFFIX, REJECTED_DIR, SEG_SUFFIX, SEGMENT_ID_RE, ensure_spool
from vault.store.watch import DirectoryWatcher, listing
from vault.timeutil import iso, parse_iso
from vault.vault import Vault

log = logging.getLogger("holdfast.ingest")

#: A file still changing this recently may be an operator's copy in progress: retry, don't reject.
SETTLE_SECONDS = 10.0

_SOURCE_RE = __import__("re").compile(ID_PATTERN)


class Rejected(Exception):
    """This spool file can never be ingested as it is; it goes to spool/rejected/ with the reason."""


@dataclass
class IngestStats:
    indexed: int = 0
    duplicates: int = 0
    gaps: int = 0
    rejected: int = 0
    deferred: int = 0
    erasures: int = 0
    rejected_files: list[str] = field(default_factory=list)


class Ingestor:
    def __init__(self, vault: Vault, on_indexed: Callable[[Segment], None] | None = None) -> None:
        self.vault = vault
        self.cfg = vault.cfg
        self.spool = vault.cfg.paths.spool
        self.on_indexed = on_indexed
        #: A site box holds only seal.pub: it indexes from the segment's structure and leaves
        #: authentication to the readers that hold the private key (docs/ingest-and-store.md, "Many sites").
        self.keyless = not any(vault.cfg.keys.dir.glob("seal*.key"))
        if self.keyless:
            event(log, "ingest.keyless", keys=str(vault.cfg.keys.dir), verify="structure only")
        ensure_spool(self.spool)
        self.vault.migrate()
        self._sync_sources()

    def _sync_sources(self) -> None:
        """The config is the truth for sources; the index keeps a row per source for foreign keys.

        Several ingests (site boxes sharing one index) may start at once: the one that loses the
        race to insert a source row just looks again."""
        for attempt in range(5):
            try:
                self._sync_sources_once()
                return
            except IntegrityError:
                if attempt == 4:
                    raise  # the conflicting insert committed before ours failed: the retry sees it

    def _sync_sources_once(self) -> None:
        with self.vault.sessions.begin() as s:
            for item, kind in [(c, "camera") for c in self.cfg.cameras] + [
                (ln, "line") for ln in self.cfg.lines
            ]:
                row = s.get(Source, item.id)
                if row is None:
                    s.add(Source(id=item.id, kind=kind, site=item.site, retention_class=item.retention))
                else:
                    row.kind, row.site, row.retention_class = kind, item.site, item.retention

    # -- one file ------------------------------------------------------------------------

    def pending(self) -> list[Path]:
        return listing(self.spool, lambda p: p.name.endswith((SEG_SUFFIX, GAP_SUFFIX, ERASE_SUFFIX)))

    def process(self, path: Path) -> str:
        """Ingest one spool file; returns indexed | duplicate | gap | erasure | rejected | deferred | gone.

        Several ingest processes may drain one spool: a file another one finished (and unlinked)
        while this one looked at it is "gone", not an error."""
        try:
            return self._process(path)
        except FileNotFoundError:
            if path.exists():
                raise
            event(log, "ingest.gone", path=path.name, reason="another ingest process took it")
            return "gone"

    def _process(self, path: Path) -> str:
        if not path.exists():
            return "gone"
        try:
            if path.name.endswith(ERASE_SUFFIX):
                return self._ingest_erasure(path)
            if path.name.endswith(GAP_SUFFIX):
                self._ingest_gap(path)
                return "gap"
            return self._ingest_segment(path)
        except Rejected as e:
            self._reject(path, str(e))
            return "rejected"
        except Truncated as e:
            if time.time() - path.stat().st_mtime < SETTLE_SECONDS:
                event(log, "ingest.deferred", path=path.name, reason=str(e))
                return "deferred"
            self._reject(path, f"verification failed: {type(e).__name__}: {e}")
            return "rejected"
        except SealError as e:
            self._reject(path, f"verification failed: {type(e).__name__}: {e}")
            return "rejected"
        except StoreError as e:
            # The store is unreachable or refused the write: the file waits in the spool.
            event(log, "ingest.store_unavailable", logging.WARNING, path=path.name, error=str(e))
            return "deferred"

    def _segment_fields(self, res: Any, path: Path) -> dict[str, Any]:
        meta = res.meta
        source = meta.get("source")
        if not isinstance(source, str) or not _SOURCE_RE.match(source):
            raise Rejected(f"segment metadata names an invalid source {source!r}")
        try:
            src_cfg = self.cfg.source(source)
        except KeyError:
            raise Rejected(f"segment is from source {source!r}, which is not in the configuration") from None
        if not SEGMENT_ID_RE.match(res.segment_id):
            raise Rejected(f"segment id {res.segment_id!r} is not a safe identifier")
        try:
            start = parse_iso(str(meta.get("start", "")), "segment start")
        except ValueError as e:
            raise Rejected(str(e)) from None
        trailer = res.trailer
        end: datetime
        if trailer.get("end"):
            try:
                end = parse_iso(str(trailer["end"]), "segment end")
            except ValueError as e:
                raise Rejected(str(e)) from None
        elif isinstance(trailer.get("duration"), int | float):
            end = start + timedelta(seconds=float(trailer["duration"]))
        else:
            end = start
        if end < start:
            raise Rejected(f"segment ends ({iso(end)}) before it starts ({iso(start)})")
        duration = trailer.get("duration")
        if not isinstance(duration, int | float):
            duration = (end - start).total_seconds()
        class_name, cls = self.cfg.retention_for(source)
        tz = self.cfg.site(src_cfg.site).timezone
        kind = meta.get("kind") or ("video" if self.cfg.source_kind(source) == "camera" else "audio")
        merged = {k: v for k, v in trailer.items()}
        merged.update(meta)
        if not res.trailer_authenticated:
            merged["trailer_authenticated"] = False
        return {
            "id": res.segment_id,
            "source": source,
            "kind": str(kind),
            "start": start,
            "end": end,
            "duration": float(duration),
            "plaintext_bytes": res.plaintext_bytes,
            "retention_class": class_name,
            "deadline": deadlines.deadline(end, cls, tz),
            "cut_short": res.cut_short,
            "meta": merged,
            "key_id": res.key_id.hex(),
        }

    def _ingest_segment(self, path: Path) -> str:
        with self.vault.sessions() as s:
            full = store_full_reason(s)
        if full is not None:
            # Only held footage is left above the high-water mark: the spool keeps the segment.
            event(log, "ingest.store_full", logging.WARNING, path=path.name, reason=full)
            return "deferred"
        self._refuse_if_purged(path)
        with open(path, "rb") as f:
            res = inspect(f) if self.keyless else SegmentReader(f, self.vault.keyring).verify()
        fields = self._segment_fields(res, path)
        if self.keyless:
            fields["meta"]["authenticated_at_ingest"] = False
        with self.vault.sessions() as s:
            existing = s.get(Segment, res.segment_id)
            if existing is not None:
                if existing.envelope == res.envelope:
                    self._unlink(path)
                    event(log, "ingest.duplicate", segment=res.segment_id, path=path.name)
                    return "duplicate"
                raise Rejected(f"segment id {res.segment_id} is already indexed with different content")
        store = self.vault.store
        key = store.key_for(fields["source"], fields["start"], res.segment_id)
        held = False
        if store.supports_legal_holds:
            # Into a held range: the object is written with its legal hold already ON.
            with self.vault.sessions() as s:
                held = legalholds.is_covered_now(
                    s, fields["source"], fields["start"], fields["end"], self.vault.clock()
                )
        try:
            with open(path, "rb") as src, store.writer(key, legal_hold=held) as dst:
                _hdr, sha, stored = detach_envelope(src, dst)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # The filesystem filled before the purger saw it: keep the segment in the spool
            # and retry, instead of dying on every restart while the disk stays full.
            event(
                log,
                "ingest.store_full",
                logging.WARNING,
                path=path.name,
                reason=f"no space left in the store ({store.describe()}): {e.strerror}; the "
                "segment waits in the spool until the purger or an operator frees space",
            )
            return "deferred"
        seg = Segment(
            **fields,
            stored_bytes=stored,
            sha256=sha,
            storage_key=key,
            storage_version=dst.version_id,
            state="stored",
            envelope=res.envelope,
            ingested_at=self.vault.clock(),
        )
        try:
            with self.vault.sessions.begin() as s:
                s.add(seg)
        except IntegrityError:
            # Another ingest process won the race with this very file; the next pass dedups it.
            event(log, "ingest.race", logging.WARNING, segment=res.segment_id)
            self._drop_losing_version(res.segment_id, key, dst.version_id)
            return "deferred"
        if store.supports_legal_holds and not held:
            # A hold placed between the check above and the commit saw no row to lock: look again
            # (a new object's legal hold is OFF, so only a hold found now costs a request).
            with self.vault.sessions() as s:
                held_now = legalholds.is_covered_now(s, seg.source, seg.start, seg.end, self.vault.clock())
            if held_now:
                store.set_legal_hold(key, dst.version_id, True)
        self._unlink(path)
        event(
            log,
            "ingest.indexed",
            segment=seg.id,
            source=seg.source,
            start=iso(seg.start),
            end=iso(seg.end),
            deadline=iso(seg.deadline),
            bytes=seg.plaintext_bytes,
            cut_short=seg.cut_short,
        )
        if self.on_indexed is not None:
            self.on_indexed(seg)
        return "indexed"

    def _drop_losing_version(self, segment_id: str, key: str, version: str | None) -> None:
        """The race's loser uploaded its own version of the object; the winner's row names another."""
        if version is None:
            return
        with self.vault.sessions() as s:
            row = s.get(Segment, segment_id)
            winner = None if row is None else row.storage_version
        if winner is not None and winner != version:
            self.vault.store.delete_blobs([(key, version)])

    def _ingest_gap(self, path: Path) -> None:
        try:
            body = json.loads(path.read_text("utf-8"))
            gid, source, reason = str(body["id"]), str(body["source"]), str(body["reason"])
            start, end = parse_iso(body["start"], "gap start"), parse_iso(body["end"], "gap end")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise Rejected(f"gap file is malformed: {e}") from None
        if not SEGMENT_ID_RE.match(gid) or not _SOURCE_RE.match(source):
            raise Rejected("gap file has an unsafe id or source")
        try:
            self.cfg.source(source)
        except KeyError:
            raise Rejected(f"gap is for source {source!r}, which is not in the configuration") from None
        if end < start:
            raise Rejected("gap ends before it starts")
        with self.vault.sessions.begin() as s:
            if s.get(Gap, gid) is None:
                s.add(Gap(id=gid, source=source, start=start, end=end, reason=reason[:2000]))
        self._unlink(path)
        event(log, "ingest.gap", gap=gid, source=source, start=iso(start), end=iso(end), reason=reason)

    def _refuse_if_purged(self, path: Path) -> None:
        """A re-delivered copy of a purged segment: destroy its key envelope, then reject it.

        Checked on the keyless header before verification (which needs a key the prune may
        already have destroyed). The purge shredded the index's envelope; this spool copy still
        carries its own, which the vault's private key would open, so it is zeroed in place and
        fsynced before the file is set aside (nothing readable is kept, the file itself is kept
        for a person to look at). A header that cannot be read is left to verification."""
        try:
            with open(path, "rb") as f:
                segment_id = read_header(f).segment_id
        except (SealError, OSError):
            return
        with self.vault.sessions() as s:
            purged = s.execute(
                select(PurgeLogRow.seq, PurgeLogRow.purged_at).where(PurgeLogRow.segment_id == segment_id)
            ).first()
            pending = s.get(PurgePending, segment_id) is not None
        if purged is None and not pending:
            return
        had_envelope = shred_envelope(path)
        when = (
            f" at {iso(purged[1])} (purge-log seq {purged[0]})"
            if purged is not None
            else " (purge in progress)"
        )
        event(
            log,
            "ingest.envelope_destroyed",
            logging.WARNING,
            segment=segment_id,
            path=path.name,
            had_envelope=had_envelope,
        )
        raise Rejected(
            f"already purged: key envelope destroyed; segment {segment_id} was purged{when}, and a purged "
            "segment is never re-ingested (this copy can no longer be opened, with any key)"
        )

    def _ingest_erasure(self, path: Path) -> str:
        """A recorder's erasure request (caller opt-out): shred now, the purger deletes and logs."""
        from vault.retention.purge import ClockUntrusted, Purger

        try:
            body = json.loads(path.read_text("utf-8"))
            ids = [str(x) for x in body["segments"]]
            reason, actor = str(body["reason"]), str(body["actor"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise Rejected(f"erasure request is malformed: {e}") from None
        if not reason.strip() or not all(SEGMENT_ID_RE.match(i) for i in ids):
            raise Rejected("erasure request needs a reason and safe segment ids")
        for sid in ids:  # a part still waiting in the spool is indexed first, then erased with the rest
            waiting = self.spool / f"{sid}{SEG_SUFFIX}"
            if waiting.exists():
                self.process(waiting)
        try:
            marked, refused = Purger(self.vault).mark_for_erasure(
                ids, actor=actor, role="system", reason=reason
            )
        except ClockUntrusted as e:
            event(log, "ingest.erasure_deferred", logging.WARNING, path=path.name, reason=str(e))
            return "deferred"  # kept in the spool: retried on the next pass, never dropped
        self._unlink(path)
        event(
            log,
            "ingest.erasure",
            path=path.name,
            marked=",".join(marked) or "none",
            refused_held=",".join(refused) or "none",
            reason=reason,
        )
        return "erasure"

    def _unlink(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def _reject(self, path: Path, reason: str) -> None:
        """Nothing is deleted: the file moves aside with its reason for a person to look at."""
        rdir = self.spool / REJECTED_DIR
        rdir.mkdir(exist_ok=True)
        target = rdir / path.name
        n = 1
        while target.exists():
            target = rdir / f"{path.name}.{n}"
            n += 1
        (rdir / f"{target.name}.reason.txt").write_text(reason + "\n", "utf-8")
        os.replace(path, target)
        fsync_dir(rdir)
        fsync_dir(path.parent)
        event(
            log,
            "ingest.rejected",
            logging.WARNING,
            path=path.name,
            moved_to=str(target),
            reason=reason,
        )

    # -- loops -----------------------------------------------------------------------------

    def scan(self) -> IngestStats:
        """Drain what is in the spool now (also what arrived while ingest was down)."""
        stats = IngestStats()
        for p in self.pending():
            outcome = self.process(p)
            if outcome == "indexed":
                stats.indexed += 1
            elif outcome == "duplicate":
                stats.duplicates += 1
            elif outcome == "gap":
                stats.gaps += 1
            elif outcome == "erasure":
                stats.erasures += 1
            elif outcome == "rejected":
                stats.rejected += 1
                stats.rejected_files.append(p.name)
            elif outcome == "deferred":
                stats.deferred += 1
        return stats

    def run(
        self,
        stop: threading.Event,
        rescan_seconds: float = 30.0,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Watch the spool (vault.store.watch); rescan periodically in case an event was missed."""
        with DirectoryWatcher(self.spool, rescan_seconds) as watcher:
            self.scan()
            if on_ready is not None:
                on_ready()
            # systemd's watchdog: the loop wakes at least once a second, so a ping from here
            # proves the loop (not just the process) is alive; a wedged ingest gets restarted.
            wd = watchdog_interval()
            last_ping = 0.0
            while not stop.is_set():
                if wd is not None and time.monotonic() - last_ping >= min(wd, 5.0):
                    notify("WATCHDOG=1")
                    last_ping = time.monotonic()
                for p in watcher.wait(1.0):
                    if p.parent == self.spool and p in self.pending():
                        self.process(p)
                if watcher.rescan_due():
                    st = self.scan()
                    if st.deferred:
                        watcher.rescan_seconds = min(watcher.rescan_seconds, 5.0)
