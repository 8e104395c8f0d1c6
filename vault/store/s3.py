"""The segment store on S3-compatible object storage with Object Lock (Ceph RGW, AWS S3, ...).

One sealed blob is one object under the same key layout as the local store
(`<source>/<yyyy>/<mm>/<dd>/<id>`). The bucket has Object Lock, so it is versioned: every
object is addressed by (key, version id), the index records the version id, and deletes name
it (a delete without one only adds a delete marker and the footage stays). A legal hold on a
version makes the bucket itself refuse to delete it, whoever holds the credentials.

Writes are verified before the caller commits a row: each PUT (or multipart part) carries its
Content-MD5, which the server checks, and the version is then read back by HEAD (size, ETag).
Reads are ranged GETs behind a buffered file object, so SegmentReader decrypts only the chunks
a byte range touches, as it does on the local store.

Over 500 lines because the S3 store implements the whole store interface (put, ranged read, list,
delete by version, legal holds) behind one client; the local store is its sibling in
vault/store/local.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from config.model import Store as StoreConfig
from vault.errors import StoreError
from vault.ops.logsetup import event
from vault.store.local import check_key, key_for

log = logging.getLogger("holdfast.store")

#: Blobs above this are uploaded in parts (each part's MD5 checked by the server).
MULTIPART_THRESHOLD = 32 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
#: What S3 servers answer GetObjectLegalHold for a version that never had one (RGW: the second).
NO_LEGAL_HOLD = ("NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError")
#: DeleteObjects takes at most this many versions a call.
DELETE_BATCH = 1000
#: Range reads fetch at least READ_AHEAD (a header, a footer with its trailer, a few chunks in
#: one GET), growing to READ_BUFFER while a reader goes forward.
READ_AHEAD = 128 * 1024
READ_BUFFER = 2 * 1024 * 1024


def read_secret(path: Path) -> str:
    """The S3 secret key: systemd's credential of that name if present, else the file (0600).

    Refused when group or others can read the file, like a private key: a secret readable by
    every local account is not a secret."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds:
        cred = Path(creds) / path.name
        if cred.is_file():
            return _read_private_text(cred)
    return _read_private_text(path)


def _read_private_text(path: Path) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise StoreError(
            f"{path}: S3 secret key file not found ([store] secret_key_file; or LoadCredential= "
            "of that name under systemd)"
        ) from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise StoreError(
            f"{path}: S3 secret key file is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`"
        )
    try:
        secret = path.read_text("utf-8").strip()
    except PermissionError:
        raise StoreError(f"{path}: permission denied (run as the holdfast user)") from None
    if not secret:
        raise StoreError(f"{path}: S3 secret key file is empty")
    return secret


def _etag_of(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives an object: MD5 of the body, or MD5 of the parts' MD5s, dash, count."""
    if len(part_md5s) == 1:
        return part_md5s[0].hex()
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"  # noqa: S324 - S3's ETag


class _Upload:
    """What a writer yields: bytes go to a spooled temp file (ciphertext only), uploaded on close."""

    def __init__(self) -> None:
        self.buf = tempfile.SpooledTemporaryFile(max_size=MULTIPART_THRESHOLD + 1)  # noqa: SIM115
        self.version_id: str | None = None

    def write(self, b: bytes | bytearray | memoryview) -> int:
        return self.buf.write(b)


class RangeFile(io.RawIOBase):
    """A seekable, read-only view of one object version over ranged GETs, with one read-ahead window.

    A miss fetches at least READ_AHEAD bytes, shifted back from the object's end when near it:
    SegmentReader's header read then costs one GET, its footer and trailer one more (they share
    the tail window), and the chunks of a range one more; sequential reads double the window up
    to READ_BUFFER."""

    def __init__(self, store: S3Store, key: str, version_id: str | None, size: int) -> None:
        self._store, self._key, self._version, self._size, self._pos = store, key, version_id, size, 0
        self._win_start, self._win = 0, b""
        self._ahead = READ_AHEAD

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _fill(self, pos: int, want: int) -> None:
        sequential = pos == self._win_start + len(self._win) and self._win
        self._ahead = min(READ_BUFFER, self._ahead * 2) if sequential else READ_AHEAD
        n = max(want, self._ahead)
        start = max(0, min(pos, self._size - n))
        end = min(self._size, max(pos + want, start + n))
        self._win_start, self._win = (
            start,
            self._store.read_range(self._key, start, end - start, self._version),
        )

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), self._size - self._pos)
        if n <= 0:
            return 0
        lo = self._pos - self._win_start
        if lo < 0 or lo + n > len(self._win):
            self._fill(self._pos, n)
            lo = self._pos - self._win_start
        view[:n] = self._win[lo : lo + n]
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        buf = bytearray(max(0, min(size, self._size - self._pos)))
        got = self.readinto(buf)
        return bytes(buf[:got])


