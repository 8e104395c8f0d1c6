"""The segment store: sealed blobs by storage key, written atomically and durably.

Layout `store/<source>/<yyyy>/<mm>/<dd>/<id>` keeps a day of one camera in one directory, so
listing, backup and manual inspection stay cheap at 8,640 segments a camera a day. Callers use
keys, never paths: `make_store` gives this class or the S3 store (vault/store/s3.py, the same
keys as object keys) from `[store] kind`. A blob is addressed by (key, version id); the local
store has no versions (None).

What a store must offer (`holdfast check` uses only these, so an S3 store implements the same):
`key_for`, `writer`, `open`, `exists`, `size`, `delete`, and for the consistency check
`iter_blobs()` (every object as (key, size), in ascending bytewise key order, names the key
pattern does not match included), `blob_size(key)` (None when absent) and `open_blob(key)`
(any key `iter_blobs` yielded).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from vault.errors import StoreError
from vault.store.fsutil import fsync_dir

if TYPE_CHECKING:
    from config.model import HoldfastConfig
    from vault.store.s3 import S3Store

_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}/\d{4}/\d{2}/\d{2}/[A-Za-z0-9_-]{1,64}$")


def check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise StoreError(f"unsafe storage key {key!r}")
    return key


def key_for(source: str, start: datetime, segment_id: str) -> str:
    return check_key(f"{source}/{start:%Y/%m/%d}/{segment_id}")


class _LocalSink:
    """What `LocalStore.writer` yields: the temp file's write, and no version."""

    version_id: str | None = None

    def __init__(self, f: BinaryIO) -> None:
        self.write = f.write


class LocalStore:
    supports_legal_holds = False

    def __init__(self, root: Path) -> None:
        self.root = root

    key_for = staticmethod(key_for)

    def describe(self) -> str:
        return f"local {self.root}"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextmanager
    def writer(self, key: str, *, legal_hold: bool = False) -> Iterator[_LocalSink]:
        """Write to a temporary file beside the target; fsync, rename, fsync the directory.

        `legal_hold` is for the S3 store; here the index alone keeps held footage."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp")
        f = open(tmp, "wb")  # noqa: SIM115 - closed below on every path
        try:
            yield _LocalSink(f)
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(tmp, final)
            fsync_dir(final.parent)
        except BaseException:
            # Closing flushes what is buffered and fails again on a full disk: the temporary
            # file must go regardless, or a full store keeps a file no index row names.
            with suppress(OSError):
                f.close()
            tmp.unlink(missing_ok=True)
            raise

    def open(self, key: str, version_id: str | None = None, size: int | None = None) -> BinaryIO:
        try:
            return open(self.path(key), "rb")  # noqa: SIM115 - caller closes
        except FileNotFoundError:
            raise StoreError(f"segment blob {key} is missing from the store at {self.root}") from None

    def exists(self, key: str, version_id: str | None = None) -> bool:
        return self.path(key).exists()

    def size(self, key: str, version_id: str | None = None) -> int:
        return self.path(key).stat().st_size

    def legal_hold(self, key: str, version_id: str | None) -> bool:
        return False

    def set_legal_hold(self, key: str, version_id: str | None, on: bool) -> None:
        """The local store has no legal holds of its own: the index keeps held footage."""

    def delete_blobs(self, blobs: Iterable[tuple[str, str | None]]) -> int:
        """Unlink each, then fsync each touched directory once; already gone counts (a resumed purge)."""
        dirs = set()
        n = 0
        for key, _version in blobs:
            if self.delete_nosync(key):
                n += 1
                dirs.add(self.path(key).parent)
        self.sync_dirs(dirs)
        return n

    def delete(self, key: str) -> bool:
        """Unlink and sync the directory; False if it was already gone (a resumed purge)."""
        p = self.path(key)
        try:
            p.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(p.parent)
        return True

    def delete_nosync(self, key: str) -> bool:
        """Unlink only; the caller syncs each touched directory once (`sync_dirs`): a purge batch
        pays one directory fsync per camera-day instead of one per segment."""
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def sync_dirs(self, dirs: Iterable[Path]) -> None:
        for d in sorted(set(dirs)):
            with suppress(FileNotFoundError):
                fsync_dir(d)

    def usage(self) -> tuple[int, int]:
        """(used, total) bytes of the filesystem the store is on."""
        self.root.mkdir(parents=True, exist_ok=True)
        du = shutil.disk_usage(self.root)
        return du.used, du.total

    # -- the consistency check's view (`vault.ops.check`) ------------------------------------------

    def _any_path(self, key: str) -> Path:
        """A path for any key `iter_blobs` yields (stray files too), never outside the root."""
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise StoreError(f"unsafe storage key {key!r}")
        return self.root.joinpath(*parts)

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        """(key, size) of every file under the root, in ascending bytewise key order.

        The order is what S3's ListObjectsV2 returns, so the check merges this stream with the
        index sorted by storage key, holding one directory listing at a time. Entries sort by
        the text they add to the key (a directory as `name/`), which makes a depth-first walk
        come out in the order of the whole keys.
        """
        # An explicit stack of directory listings, not nested generators: one frame at any depth.
        stack = [(_listing(self.root), "")]
        while stack:
            entries, prefix = stack[-1]
            if not entries:
                stack.pop()
                continue
            name, e = entries.pop()
            if name.endswith("/"):
                stack.append((_listing(e.path), prefix + name))
                continue
            try:
                size = e.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # deleted by a purge while we listed
            yield prefix + name, size

    def blob_size(self, key: str) -> int | None:
        try:
            return self._any_path(key).stat().st_size
        except FileNotFoundError:
            return None

    def open_blob(self, key: str) -> BinaryIO:
        try:
            return open(self._any_path(key), "rb")  # noqa: SIM115 - caller closes
        except FileNotFoundError:
            raise StoreError(f"{key} is missing from the store at {self.root}") from None


def _listing(d: str | Path) -> list[tuple[str, os.DirEntry[str]]]:
    """A directory's entries, named as they extend a key (`name/` for a directory), sorted
    descending so that pop() takes them in ascending order."""
    try:
        with os.scandir(d) as it:
            entries = [(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in it]
    except FileNotFoundError:
        return []
    entries.sort(key=lambda t: t[0], reverse=True)
    return entries


def make_store(cfg: HoldfastConfig) -> LocalStore | S3Store:
    """The store `[store] kind` names: the local filesystem (`[paths] store`) or an S3 bucket."""
    if cfg.store.kind == "s3":
        from vault.store.s3 import S3Store

        return S3Store(cfg.store)
    return LocalStore(cfg.paths.store)
