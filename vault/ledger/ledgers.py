"""Tamper-evident, append-only audit logs (the purge log and the access log) stored in the index.

Both logs are the same thing: entries of vault.ledger.entries (canonical JSON with `seq` and `prev`, the
leaf hash of the previous entry), each an RFC 6962 leaf, with Ed25519-signed checkpoints
(origin, size, root, time) stored beside them. This module is only the storage: the entry
format, signing, export format and offline verification are vault.ledger.entries's.
The database only makes appending cheap and transactional (an entry commits together with the
change it records); the proof is in the Merkle tree and the signatures, so an auditor verifies an
export offline with the public key alone and a changed, dropped or reordered entry is named.

Export layout (`export(dir)`): one vault.ledger.entries export directory per log (`DIR/purge-log/`,
`DIR/access-log/`: entries.jsonl with the exact hashed bytes per line, checkpoints.jsonl) and
`DIR/manifest.json` naming them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vault.errors import HoldfastError
from vault.index.db import begin_write
from vault.index.schema import AccessLogRow, CheckpointRow, LogHead, PurgeLogRow
from vault.ledger import entries as tlog
from vault.ledger import exportverify
from vault.ops.logsetup import event
from vault.sealed.keyid import key_id
from vault.store.fsutil import atomic_write_bytes, fsync_dir
from vault.timeutil import iso

log = logging.getLogger("holdfast.auditlog")

EXPORT_FORMAT = "holdfast-auditlog-1"


class Named(Protocol):
    """Whoever an access-log entry names: an account, an approval's requester or approver."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...


class AuditLogError(HoldfastError):
    """The stored log is inconsistent (a gap in sequence numbers): restore the index from backup."""


class ProofNotFound(HoldfastError):
    """No entry (or no checkpoint covering it) to prove."""


def _cp_from_row(r: CheckpointRow) -> tlog.Checkpoint:
    return tlog.Checkpoint(
        origin=r.origin,
        size=int(r.size),
        root=bytes.fromhex(r.root),
        time=iso(r.time),
        key_id=r.key_id,
        signature=base64.b64decode(r.signature),
    )


