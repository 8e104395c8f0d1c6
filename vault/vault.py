"""The vault as one object: config, index, store and keys, opened lazily.

The CLI, the API and the daemons all go through this, so "open segment X" means the same
thing everywhere: look up the row, fetch the blob, join it with the envelope from the index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from config.model import HoldfastConfig
from vault.errors import HoldfastError
from vault.index.db import make_engine, migrate, session_factory
from vault.index.schema import Segment
from vault.ledger.ledgers import AccessLog, PurgeLog
from vault.ops.logsetup import event
from vault.retention import holds
from vault.sealed import keys
from vault.sealed.seal import SegmentReader
from vault.store.local import make_store
from vault.timeutil import utcnow

log = logging.getLogger("holdfast.vault")


class SegmentNotFound(HoldfastError):
    pass


class Plaintext:
    """A segment opened for reading: the blob joined with the envelope from its index row and
    checked against its id, so the bytes are the ones sealed for that row. Decrypts only the
    chunks a range touches; close it (or let `stream` run to its end)."""

    def __init__(self, f: BinaryIO, reader: SegmentReader) -> None:
        self._f, self.reader = f, reader

    @property
    def size(self) -> int:
        return self.reader.plaintext_size

    def read(self, offset: int, length: int) -> bytes:
        return self.reader.read(offset, length)

    def stream(self, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The range's plaintext piece by piece; the segment is closed when the stream ends."""
        try:
            yield from self.reader.iter_range(offset, self.size - offset if length is None else length)
        finally:
            self.close()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> Plaintext:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Vault:
    def __init__(self, cfg: HoldfastConfig, clock: Callable[[], datetime] = utcnow) -> None:
        self.cfg = cfg
        self.clock = clock
        self.store = make_store(cfg)

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.cfg.database.url)

    @cached_property
    def reader(self) -> Engine:
        """The engine's pool in autocommit: for a read of one statement, or of statements that need
        not share a snapshot, without a BEGIN and a ROLLBACK around it (two round trips of every
        API request on PostgreSQL). Each statement commits on its own: never for a write of more
        than one statement, nor one whose condition rests on a read before it (token_owner's
        delete of an expired token, one statement that checks the expiry itself, is the only
        write through it)."""
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @cached_property
    def reads(self) -> sessionmaker[Session]:
        """Sessions on `reader`: listings and look-ups that write nothing."""
        return session_factory(self.reader)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        factory = session_factory(self.engine)
        if self.store.supports_legal_holds:
            sa_event.listen(factory, "after_commit", self._after_commit)
            sa_event.listen(factory, "after_rollback", self._after_rollback)
        return factory

    def _after_commit(self, session: Session) -> None:
        """Holds changed in the committed transaction: set their objects' legal holds now.

        Runs after the commit (the index is the authority); a failure leaves drift that
        `holdfast check --repair-holds` mends, so it is logged, never raised into the caller."""
        changed = session.info.pop(holds.CHANGED, None)
        if not changed:
            return
        from vault.store import legalholds

        try:
            legalholds.sync_holds(self, changed)
        except HoldfastError as e:
            event(
                log,
                "legalholds.sync_failed",
                logging.ERROR,
                holds=",".join(sorted(changed)),
                error=str(e),
                fix="holdfast check --repair-holds",
            )

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(holds.CHANGED, None)

    def migrate(self, progress: Callable[[int, int], None] | None = None) -> None:
        migrate(self.engine, progress)

    @cached_property
    def keyring(self) -> keys.Keyring:
        return keys.Keyring.load(self.cfg.keys.dir)

    @cached_property
    def seal_public(self) -> X25519PublicKey:
        return keys.load_seal_public(self.cfg.keys.dir / keys.SEAL_PUB)

    @cached_property
    def sign_key(self) -> Ed25519PrivateKey:
        """Signs audit-log checkpoints; auditors verify with sign.pub alone."""
        return keys.load_sign_private(self.cfg.keys.dir / keys.SIGN_KEY)

    def _log_origin(self, name: str) -> str:
        return f"holdfast/{self.cfg.sites[0].id}/{name}-log"

    @cached_property
    def purge_log(self) -> PurgeLog:
        """The tamper-evident record of every purged segment (appended only by vault.retention.purge)."""
        return PurgeLog(self._log_origin("purge"))

    @cached_property
    def access_log(self) -> AccessLog:
        """Who viewed, exported or held what, and why: `vault.access_log.record(session, user=...)`."""
        return AccessLog(self._log_origin("access"), self.sessions, signer=lambda: self.sign_key)

    def get_segment(self, session: Session, segment_id: str) -> Segment:
        seg = session.get(Segment, segment_id)
        if seg is None:
            raise SegmentNotFound(f"no segment with id {segment_id!r} in the index")
        return seg

    def open_plaintext(self, seg: Segment) -> Plaintext:
        """The one way to open an indexed segment's bytes: store blob + envelope + expected id."""
        f = self.store.open(seg.storage_key, seg.storage_version, seg.stored_bytes)
        try:
            return Plaintext(f, SegmentReader(f, self.keyring, envelope=seg.envelope, expected_id=seg.id))
        except BaseException:
            f.close()
            raise

    def read_plaintext(self, seg: Segment, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The plaintext of `seg` (or `length` bytes from `offset`), opened when first read and
        closed when read to the end or when the iterator is closed."""
        with self.open_plaintext(seg) as p:
            yield from p.stream(offset, length)

    @contextmanager
    def open_segment(self, seg: Segment) -> Iterator[SegmentReader]:
        """The low-level reader of an indexed segment (chunk checks, tests); reads go through
        `read_plaintext` / `open_plaintext`."""
        with self.open_plaintext(seg) as p:
            yield p.reader

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