@dataclass(frozen=True)
class BucketState:
    exists: bool
    versioning: str | None
    object_lock: bool


class S3Store:
    """Sealed blobs as objects in one Object Lock bucket; deletes and holds by version id."""

    supports_legal_holds = True

    def __init__(self, cfg: StoreConfig) -> None:
        if cfg.kind != "s3" or not (cfg.endpoint and cfg.bucket and cfg.access_key and cfg.secret_key_file):
            raise StoreError('[store] kind = "s3" needs endpoint, bucket, access_key and secret_key_file')
        self.cfg = cfg
        self.bucket = cfg.bucket
        self.endpoint = cfg.endpoint
        self._local = threading.local()

    # -- the client ----------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """One client a thread (boto3 clients are thread-safe, sessions are not: keep it simple)."""
        c = getattr(self._local, "client", None)
        if c is None:
            assert self.cfg.secret_key_file is not None
            secret = read_secret(self.cfg.secret_key_file)
            c = boto3.session.Session().client(
                "s3",
                endpoint_url=self.cfg.endpoint,
                region_name=self.cfg.region,
                aws_access_key_id=self.cfg.access_key,
                aws_secret_access_key=secret,
                config=BotoConfig(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    # Content-MD5 where S3 requires a checksum; no aws-chunked trailers (older RGW).
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                    max_pool_connections=32,
                ),
            )
            self._local.client = c
        return c

    def _fail(self, what: str, e: Exception) -> StoreError:
        code = (
            e.response.get("Error", {}).get("Code", "?") if isinstance(e, ClientError) else type(e).__name__
        )
        return StoreError(f"S3 {what} failed at {self.endpoint} bucket {self.bucket}: {code}: {e}")

    # -- keys ----------------------------------------------------------------------------------

    key_for = staticmethod(key_for)

    def describe(self) -> str:
        return f"s3 {self.endpoint}/{self.bucket}"

    # -- the bucket ----------------------------------------------------------------------------

    def bucket_state(self) -> BucketState:
        c = self.client
        try:
            c.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                return BucketState(False, None, False)
            raise self._fail("HeadBucket", e) from None
        except BotoCoreError as e:
            raise self._fail("HeadBucket", e) from None
        try:
            versioning = c.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except (ClientError, BotoCoreError) as e:
            raise self._fail("GetBucketVersioning", e) from None
        try:
            lock = c.get_object_lock_configuration(Bucket=self.bucket)
            enabled = lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                raise self._fail("GetObjectLockConfiguration", e) from None
            enabled = False
        return BucketState(True, versioning, enabled)

    def problems(self) -> list[str]:
        """What is wrong with the bucket for Holdfast (empty: usable)."""
        st = self.bucket_state()
        if not st.exists:
            return [f"bucket {self.bucket} does not exist at {self.endpoint}: run `holdfast store init`"]
        out = []
        if st.versioning != "Enabled":
            out.append(f"bucket {self.bucket} has versioning {st.versioning or 'off'}, not Enabled")
        if not st.object_lock:
            out.append(
                f"bucket {self.bucket} has no Object Lock: legal holds cannot protect held footage; "
                "Object Lock can only be chosen when a bucket is created: make a new bucket with "
                "`holdfast store init` and copy the objects"
            )
        return out

    def init(self) -> str:
        """Create the bucket with Object Lock when absent; check an existing one. Returns what it did."""
        st = self.bucket_state()
        if not st.exists:
            kw: dict[str, Any] = {"Bucket": self.bucket, "ObjectLockEnabledForBucket": True}
            if self.cfg.region != "us-east-1":
                kw["CreateBucketConfiguration"] = {"LocationConstraint": self.cfg.region}
            try:
                self.client.create_bucket(**kw)
            except (ClientError, BotoCoreError) as e:
                raise self._fail("CreateBucket", e) from None
            event(log, "store.bucket_created", bucket=self.bucket, endpoint=self.endpoint)
            problems = self.problems()
            if problems:
                raise StoreError("; ".join(problems))
            return f"created bucket {self.bucket} with Object Lock (versioning Enabled)"
        problems = self.problems()
        if problems:
            raise StoreError("; ".join(problems))
        return f"bucket {self.bucket} exists with Object Lock and versioning Enabled"

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def writer(self, key: str, *, legal_hold: bool = False) -> Iterator[_Upload]:
        """Collect the blob, then upload and verify it; `version_id` is set on the yielded object."""
        check_key(key)
        up = _Upload()
        try:
            yield up
            up.version_id = self._upload(key, up.buf, legal_hold)
        finally:
            up.buf.close()

    def _upload(self, key: str, f: BinaryIO, legal_hold: bool) -> str:
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        extra: dict[str, Any] = {"ContentType": "application/octet-stream"}
        if legal_hold:
            extra["ObjectLockLegalHoldStatus"] = "ON"
        c = self.client
        md5s: list[bytes] = []
        reused = self._same_version(key, f, size)
        if reused is not None:
            # A rerun after a crash between upload and commit: that version is this very blob.
            if legal_hold:
                self.set_legal_hold(key, reused, True)
            event(log, "store.upload_reused", key=key, version=reused)
            return reused
        f.seek(0)
        try:
            if size <= MULTIPART_THRESHOLD:
                body = f.read()
                md5 = hashlib.md5(body).digest()  # noqa: S324 - S3's integrity check
                md5s.append(md5)
                r = c.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentMD5=base64.b64encode(md5).decode(),
                    **extra,
                )
                version = r.get("VersionId")
            else:
                mp = c.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)
                uid = mp["UploadId"]
                try:
                    parts = []
                    n = 1
                    while True:
                        body = f.read(PART_SIZE)
                        if not body:
                            break
                        md5 = hashlib.md5(body).digest()  # noqa: S324
                        md5s.append(md5)
                        pr = c.upload_part(
                            Bucket=self.bucket,
                            Key=key,
                            UploadId=uid,
                            PartNumber=n,
                            Body=body,
                            ContentMD5=base64.b64encode(md5).decode(),
                        )
                        parts.append({"PartNumber": n, "ETag": pr["ETag"]})
                        n += 1
                    r = c.complete_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}
                    )
                    version = r.get("VersionId")
                except BaseException:
                    with suppress(ClientError, BotoCoreError):
                        c.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=uid)
                    raise
        except (ClientError, BotoCoreError) as e:
            raise self._fail(f"upload of {key}", e) from None
        if not version:
            raise StoreError(
                f"S3 gave no version id for {key}: bucket {self.bucket} is not versioned (run `holdfast store init`)"
            )
        self._verify(key, version, size, _etag_of(md5s))
        return str(version)

    def _same_version(self, key: str, f: BinaryIO, size: int) -> str | None:
        """The key's current version when it is this very blob (an earlier upload whose row was
        never committed: ingest killed in between); one HEAD, 404 in the usual case."""
        try:
            h = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(f"HeadObject of {key}", e) from None
        except BotoCoreError as e:
            raise self._fail(f"HeadObject of {key}", e) from None
        if int(h.get("ContentLength", -1)) != size or not h.get("VersionId"):
            return None
        md5s = []
        f.seek(0)
        part = MULTIPART_THRESHOLD if size <= MULTIPART_THRESHOLD else PART_SIZE
        while b := f.read(part):
            md5s.append(hashlib.md5(b).digest())  # noqa: S324
        if not md5s:
            md5s.append(hashlib.md5(b"").digest())  # noqa: S324
        return str(h["VersionId"]) if str(h.get("ETag", "")).strip('"') == _etag_of(md5s) else None

    def _verify(self, key: str, version: str, size: int, etag: str) -> None:
        try:
            h = self.client.head_object(Bucket=self.bucket, Key=key, VersionId=version)
        except (ClientError, BotoCoreError) as e:
            raise self._fail(f"HeadObject of {key} after upload", e) from None
        got_etag = str(h.get("ETag", "")).strip('"')
        if int(h["ContentLength"]) != size or got_etag != etag:
            raise StoreError(
                f"S3 object {key} version {version} does not match what was uploaded "
                f"(size {h['ContentLength']} vs {size}, ETag {got_etag} vs {etag}); ingest will retry"
            )

    # -- reading -------------------------------------------------------------------------------

    def head(self, key: str, version_id: str | None = None) -> dict[str, Any]:
        kw: dict[str, Any] = {"Bucket": self.bucket, "Key": check_key(key)}
        if version_id:
            kw["VersionId"] = version_id
        try:
            return dict(self.client.head_object(**kw))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchVersion", "NotFound"):
                raise StoreError(
                    f"segment blob {key} is missing from bucket {self.bucket} at {self.endpoint}"
                ) from None
            raise self._fail(f"HeadObject of {key}", e) from None
        except BotoCoreError as e:
            raise self._fail(f"HeadObject of {key}", e) from None

    def read_range(self, key: str, offset: int, length: int, version_id: str | None = None) -> bytes:
        kw: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Range": f"bytes={offset}-{offset + length - 1}",
        }
        if version_id:
            kw["VersionId"] = version_id
        try:
            r = self.client.get_object(**kw)
            return bytes(r["Body"].read())
        except (ClientError, BotoCoreError) as e:
            raise self._fail(f"GetObject of {key} bytes {offset}+{length}", e) from None

    def open(self, key: str, version_id: str | None = None, size: int | None = None) -> BinaryIO:
        """A seekable file over ranged GETs (the size from the index saves a HEAD)."""
        check_key(key)
        if size is None:
            size = int(self.head(key, version_id)["ContentLength"])
        return RangeFile(self, key, version_id, size)  # type: ignore[return-value]

    def exists(self, key: str, version_id: str | None = None) -> bool:
        try:
            self.head(key, version_id)
        except StoreError as e:
            if "is missing" in str(e):
                return False
            raise
        return True

    def size(self, key: str, version_id: str | None = None) -> int:
        return int(self.head(key, version_id)["ContentLength"])

    def blob_size(self, key: str) -> int | None:
        """The current version's size, None when the key has none (what `holdfast check` asks)."""
        try:
            return self.size(key)
        except StoreError as e:
            if "is missing" in str(e):
                return None
            raise

    def open_blob(self, key: str) -> BinaryIO:
        """The current version of any key `iter_blobs` yielded (`holdfast check --deep`)."""
        return self.open(key)

    def iter_versions(self, prefix: str = "") -> Iterator[dict[str, Any]]:
        """Every object version and delete marker under `prefix` (ListObjectVersions, paged)."""
        p = self.client.get_paginator("list_object_versions")
        try:
            for page in p.paginate(Bucket=self.bucket, Prefix=prefix):
                for v in page.get("Versions", []):
                    yield {
                        "key": v["Key"],
                        "version": v["VersionId"],
                        "size": int(v["Size"]),
                        "etag": str(v.get("ETag", "")).strip('"'),
                        "marker": False,
                    }
                for m in page.get("DeleteMarkers", []):
                    yield {"key": m["Key"], "version": m["VersionId"], "size": 0, "etag": "", "marker": True}
        except (ClientError, BotoCoreError) as e:
            raise self._fail("ListObjectVersions", e) from None

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        """(key, size) of every stored object version (what `holdfast check` compares with the index)."""
        for v in self.iter_versions():
            if not v["marker"]:
                yield v["key"], v["size"]

    def usage(self) -> tuple[int, int]:
        """An S3 store has no filesystem to fill: (0, 0); set [purge] store_quota_bytes for a cap."""
        return 0, 0

    # -- legal holds ---------------------------------------------------------------------------

    def legal_hold(self, key: str, version_id: str | None) -> bool:
        kw: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            kw["VersionId"] = version_id
        try:
            r = self.client.get_object_legal_hold(**kw)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in NO_LEGAL_HOLD:
                return False
            raise self._fail(f"GetObjectLegalHold of {key}", e) from None
        except BotoCoreError as e:
            raise self._fail(f"GetObjectLegalHold of {key}", e) from None
        return r.get("LegalHold", {}).get("Status") == "ON"

    def set_legal_hold(self, key: str, version_id: str | None, on: bool) -> None:
        kw: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "LegalHold": {"Status": "ON" if on else "OFF"},
        }
        if version_id:
            kw["VersionId"] = version_id
        try:
            self.client.put_object_legal_hold(**kw)
        except (ClientError, BotoCoreError) as e:
            raise self._fail(f"PutObjectLegalHold {'ON' if on else 'OFF'} of {key}", e) from None

    # -- deleting ------------------------------------------------------------------------------

    def delete_blobs(self, blobs: Iterable[tuple[str, str | None]]) -> int:
        """Delete (key, version id) pairs with DeleteObjects, 1,000 a call; idempotent.

        A version that is already gone counts as deleted (a resumed purge). A version refused
        because it still carries a legal hold the index no longer has (drift) gets its hold
        turned OFF and is deleted again: the index is the authority, and the caller deletes only
        rows it has checked are unheld. Anything else raises, leaving the rows to the next run."""
        todo = [(k, v) for k, v in blobs]
        for k, v in todo:
            check_key(k)
            if not v:
                raise StoreError(
                    f"S3 delete of {k} needs its version id (a delete without one only hides it)"
                )
        deleted = 0
        for i in range(0, len(todo), DELETE_BATCH):
            batch = todo[i : i + DELETE_BATCH]
            errors = self._delete_batch(batch)
            held = [(k, v) for k, v, code in errors if code == "AccessDenied"]
            others = [(k, v, code) for k, v, code in errors if code != "AccessDenied"]
            if others:
                k, v, code = others[0]
                raise StoreError(
                    f"S3 DeleteObjects refused {len(others)} version(s), first {k} ({v}): {code}; "
                    "the purge resumes on its next run"
                )
            for k, v in held:
                event(log, "store.legal_hold_drift", logging.WARNING, key=k, version=v, fix="hold turned off")
                self.set_legal_hold(k, v, False)
            if held:
                again = self._delete_batch(held)
                if again:
                    k, v, code = again[0]
                    raise StoreError(f"S3 still refuses to delete {k} ({v}): {code}")
            deleted += len(batch)
        return deleted

    def _delete_batch(self, batch: list[tuple[str, str | None]]) -> list[tuple[str, str, str]]:
        objects = [{"Key": k, "VersionId": v} for k, v in batch]
        try:
            r = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        except (ClientError, BotoCoreError) as e:
            raise self._fail(f"DeleteObjects of {len(batch)} versions", e) from None
        out = []
        for err in r.get("Errors", []):
            code = str(err.get("Code", "?"))
            if code in ("NoSuchKey", "NoSuchVersion"):
                continue
            out.append((str(err.get("Key")), str(err.get("VersionId")), code))
        return out