class AuditLog:
    """One log over one table. Appends join the caller's transaction: entry and change commit together.

    Concurrency: every append and every checkpoint first locks the log's head row (`log_heads`;
    SQLite: BEGIN IMMEDIATE, PostgreSQL: SELECT ... FOR UPDATE), then reads seq, prev and the Merkle
    frontier from it and writes the entry and the new head in the same transaction. Writers in
    other threads and processes (API workers, CLI, purger, ingest) wait for the lock, so the chain
    has one order and no state is kept in memory. Lock the head last and commit soon after: the
    lock is held until the caller's transaction ends.
    """

    def __init__(self, name: str, model: type[PurgeLogRow] | type[AccessLogRow], origin: str) -> None:
        self.name = name
        self.model = model
        self.origin = origin

    # -- the head ----------------------------------------------------------------------------

    def _head(self, session: Session, lock: bool) -> tuple[int, str | None, tlog.MerkleAccumulator]:
        q = select(LogHead.size, LogHead.tail, LogHead.frontier).where(LogHead.log == self.name)
        if lock:
            begin_write(session)
            q = q.with_for_update()
        row = session.execute(q).first()
        if row is None:
            raise AuditLogError(
                f"the index has no head for the {self.name} log: it predates migration "
                "0005_log_heads_accounts; run any holdfast command (they migrate at start)"
            )
        size, tail, frontier = int(row[0]), row[1], str(row[2])
        hashes = [bytes.fromhex(frontier[i : i + 64]) for i in range(0, len(frontier), 64)]
        return size, tail, tlog.MerkleAccumulator.from_frontier(size, hashes)

    def lock(self, session: Session) -> int:
        """Take the head's lock in the caller's transaction (before reading what decides an append)."""
        return self._head(session, lock=True)[0]

    def _advance(self, session: Session, acc: tlog.MerkleAccumulator, tail: str) -> None:
        session.execute(
            update(LogHead)
            .where(LogHead.log == self.name)
            .values(size=acc.size, tail=tail, frontier="".join(h.hex() for h in acc.frontier()))
        )

    def leaf_hashes(self, session: Session, upto: int | None = None) -> list[bytes]:
        q = select(self.model.seq, self.model.leaf_hash).order_by(self.model.seq)
        if upto is not None:
            q = q.where(self.model.seq < upto)
        out: list[bytes] = []
        for seq, h in session.execute(q):
            if seq != len(out):
                raise AuditLogError(
                    f"{self.name} log in the index jumps from seq {len(out) - 1} to {seq}: rows were "
                    "deleted; restore the index from backup and run `holdfast audit verify`"
                )
            out.append(bytes.fromhex(h))
        return out

    def accumulator(self, session: Session) -> tlog.MerkleAccumulator:
        """The committed head's Merkle state (no lock: for reading)."""
        return self._head(session, lock=False)[2]

    def size(self, session: Session) -> int:
        return self._head(session, lock=False)[0]

    # -- writing -----------------------------------------------------------------------------

    def append(self, session: Session, payload: dict[str, Any], **columns: Any) -> int:
        """Add one entry in the caller's transaction; returns its seq. `columns` fill index-only columns."""
        return self.append_many(session, [(payload, columns)])[0]

    def append_many(self, session: Session, items: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[int]:
        """append() for a batch of (payload, columns): one head lock, one bulk insert."""
        if not items:
            return []
        size, tail, acc = self._head(session, lock=True)
        prev = bytes.fromhex(tail) if tail else None
        rows, seqs = [], []
        for payload, columns in items:
            seq = acc.size
            data = tlog.make_entry(seq, prev, {**payload, "log": self.name})
            prev = tlog.leaf_hash(data)
            acc.append(prev)
            rows.append({"seq": seq, "entry": data.decode("utf-8"), "leaf_hash": prev.hex(), **columns})
            seqs.append(seq)
        session.execute(insert(self.model), rows)
        self._advance(session, acc, str(rows[-1]["leaf_hash"]))
        return seqs

    def checkpoint(
        self, session: Session, sign_key: Ed25519PrivateKey, now: datetime
    ) -> tlog.Checkpoint | None:
        """Sign the current head (in the caller's transaction); None if the head is already signed.

        Under the head's lock, so checkpoints are stored in size order; a checkpoint is never
        dated before the one it follows (a writer that read the clock earlier but got the lock
        later signs with the later time)."""
        size, _tail, acc = self._head(session, lock=True)
        last = session.execute(
            select(CheckpointRow.size, CheckpointRow.time)
            .where(CheckpointRow.log == self.name)
            .order_by(CheckpointRow.size.desc(), CheckpointRow.id.desc())
            .limit(1)
        ).first()
        if last is not None and int(last[0]) == size:
            return None
        at = now if last is None else max(now, last[1])
        cp = tlog.sign_checkpoint(sign_key, self.origin, size, acc.root(), at)
        session.add(
            CheckpointRow(
                log=self.name,
                size=cp.size,
                root=cp.root.hex(),
                time=at,
                origin=cp.origin,
                key_id=cp.key_id,
                signature=base64.b64encode(cp.signature).decode(),
            )
        )
        session.flush()
        event(log, "auditlog.checkpoint", log=self.name, size=cp.size, root=cp.root.hex())
        return cp

    # -- reading -----------------------------------------------------------------------------

    def latest_checkpoint(self, session: Session) -> tlog.Checkpoint | None:
        row = session.scalars(
            select(CheckpointRow)
            .where(CheckpointRow.log == self.name)
            .order_by(CheckpointRow.size.desc(), CheckpointRow.id.desc())
            .limit(1)
        ).first()
        return None if row is None else _cp_from_row(row)

    def checkpoints(self, session: Session, upto: int | None = None) -> list[tlog.Checkpoint]:
        """Checkpoints in the order they were signed; with `upto`, only those of at most that size."""
        q = select(CheckpointRow).where(CheckpointRow.log == self.name).order_by(CheckpointRow.id)
        if upto is not None:
            q = q.where(CheckpointRow.size <= upto)
        return [_cp_from_row(r) for r in session.scalars(q)]

    def entries(
        self, session: Session, batch: int = 10000, upto: int | None = None
    ) -> Iterator[tuple[int, str]]:
        """(seq, entry text) in order, read in batches so a million entries stay cheap; with
        `upto`, only entries before that seq (a consistent cut while writers keep appending)."""
        last = -1
        while True:
            q = select(self.model.seq, self.model.entry).where(self.model.seq > last)
            if upto is not None:
                q = q.where(self.model.seq < upto)
            rows = session.execute(q.order_by(self.model.seq).limit(batch)).all()
            if not rows:
                return
            for seq, text in rows:
                yield int(seq), str(text)
            last = int(rows[-1][0])

    def signed_size(self, session: Session) -> int:
        """Size of the latest signed checkpoint (0 if none): the cut an export or a verification reads."""
        cp = self.latest_checkpoint(session)
        return 0 if cp is None else cp.size

    def signed_cut(self, session: Session) -> tuple[int, Iterator[tuple[int, str]], list[tlog.Checkpoint]]:
        """The log as of its latest signed checkpoint: (size, its entries, its checkpoints).

        What an export or a verification reads while writers keep appending: entries appended
        meanwhile wait for the next checkpoint, so the reader gets neither an unsealed tail nor
        a checkpoint beyond the entries it has."""
        upto = self.signed_size(session)
        return upto, self.entries(session, upto=upto), self.checkpoints(session, upto=upto)

    def prove(self, session: Session, seq: int, public_key: Ed25519PublicKey) -> dict[str, Any]:
        """Inclusion proof of entry `seq` in the latest signed checkpoint (verified before returning).

        `entry` is the exact text that was hashed (leaf = SHA-256(0x00 || UTF-8 of it));
        `inclusion_proof` has RFC 9162's InclusionProofDataV2 fields (tree_size, leaf_index,
        inclusion_path as base64 node hashes, bottom-up); `checkpoint` is the signed note.
        """
        cp = self.latest_checkpoint(session)
        if cp is None or cp.size <= seq:
            raise ProofNotFound(
                f"{self.name} log entry {seq} is not covered by a signed checkpoint yet "
                "(run `holdfast purge` or `holdfast audit export`, which sign the head)"
            )
        leaves = self.leaf_hashes(session, upto=cp.size)
        proof = tlog.inclusion_proof(seq, leaves)
        tlog.verify_inclusion(leaves[seq], seq, cp.size, proof, cp.root)
        text = str(session.scalar(select(self.model.entry).where(self.model.seq == seq)))
        if tlog.leaf_hash(text.encode("utf-8")) != leaves[seq]:
            raise AuditLogError(f"{self.name} log entry {seq} in the index does not match its leaf hash")
        out: dict[str, Any] = {
            "log": self.name,
            "origin": self.origin,
            "entry": text,
            "leaf_hash": leaves[seq].hex(),
            "inclusion_proof": {
                "tree_size": cp.size,
                "leaf_index": seq,
                "inclusion_path": [base64.b64encode(p).decode() for p in proof],
            },
            "proof_bytes": 32 * len(proof),
            "checkpoint": cp.to_dict(),
        }
        if cp.key_id == key_id(public_key).hex():
            out["checkpoint_note"] = tlog.checkpoint_note(cp, public_key).decode("utf-8")
        return out

    def export(
        self,
        session: Session,
        directory: Path,
        public_key: Ed25519PublicKey | None = None,
        progress: Callable[..., None] | None = None,
    ) -> dict[str, Any]:
        """Write a vault.ledger.entries export (entries streamed, not held in memory); returns a summary.

        Beside entries.jsonl and checkpoints.jsonl: `checkpoint`, the newest checkpoint signed by
        `public_key`'s key as a C2SP signed note, and consistency.jsonl, an RFC 9162 consistency
        proof from every earlier checkpoint size to it (for `audit verify --since`). The proofs
        come from MerkleLevels over the leaf hashes (64 bytes per entry while exporting).
        The export is the log's signed cut (`signed_cut`); `progress(done, total)` follows it.
        """
        d = directory / f"{self.name}-log"
        d.mkdir(parents=True, exist_ok=True)
        n = 0
        leaves = bytearray()
        tmp = d / f".{tlog.ENTRIES_FILE}.tmp"
        upto, entries, cps = self.signed_cut(session)
        if progress is not None:
            progress(0, upto)
        with open(tmp, "wb") as f:
            for _seq, text in entries:
                data = text.encode("utf-8")
                f.write(data + b"\n")
                leaves += tlog.leaf_hash(data)
                n += 1
                if progress is not None:
                    progress(n)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / tlog.ENTRIES_FILE)
        atomic_write_bytes(
            d / tlog.CHECKPOINTS_FILE,
            tlog.checkpoint_lines(cps),
            tlog.EXPORT_MODE,
        )
        kid = key_id(public_key).hex() if public_key is not None else None
        signed = [c for c in cps if c.key_id == kid and c.size <= n]
        if public_key is not None and signed:
            head = max(signed, key=lambda c: c.size)
            levels = tlog.MerkleLevels(leaves)
            if levels.root(head.size) != head.root:
                raise AuditLogError(
                    f"{self.name} log: the entries do not reproduce the signed root of size {head.size}; "
                    "run `holdfast audit verify` on a plain export to find the entry"
                )
            atomic_write_bytes(d / tlog.NOTE_FILE, tlog.checkpoint_note(head, public_key), 0o644)
            atomic_write_bytes(
                d / tlog.CONSISTENCY_FILE,
                tlog.consistency_lines(levels, [c.size for c in cps], head.size),
                0o644,
            )
        fsync_dir(d)
        return {"log": self.name, "origin": self.origin, "entries": n, "checkpoints": len(cps)}


