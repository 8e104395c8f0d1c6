"""The spool: where recorders hand sealed segments to the vault, by atomic rename only.

A segment is written to `spool/.partial/<source>.<id>.seg.part` while it grows and renamed to
`spool/<id>.seg` when it closes, so ingest never sees half a file. Gaps travel the same way as
small JSON files (`<id>.gap.json`), so a recorder never needs the database: when the index is
down the spool simply grows. Files ingest cannot accept go to `spool/rejected/` with a reason.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from vault.ops.events import WARNING, EventLog, event
from vault.sealed.seal import DEFAULT_CHUNK_SIZE, SealError, SealSummary, SegmentWriter, recover_partial
from vault.store.fsutil import atomic_write_bytes, fsync_dir
from vault.timeutil import iso

#: Not a logging.Logger: recorders import this module and budget their memory (vault.ops.events).
log = EventLog("holdfast.spool")

PARTIAL_DIR = ".partial"
REJECTED_DIR = "rejected"
SEG_SUFFIX = ".seg"
GAP_SUFFIX = ".gap.json"
ERASE_SUFFIX = ".erase.json"
SEGMENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def new_segment_id() -> str:
    return os.urandom(16).hex()  # 128 random bits, as uuid4 (whose module a recorder cannot afford)


def ensure_spool(spool: Path) -> None:
    for d in (spool, spool / PARTIAL_DIR, spool / REJECTED_DIR):
        d.mkdir(parents=True, exist_ok=True, mode=0o750)


class SpoolSegment:
    """One segment being sealed into the spool; plaintext exists only in this object's buffer."""

    def __init__(
        self,
        spool: Path,
        recipient: X25519PublicKey,
        meta: dict[str, Any],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        ensure_spool(spool)
        self.spool = spool
        self.segment_id = str(meta.setdefault("id", new_segment_id()))
        self.partial = spool / PARTIAL_DIR / f"{meta['source']}.{self.segment_id}.seg.part"
        self._f: BinaryIO = open(self.partial, "xb")  # noqa: SIM115 - closed in close/abort
        self.writer = SegmentWriter(self._f, recipient, meta, chunk_size)

    @property
    def plaintext_bytes(self) -> int:
        return self.writer.plaintext_bytes

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writer.write(data)

    def close(self, trailer: dict[str, Any]) -> tuple[Path, SealSummary]:
        summary = self.writer.close(trailer)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        final = self.spool / f"{self.segment_id}{SEG_SUFFIX}"
        os.replace(self.partial, final)
        fsync_dir(self.spool)
        return final, summary

    def detach(self) -> None:
        """Stop writing and leave the partial file where it is, as a killed writer would: its
        whole chunks are on disk and `recover_partials` closes it as cut short. Plaintext not yet
        sealed into a whole chunk is dropped with this object."""
        if not self._f.closed:
            self._f.close()

    def abort(self) -> None:
        """Discard (a caller's opt-out, or nothing worth keeping): the partial file is removed."""
        if not self._f.closed:
            self._f.close()
        self.partial.unlink(missing_ok=True)


def write_gap(spool: Path, source: str, start: datetime, end: datetime, reason: str) -> Path:
    ensure_spool(spool)
    gid = new_segment_id()
    body = {"id": gid, "source": source, "start": iso(start), "end": iso(end), "reason": reason}
    path = spool / f"{gid}{GAP_SUFFIX}"
    atomic_write_bytes(path, json.dumps(body).encode())
    return path


def recover_partials(spool: Path, source: str, reason: str) -> tuple[list[Path], list[Path]]:
    """After a kill -9: close this source's partial segments as cut short and hand them to ingest.

    Only `source`'s own partials are touched: another recorder may be writing its own right now.
    Returns (recovered into the spool, dropped because not one whole chunk was written).
    """
    recovered: list[Path] = []
    dropped: list[Path] = []
    pdir = spool / PARTIAL_DIR
    if not pdir.is_dir():
        return recovered, dropped
    for part in sorted(pdir.glob(f"{source}.*.seg.part")):
        seg_id = part.name[len(source) + 1 : -len(".seg.part")]
        end = datetime.fromtimestamp(part.stat().st_mtime).astimezone()
        try:
            with open(part, "r+b") as f:
                kept = recover_partial(f, {"end": iso(end), "end_reason": reason})
                os.fsync(f.fileno())
        except SealError as e:
            kept = 0
            event(log, "spool.partial_unreadable", WARNING, path=str(part), error=str(e))
        if kept == 0:
            part.unlink()
            dropped.append(part)
            event(
                log,
                "spool.partial_dropped",
                WARNING,
                source=source,
                segment=seg_id,
                reason="no complete chunk was written before the recorder died",
            )
            continue
        final = spool / f"{seg_id}{SEG_SUFFIX}"
        os.replace(part, final)
        fsync_dir(spool)
        recovered.append(final)
        event(log, "spool.partial_recovered", source=source, segment=seg_id, chunks=kept)
    return recovered, dropped


def write_erasure(spool: Path, segment_ids: list[str], reason: str, actor: str) -> Path:
    """Ask the vault to erase already-spooled-and-ingested segments (a caller's opt-out).

    Recorders never touch the index, so the request travels like a gap: a small file that
    ingest acts on. Ingest shreds the keys at once; the next purge run deletes the blobs and
    writes the purge-log entries (reason `erasure-request`). Held segments are refused and the
    refusal is logged, as for any erasure.
    """
    ensure_spool(spool)
    body = {"id": new_segment_id(), "segments": list(segment_ids), "reason": reason, "actor": actor}
    path = spool / f"{body['id']}{ERASE_SUFFIX}"
    atomic_write_bytes(path, json.dumps(body).encode())
    return path
