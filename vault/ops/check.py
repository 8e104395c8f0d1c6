"""`holdfast check`: the appliance's fsck. Index, store, logs, holds and spool against each other.

Read-only: it never deletes, moves or repairs anything; each problem names the segment or the
file and says what to do. The quick form (what `holdfast doctor` runs) compares every indexed
segment with the store by size; `deep` also reads every blob, compares it with the SHA-256
recorded at ingest, authenticates it with the keyring and scans it for plaintext media.

Bounded memory at any size: the index is read as one stream sorted by storage key and merged
with the store's listing, which comes in the same (bytewise) order (`LocalStore.iter_blobs`);
the logs are folded into a Merkle accumulator entry by entry. Only problems are kept.

Run on a live appliance, a blob written by ingest before its row commits, or a row a purge is
finishing, can look wrong for a moment: every finding is confirmed against the index and the
store once more before it is reported.

Over 500 lines because each check is small but they share one merge walk of index and store and one
confirm-before-report step; the checks are listed in KINDS.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vault.errors import HoldfastError, StoreError
from vault.index.schema import Hold, HoldSegment, PurgeLogRow, PurgePending, Segment
from vault.ledger import entries as tlog
from vault.ledger import verify
from vault.ledger.ledgers import AuditLog
from vault.retention import holds
from vault.sealed import keyrotation, keys
from vault.sealed.scan import SCAN_LIMIT, find_plaintext, scan_file
from vault.sealed.seal import SealError, SegmentReader
from vault.store.spool import PARTIAL_DIR, REJECTED_DIR
from vault.timeutil import iso
from vault.vault import Vault

#: Spool files older than this are not being taken by ingest (or a recorder died mid-segment).
SPOOL_STALE_SECONDS = 3600
_BATCH = 10_000
_READ = 1024 * 1024

#: Every kind of problem, and what it means (docs/appliance.md explains each with its remedy).
KINDS: dict[str, str] = {
    "blob_missing": "an indexed segment's blob is not in the store",
    "blob_size": "an indexed segment's blob has another size than the index recorded",
    "blob_hash": "(--deep) a blob's ciphertext no longer matches the SHA-256 recorded at ingest",
    "blob_auth": "(--deep) a blob matches its SHA-256 but does not authenticate with the keyring",
    "orphan": "a file in the store that no index row names",
    "purging": "a row left half-purged (key shredded, blob or log entry not done)",
    "purged_blob_present": "a purged segment's blob is still in the store",
    "purge_log_live": "a purge-log entry names a segment that is still in the index",
    "purge_log_duplicate": "a purged segment has more than one purge-log entry",
    "purge_log_missing": "a segment marked for purge is gone from the index without a purge-log entry",
    "held_purged": "a segment under an active hold was purged",
    "log_invalid": "the purge or access log does not verify against its last signed checkpoint",
    "spool_stale": "a spool file older than an hour: ingest (or a recorder) is not taking it",
    "plaintext": "plaintext media in the spool or the store",
    "legal_hold_drift": "(S3) an object's legal hold differs from what the index's holds say",
}


@dataclass(frozen=True)
class Problem:
    kind: str
    segment: str | None
    path: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    deep: bool
    problems: list[Problem] = field(default_factory=list)
    segments: int = 0
    blobs: int = 0
    spool_files: int = 0
    log_entries: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, detail: str, segment: str | None = None, path: str | None = None) -> None:
        assert kind in KINDS, kind
        self.problems.append(Problem(kind, segment, path, detail))

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": [p.as_dict() for p in self.problems]}

    def summary(self) -> str:
        logs = ", ".join(f"{n} {name}-log entries" for name, n in self.log_entries.items())
        return (
            f"{'deep' if self.deep else 'quick'} check of {self.segments} indexed segments, "
            f"{self.blobs} store files, {self.spool_files} spool files, {logs}"
        )

    def render(self) -> str:
        lines = []
        for p in self.problems:
            where = " ".join(x for x in (f"segment={p.segment}" if p.segment else "", p.path or "") if x)
            lines.append(f"{p.kind:<20} {where}\n{'':<20} {p.detail}")
        verdict = "OK: no problems" if self.ok else f"{len(self.problems)} problem(s) found"
        lines.append(f"{verdict} ({self.summary()}); nothing was changed")
        return "\n".join(lines)


def run_check(vault: Vault, deep: bool = False) -> CheckReport:
    """Every check, in one read-only pass over index, store, logs and spool."""
    report = CheckReport(deep=deep)
    _store_vs_index(vault, report)
    _legal_holds(vault, report)
    with vault.sessions() as s:
        _purge_log_vs_index(vault, s, report)
        for lg in (vault.purge_log, vault.access_log):
            _verify_log(vault, s, lg, report)
    _spool(vault, report)
    return report


def _legal_holds(vault: Vault, report: CheckReport) -> None:
    """On an Object Lock store, each stored object's legal hold must match the index's holds."""
    from vault.store import legalholds

    for d in legalholds.find_drift(vault):
        report.add(
            "legal_hold_drift",
            f"{d.describe()}; run `holdfast check --repair-holds` to set it from the index's holds",
            segment=d.segment,
            path=d.key,
        )


# -- the index against the store -----------------------------------------------------------


def _index_stream(vault: Vault, deep: bool) -> Iterator[Any]:
    key = Segment.storage_key
    # Bytewise order, as the store lists: PostgreSQL would otherwise sort by the locale.
    order = key.collate("C") if vault.engine.dialect.name == "postgresql" else key
    cols = [Segment.id, key, Segment.stored_bytes, Segment.state]
    if deep:
        cols += [Segment.sha256, Segment.envelope]
    with vault.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(
            select(*cols).order_by(order)
        )
        for part in result.partitions():
            yield from part


def _store_vs_index(vault: Vault, report: CheckReport) -> None:
    store = vault.store
    blobs = store.iter_blobs()
    blob = next(blobs, None)
    orphans: list[tuple[str, int]] = []
    missing: list[tuple[str, str]] = []
    purging: list[tuple[str, str]] = []
    for row in _index_stream(vault, report.deep):
        report.segments += 1
        sid, key, stored, state = row[0], row[1], int(row[2]), row[3]
        while blob is not None and blob[0] < key:
            orphans.append(blob)
            report.blobs += 1
            blob = next(blobs, None)
        size: int | None = None
        if blob is not None and blob[0] == key:
            size = blob[1]
            report.blobs += 1
            blob = next(blobs, None)
        if state != "stored":
            purging.append((sid, key))
            continue
        if size is None:
            missing.append((sid, key))
        elif size != stored:
            report.add(
                "blob_size",
                f"blob {key} has {size} bytes, the index recorded {stored}: it was truncated or "
                "replaced; restore it from backup (`holdfast check --deep` shows whether what is "
                "there still authenticates)",
                segment=sid,
                path=key,
            )
        elif report.deep:
            _deep_blob(vault, report, sid, key, row[4], row[5])
    while blob is not None:
        orphans.append(blob)
        report.blobs += 1
        blob = next(blobs, None)
    _confirm_purging(vault, report, purging)
    _confirm_missing(vault, report, missing)
    _confirm_orphans(vault, report, orphans)


def _deep_blob(
    vault: Vault, report: CheckReport, sid: str, key: str, sha256: str, envelope: bytes | None
) -> None:
    h = hashlib.sha256()
    head = bytearray()
    try:
        with vault.store.open_blob(key) as f:
            while chunk := f.read(_READ):
                h.update(chunk)
                if len(head) < SCAN_LIMIT:
                    head += chunk[: SCAN_LIMIT - len(head)]
            f.seek(0)
            auth: str | None = None
            try:
                SegmentReader(f, vault.keyring, envelope=envelope, expected_id=sid).verify()
            except (SealError, HoldfastError) as e:
                auth = str(e)
    except (OSError, StoreError) as e:
        report.add("blob_missing", f"blob {key} cannot be read: {e}", segment=sid, path=key)
        return
    if h.hexdigest() != sha256:
        report.add(
            "blob_hash",
            f"the ciphertext of {key} no longer matches the SHA-256 recorded at ingest "
            f"({'authentication: ' + auth if auth else 'it still authenticates'}): the file was changed "
            "on disk; restore it from backup",
            segment=sid,
            path=key,
        )
    elif auth is not None:
        report.add(
            "blob_auth",
            f"{key} matches its SHA-256 but does not open: {auth}; check that {vault.cfg.keys.dir} "
            "still holds every seal*.key the segments were sealed to; restore missing ones from backup",
            segment=sid,
            path=key,
        )
    found = find_plaintext(bytes(head))
    if found is not None:
        _plaintext(report, key, found, segment=sid)


def _plaintext(report: CheckReport, path: str, found: tuple[int, str], segment: str | None = None) -> None:
    off, fmt = found
    report.add(
        "plaintext",
        f"{path} holds plaintext {fmt} media (at byte {off}): unencrypted recordings on disk break "
        "the appliance's first promise; find out how it got there, then shred it (`shred -u FILE`)",
        segment=segment,
        path=path,
    )


def _rows_still(
    vault: Vault, suspects: list[tuple[str, str]], still: Callable[[Segment, str], bool]
) -> Iterator[tuple[str, str, Segment]]:
    """Re-read each suspect (segment id, blob key) now: a purge or ingest that moved on while we
    listed is no problem, so only the rows that exist and `still` show it are yielded."""
    with vault.sessions() as s:
        for sid, key in suspects:
            seg = s.get(Segment, sid)
            if seg is not None and still(seg, key):
                yield sid, key, seg


def _confirm_purging(vault: Vault, report: CheckReport, purging: list[tuple[str, str]]) -> None:
    """A purge finishing its batch while we read is normal; a row still purging after it is not."""
    for sid, key, seg in _rows_still(vault, purging, lambda seg, _key: seg.state != "stored"):
        report.add(
            "purging",
            f"left in state {seg.state!r} with its key already shredded (the blob is unreadable): "
            "a purge was interrupted; run `holdfast purge`, which finishes it first and logs it",
            segment=sid,
            path=key,
        )


def _confirm_missing(vault: Vault, report: CheckReport, missing: list[tuple[str, str]]) -> None:
    """A row a purge took in the meantime is not a missing blob."""

    def still_missing(seg: Segment, key: str) -> bool:
        return seg.state == "stored" and vault.store.blob_size(key) is None

    for sid, key, seg in _rows_still(vault, missing, still_missing):
        report.add(
            "blob_missing",
            f"segment {sid} ({seg.source}, {iso(seg.start)}) is indexed but its blob {key} is not "
            "in the store: restore the file from backup under that key; if it is lost for good, "
            f"record that with `holdfast purge --erase {sid} --reason 'blob lost'`",
            segment=sid,
            path=key,
        )


def _confirm_orphans(vault: Vault, report: CheckReport, orphans: list[tuple[str, int]]) -> None:
    """Drop what ingest indexed (or a purge deleted) since the listing; name purged ones."""
    with vault.sessions() as s:
        for i in range(0, len(orphans), _BATCH):
            batch = orphans[i : i + _BATCH]
            names = [k.rsplit("/", 1)[-1] for k, _ in batch]
            indexed = set(s.scalars(select(Segment.storage_key).where(Segment.id.in_(names))))
            purged = dict(
                s.execute(
                    select(PurgeLogRow.segment_id, PurgeLogRow.seq).where(PurgeLogRow.segment_id.in_(names))
                ).all()
            )
            for (key, size), name in zip(batch, names, strict=True):
                if key in indexed or vault.store.blob_size(key) is None:
                    continue
                if name in purged:
                    report.add(
                        "purged_blob_present",
                        f"segment {name} was purged (purge-log entry {purged[name]}) but its blob {key} "
                        "is still in the store; its key was shredded, so it cannot be read: delete the "
                        "file from the store",
                        segment=name,
                        path=key,
                    )
                else:
                    report.add(
                        "orphan",
                        f"{key} ({size} bytes) is in the store but no index row names it: if it is a "
                        "segment's blob, the index lost its row (restore the index from backup); "
                        "otherwise move the file out of the store",
                        path=key,
                    )
                try:
                    with vault.store.open_blob(key) as f:
                        found = scan_file(f)
                except (OSError, StoreError):
                    continue
                if found is not None:
                    _plaintext(report, key, found)


# -- the purge log against the index and the holds -------------------------------------------


def _purge_log_vs_index(vault: Vault, s: Session, report: CheckReport) -> None:
    for seq, sid in s.execute(
        select(PurgeLogRow.seq, PurgeLogRow.segment_id).join(Segment, Segment.id == PurgeLogRow.segment_id)
    ):
        report.add(
            "purge_log_live",
            f"purge-log entry {seq} says segment {sid} was purged, but it is still in the index (an "
            f"index restored from an older backup?): finish the purge with `holdfast purge --erase {sid} "
            "--reason 'purged before the restore'`, which adds no second entry",
            segment=sid,
        )
    for sid, n in s.execute(
        select(PurgeLogRow.segment_id, func.count()).group_by(PurgeLogRow.segment_id).having(func.count() > 1)
    ):
        report.add(
            "purge_log_duplicate",
            f"segment {sid} has {n} purge-log entries; each purged segment has exactly one: the log "
            "was edited; restore the index from backup and verify with `holdfast audit export`",
            segment=sid,
        )
    pending = (
        select(PurgePending.segment_id, PurgePending.reason)
        .outerjoin(Segment, Segment.id == PurgePending.segment_id)
        .outerjoin(PurgeLogRow, PurgeLogRow.segment_id == PurgePending.segment_id)
        .where(Segment.id.is_(None), PurgeLogRow.seq.is_(None))
    )
    for sid, reason in s.execute(pending):
        report.add(
            "purge_log_missing",
            f"segment {sid} was marked for purge ({reason}) and its row is gone, but the purge log has "
            "no entry for it: the purge's last transaction was lost; restore the index from backup",
            segment=sid,
        )
    now = vault.clock()
    held = (
        select(PurgeLogRow.segment_id, PurgeLogRow.seq, HoldSegment.hold_id)
        .join(HoldSegment, HoldSegment.segment_id == PurgeLogRow.segment_id)
        .join(Hold, Hold.id == HoldSegment.hold_id)
        .where(holds.active_clause(now))
    )
    for sid, seq, hold_id in s.execute(held):
        report.add(
            "held_purged",
            f"segment {sid} is under active hold {hold_id} but was purged (purge-log entry {seq}): "
            "footage the hold protects is gone; tell the hold's owner, and restore the blob and the "
            "index from backup if they still have it",
            segment=sid,
        )


# -- the tamper-evident logs -----------------------------------------------------------------


def _sign_keys(vault: Vault) -> list[Ed25519PublicKey]:
    kdir: Path = vault.cfg.keys.dir
    out = [keys.load_sign_public(kdir / keys.SIGN_PUB)]
    for t in keyrotation.read_transitions(kdir):
        out.append(Ed25519PublicKey.from_public_bytes(base64.b64decode(t["new_public_key"])))
    return out


def _verify_log(vault: Vault, s: Session, lg: AuditLog, report: CheckReport) -> None:
    """Stream the entries: seq and hash chain entry by entry, then the root at the last signed
    checkpoint against that checkpoint. On a failure, vault.ledger.verify.verify_log pinpoints the entry."""
    name = f"{lg.name}-log"
    cp = lg.latest_checkpoint(s)
    acc = tlog.MerkleAccumulator()
    prev = tlog.GENESIS_PREV
    broken: str | None = None
    root_at_cp: bytes | None = tlog.EMPTY_ROOT if cp is not None and cp.size == 0 else None
    for seq, text in lg.entries(s):
        data = text.encode("utf-8")
        if broken is None:
            try:
                obj = tlog.parse_entry(data)
            except tlog.EntryFormatError as e:
                broken = f"entry {seq} is malformed: {e}"
            else:
                if seq != acc.size or obj["seq"] != seq:
                    broken = f"entry {seq} is out of sequence (expected {acc.size})"
                elif obj["prev"] != prev:
                    broken = f"entry {seq} does not chain to entry {seq - 1}: one of them was changed"
        leaf = tlog.leaf_hash(data)
        acc.append(leaf)
        prev = leaf.hex()
        if cp is not None and acc.size == cp.size:
            root_at_cp = acc.root()
    report.log_entries[lg.name] = acc.size
    if cp is not None and broken is None:
        try:
            tlog.verify_checkpoint(cp, _sign_keys(vault))
        except (tlog.TlogError, OSError, HoldfastError) as e:
            broken = f"its last checkpoint (size {cp.size}) does not verify: {e}"
        else:
            if root_at_cp is None:
                broken = f"its last checkpoint covers {cp.size} entries, the index holds only {acc.size}"
            elif root_at_cp != cp.root:
                broken = (
                    f"the entries do not hash to the root its last checkpoint (size {cp.size}) signed: "
                    "an entry was changed, dropped or reordered"
                )
    if broken is None:
        return
    first = _pinpoint(vault, s, lg)
    report.add(
        "log_invalid",
        f"the {lg.name} log does not verify: {broken}{first}. Restore the index from backup; "
        "`holdfast audit export DIR` then `holdfast audit verify DIR --pubkey sign.pub` shows every entry affected",
        path=name,
    )


def _pinpoint(vault: Vault, s: Session, lg: AuditLog) -> str:
    """Only on a failure: the whole log in memory, so vault.ledger.verify names the first bad entry."""
    try:
        entries = [text.encode("utf-8") for _seq, text in lg.entries(s)]
        rep = verify.verify_log(entries, lg.checkpoints(s), _sign_keys(vault), origin=lg.origin)
    except (tlog.TlogError, OSError, HoldfastError):
        return ""
    first = rep.first_bad_entry
    return "" if first is None else f" (first bad entry: seq {first})"


# -- the spool -----------------------------------------------------------------------------


def _spool(vault: Vault, report: CheckReport) -> None:
    spool: Path = vault.cfg.paths.spool
    now = vault.clock().timestamp()
    for dirpath, _dirs, files in os.walk(spool):
        d = Path(dirpath)
        for fname in sorted(files):
            p = d / fname
            try:
                st = p.stat()
            except FileNotFoundError:
                continue  # taken by ingest while we walked
            report.spool_files += 1
            age = now - st.st_mtime
            if age > SPOOL_STALE_SECONDS:
                report.add("spool_stale", _stale_detail(spool, p, age), segment=_spool_id(p), path=str(p))
            if fname.endswith(".reason.txt"):
                continue
            try:
                with open(p, "rb") as f:
                    found = scan_file(f)
            except FileNotFoundError:
                continue
            if found is not None:
                _plaintext(report, str(p), found, segment=_spool_id(p))


def _spool_id(p: Path) -> str | None:
    if p.name.endswith(".seg"):
        return p.name[: -len(".seg")]
    if p.name.endswith(".seg.part"):
        return p.name[: -len(".seg.part")].split(".", 1)[-1]
    return None


def _stale_detail(spool: Path, p: Path, age: float) -> str:
    hours = f"{age / 3600:.1f} h"
    if p.parent == spool / PARTIAL_DIR:
        return (
            f"{p.name} has not been written to for {hours}: its recorder died and has not restarted; "
            "start it (`systemctl restart` its holdfast-record unit), which recovers the file"
        )
    if p.parent == spool / REJECTED_DIR:
        return (
            f"{p.name} was rejected by ingest {hours} ago (the reason is in the .reason.txt beside it): "
            "read it, then move the file out of the spool"
        )
    return (
        f"{p.name} has waited {hours} in the spool: ingest is not taking it; check "
        "`systemctl status holdfast-ingest` and `journalctl -u holdfast-ingest`"
    )