class PurgeLog(AuditLog):
    def __init__(self, origin: str) -> None:
        super().__init__("purge", PurgeLogRow, origin)

    def has_entry(self, session: Session, segment_id: str) -> bool:
        return session.scalar(select(PurgeLogRow.seq).where(PurgeLogRow.segment_id == segment_id)) is not None

    def seq_for_segment(self, session: Session, segment_id: str) -> int:
        seq = session.scalar(select(PurgeLogRow.seq).where(PurgeLogRow.segment_id == segment_id))
        if seq is None:
            raise ProofNotFound(f"segment {segment_id!r} has no purge-log entry (it was never purged here)")
        return int(seq)

    def counts_by_reason(self, session: Session, since: datetime | None = None) -> dict[str, int]:
        q = select(PurgeLogRow.reason, func.count()).group_by(PurgeLogRow.reason)
        if since is not None:
            q = q.where(PurgeLogRow.purged_at >= since)
        return {str(r): int(n) for r, n in session.execute(q)}


class AccessLog(AuditLog):
    """Who did what with which footage, and why. The API appends views and exports here."""

    def __init__(
        self,
        origin: str,
        sessions: sessionmaker[Session] | None = None,
        signer: Callable[[], Ed25519PrivateKey] | None = None,
    ) -> None:
        super().__init__("access", AccessLogRow, origin)
        self._sessions = sessions
        self._signer = signer

    def seal(self, session: Session, now: datetime) -> tlog.Checkpoint | None:
        """Sign the head in the caller's transaction, with the key the log was built with.

        Hold changes call this (vault.retention.holds): each is followed by a signed checkpoint, whichever
        process made it."""
        if self._signer is None:
            raise ValueError("this access log was built without a signing key; build it with signer=")
        return self.checkpoint(session, self._signer(), now)

    def record_by(self, session: Session, who: Named, **fields: Any) -> int:
        """`record` for a person the caller holds as one object with a name and a role."""
        return self.record(session, user=who.name, role=who.role, **fields)

    def record(
        self,
        session: Session | None = None,
        *,
        user: str,
        role: str,
        action: str,
        purpose: str,
        at: datetime,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        result: str = "ok",
        **details: Any,
    ) -> int:
        """Append one access event. Pass `session` to commit it with the change it records
        (a hold change); without one it commits on its own transaction."""
        if not user or not purpose or not action:
            raise ValueError("an access-log entry needs a user, an action and a purpose")
        payload: dict[str, Any] = {
            "time": iso(at),
            "user": user,
            "role": role,
            "action": action,
            "purpose": purpose,
            "source": source,
            "start": iso(start) if start else None,
            "end": iso(end) if end else None,
            "result": result,
        }
        if details:
            payload["details"] = {k: v for k, v in details.items() if v is not None}
        if session is not None:
            return self.append(session, payload, action=action, user=user, at=at)
        if self._sessions is None:
            raise ValueError("AccessLog.record without a session needs the log built with a sessionmaker")
        for attempt in range(3):
            try:
                with self._sessions.begin() as s:
                    return self.append(s, payload, action=action, user=user, at=at)
            except OperationalError:  # a lock timeout or a PostgreSQL deadlock: try again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


# -- offline verification lives in vault.ledger.exportverify (no database imports: fast start-up) ------

verify_export = exportverify.verify_export
log_origins = exportverify.log_origins


def write_manifest(directory: Path, logs: list[dict[str, Any]], pub: Ed25519PublicKey, now: datetime) -> None:
    atomic_write_bytes(
        directory / "manifest.json",
        json.dumps(
            {
                "format": EXPORT_FORMAT,
                "logs": [x["log"] for x in logs],
                "summary": logs,
                "exported_at": iso(now),
                "key_id": key_id(pub).hex(),
            },
            indent=2,
        ).encode()
        + b"\n",
        0o644,
    )
