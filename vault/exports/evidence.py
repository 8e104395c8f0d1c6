"""Evidence export: one MP4 per camera and recording run, the gaps disclosed, a signed manifest, in one zip.

Plaintext never touches persistent disk: a run's segments are decrypted in memory and joined
into one fragmented MP4 in the tmpfs scratch directory (`vault.media.tools.join_fragmented`: one init
section, the fragments with continuous decode times), and the zip is assembled while it streams
to the requester, each file deleted from scratch once sent. Segments that cannot be joined box by
box go through ffmpeg's concat demuxer instead, fed by named pipes. The manifest lists the SHA-256 of every
other file in the zip and is signed with the vault's Ed25519 key (`manifest.sig`), so
`holdfast verify-export` needs only the public key, and one changed byte anywhere fails it.

Standard tools verify it too: the zip carries the public key (`public-key.pem`), the raw 64-byte
signature (`manifest.sig.bin`, for `openssl pkeyutl -verify -rawin`), `SHA256SUMS` over every
other file (for `sha256sum -c`) and `VERIFY.txt` saying how; the key's fingerprint in it must be
compared with the one the appliance publishes, since a key inside the zip proves nothing alone.

Over 500 lines because the zip's layout, the manifest and its verification (`verify_export`) must
agree byte for byte: they are kept in one file so a change to one is seen beside the other.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vault.errors import HoldfastError
from vault.index.queries import coverage_gaps, exportable_segments
from vault.index.schema import Segment
from vault.media import tools
from vault.ops.logsetup import event
from vault.sealed import keys
from vault.timeutil import iso
from vault.vault import Vault

log = logging.getLogger("holdfast.evidence")
FORMAT = "holdfast-evidence/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
RAW_SIGNATURE = "manifest.sig.bin"
PUBLIC_KEY = "public-key.pem"
SUMS = "SHA256SUMS"
INSTRUCTIONS = "VERIFY.txt"
#: Written after the manifest is signed, so not listed in it: verify_export checks each directly.
UNLISTED = (MANIFEST, SIGNATURE, RAW_SIGNATURE, SUMS)

VERIFY_TEXT = """Verifying this evidence export with standard tools
================================================

1. Check that the public key is the appliance's: its key id must equal the signing key id the
   appliance operator publishes (and manifest.json's "signing_key_id"):
       {key_id}
   It is the first 16 hex digits of
       openssl pkey -pubin -in public-key.pem -outform DER | tail -c 32 | sha256sum

2. Check the signature over the manifest (Ed25519):
       openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin \\
           -in manifest.json -sigfile manifest.sig.bin

3. Check every file against the manifest's hashes, here in sha256sum's format:
       sha256sum -c SHA256SUMS
   and that SHA256SUMS names the same hashes as the "files" of manifest.json.

Or, with the Holdfast tools: holdfast verify-export EXPORT.zip --pubkey sign.pub
Gaps in the recording are listed in gaps.txt and in manifest.json ("gaps" per camera).
"""


class ExportError(HoldfastError):
    """An export could not be built."""


class ExportInvalid(HoldfastError):
    """An export zip fails verification: names what is wrong."""


@dataclass
class ExportPart:
    """One source of an export: its segments, oldest first, and the gaps in its coverage."""

    source: str
    segments: list[Segment]
    gaps: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "camera"  # camera | line


def _is_tmpfs(path: Path) -> bool:
    """True when `path` is on a RAM filesystem (tmpfs/ramfs): the only place plaintext may sit."""
    try:
        target = os.path.realpath(path)
        best, fstype = "", ""
        # The process's own mount table: under ProcSubset=pid (the API unit) /proc/mounts is absent.
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                mounted = len(parts) >= 3 and (
                    target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")
                )
                if mounted and len(parts[1]) >= len(best):
                    best, fstype = parts[1], parts[2]
        return fstype in ("tmpfs", "ramfs")
    except OSError:
        return False


def scratch_dir(scratch: Path) -> Path:
    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not _is_tmpfs(scratch):
        raise ExportError(
            f"scratch directory {scratch} is not on tmpfs: refusing to write plaintext there (set paths.scratch)"
        )
    return Path(tempfile.mkdtemp(prefix="export-", dir=scratch))


class ExportBusy(HoldfastError):
    """Every export slot is taken: try again when one finishes."""


class ExportTooLarge(HoldfastError):
    """The export would read more than `[api] max_export_bytes`."""


def export_scratch(cfg: Any) -> Path:
    """The tmpfs directory exports are built in: `[api] export_scratch`, else `paths.scratch`.

    It must not share a filesystem with `[pbx] dir`: the PBX writes call recordings there and
    an export filling the same tmpfs would make it drop them.
    """
    scratch = Path(cfg.api.export_scratch or cfg.paths.scratch)
    try:
        scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise ExportError(
            f"export scratch {scratch} cannot be created ({e.strerror}): point [api] export_scratch "
            "at a tmpfs the API can write (the installed unit mounts one at /run/holdfast-export)"
        ) from None
    pbx = cfg.pbx.dir
    if pbx is not None and Path(pbx).exists() and os.stat(pbx).st_dev == os.stat(scratch).st_dev:
        raise ExportError(
            f"export scratch {scratch} is on the same filesystem as the PBX directory {pbx}: an export "
            "could fill it and stop PBX recordings; set [api] export_scratch to a tmpfs of its own"
        )
    return scratch


class ExportSlot:
    """One of `[api] max_concurrent_exports` slots: an flock on a file in the export scratch
    directory, so the limit holds across API worker processes; released when the export ends."""

    def __init__(self, scratch: Path, slots: int) -> None:
        import fcntl

        self.fd: int | None = None
        for i in range(slots):
            fd = os.open(scratch / f".export-slot-{i}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.fd = fd
            return
        raise ExportBusy(
            f"{slots} exports are already running ([api] max_concurrent_exports): try again when one finishes"
        )

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def check_export_size(segments: Sequence[Segment], limit: int) -> int:
    total = sum(int(x.plaintext_bytes or 0) for x in segments)
    if total > limit:
        raise ExportTooLarge(
            f"export would read {total} bytes of footage, more than [api] max_export_bytes ({limit}): "
            "export a shorter range or fewer sources"
        )
    return total


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


#: Segments further apart than this start a new recording run (a new MP4): a gap is never
#: joined over, so it shows in the media itself (one file per run), not only in the manifest.
RUN_BREAK_SECONDS = 1.0


def recording_runs(segments: Sequence[Segment]) -> list[list[Segment]]:
    """Split time-ordered segments where one ends more than RUN_BREAK_SECONDS before the next starts."""
    runs: list[list[Segment]] = []
    for seg in segments:
        if runs and (seg.start - runs[-1][-1].end).total_seconds() <= RUN_BREAK_SECONDS:
            runs[-1].append(seg)
        else:
            runs.append([seg])
    return runs


def run_file_name(camera: str, start: datetime, tz: str) -> str:
    """`<camera>_<local start>.mp4` in the site's zone, e.g. office-1_2026-11-21T10-00-35+0200.mp4."""
    local = start.astimezone(ZoneInfo(tz))
    return f"{camera}_{local.strftime('%Y-%m-%dT%H-%M-%S%z')}.mp4"


class _Feeder(threading.Thread):
    """Decrypts a camera's segments, in order, into the named pipes ffmpeg's concat demuxer opens
    one after another, hashing each plaintext on the way: no decrypted copy lands in scratch."""

    def __init__(self, v: Vault, segments: Sequence[Segment], pipes: list[Path]) -> None:
        super().__init__(daemon=True)
        self.v, self.segments, self.pipes = v, segments, pipes
        self.hashes: list[str] = []
        self.error: BaseException | None = None
        self.stop = False

    def run(self) -> None:
        try:
            for seg, pipe in zip(self.segments, self.pipes, strict=True):
                h = hashlib.sha256()
                with open(pipe, "wb") as f:  # blocks until ffmpeg reaches this file
                    if self.stop:
                        return
                    for piece in self.v.read_plaintext(seg):
                        h.update(piece)
                        f.write(piece)
                self.hashes.append(h.hexdigest())
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status says why
        except BaseException as e:  # a seal error: reported by the caller
            self.error = e

    def release(self) -> None:
        """Unblock a writer waiting for a reader that will never come (ffmpeg has exited)."""
        self.stop = True
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                os.close(os.open(pipe, os.O_RDONLY | os.O_NONBLOCK))


#: Bytes handed to a digest thread at a time, and batches waiting: bounds the memory in flight.
_BATCH_BYTES = 4 << 20
_BATCHES_QUEUED = 4


class _Worker(threading.Thread):
    """Runs `work` on each batch put to it, in order, off the decrypting thread.

    hashlib, zlib.crc32 and file writes release the GIL on large buffers, so with two cores
    the hashing of one batch runs while the next segment decrypts and is joined. A failure
    is raised to the thread that puts the next batch or finishes.
    """

    def __init__(self, work: Callable[[list[Any]], None]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.queue: queue.Queue[list[Any] | None] = queue.Queue(maxsize=_BATCHES_QUEUED)
        self.error: BaseException | None = None
        self.batch: list[Any] = []
        self.pending = 0

    def run(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.work(batch)
                except BaseException as e:  # raised to the putting thread
                    self.error = e

    def add(self, item: Any, size: int) -> None:
        self.batch.append(item)
        self.pending += size
        if self.pending >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.error is not None:
            raise self.error
        if self.batch:
            self.queue.put(self.batch)
            self.batch, self.pending = [], 0

    def finish(self) -> None:
        """Wait for every batch put so far; raise what failed. The thread ends either way."""
        self.batch, self.pending = [], 0
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error


class _DigestedFile:
    """Where the joined MP4 goes: its bytes written to scratch, SHA-256'd and CRC-32'd (the zip
    needs it) in batches on a second thread, all three in the one pass over them."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.crc = 0
        self.worker = _Worker(self._digest)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.worker.add(data, len(data))  # the joiner never changes a buffer it has given
        return len(data)

    def _digest(self, batch: list[bytes | bytearray | memoryview]) -> None:
        data = b"".join(batch)
        self.f.write(data)
        self.sha.update(data)
        self.crc = zlib.crc32(data, self.crc)


def _segment_hashes(batch: list[tuple[Any, bytes]]) -> None:
    """One update per segment in the batch: each call takes the GIL back, one big call releases
    it for longest."""
    for h, pieces in itertools.groupby(batch, key=lambda item: item[0]):
        h.update(b"".join(piece for _, piece in pieces))


def _join(v: Vault, part: ExportPart, work: Path, out: Path) -> tuple[list[dict[str, Any]], str, int | None]:
    """This run's segments as one MP4 in scratch: each segment's plaintext SHA-256, the file's
    SHA-256 and its CRC-32 (None when the file came from ffmpeg).

    Joined box by box at decryption speed when the segments allow it; else by ffmpeg. The
    hashing and the writing run on two more threads (`_Worker`) while this one decrypts and joins.
    """
    hashes: list[Any] = []
    seg_hashing = _Worker(_segment_hashes)

    def sources() -> Iterator[tuple[int, Iterator[bytes]]]:
        for seg in part.segments:
            h = hashlib.sha256()
            hashes.append(h)
            with v.open_plaintext(seg) as r:

                def plaintext(r: Any = r, h: Any = h) -> Iterator[bytes]:
                    for piece in r.stream():
                        seg_hashing.add((h, piece), len(piece))
                        yield piece

                yield r.size, plaintext()

    seconds = sum(float(s.duration or 0.0) for s in part.segments)
    seg_hashing.start()
    try:
        with open(out, "wb") as f:
            dest = _DigestedFile(f)
            dest.worker.start()
            try:
                tools.join_fragmented(sources(), dest, part.segments[0].start, seconds)
                dest.worker.flush()
            finally:
                dest.worker.finish()
        seg_hashing.flush()
    except tools.NotJoinable as e:
        out.unlink(missing_ok=True)
        event(log, "evidence.join_fallback", camera=part.source, reason=str(e))
        return _concat(v, part, work, out), sha256_file(out), None
    finally:
        seg_hashing.finish()
    return (
        [
            {
                "id": seg.id,
                "start": iso(seg.start),
                "end": iso(seg.end),
                "duration": seg.duration,
                "sha256": h.hexdigest(),
            }
            for seg, h in zip(part.segments, hashes, strict=True)
        ],
        dest.sha.hexdigest(),
        dest.crc,
    )


def _concat(v: Vault, part: ExportPart, work: Path, out: Path) -> list[dict[str, Any]]:
    """Stream-copy this run's segments into one faststart MP4 in scratch with ffmpeg.

    The segments reach ffmpeg through named pipes, decrypted as it reads them; each list entry
    carries the segment's duration from the index (a pipe cannot be probed for it). Only the
    joined MP4 is a file: `+faststart` rewrites it in place and needs it seekable. The MP4
    carries the run's wall-clock start as `creation_time` (ffprobe: format tags).
    """
    pipes = [work / f"{part.source}-{i:06d}.pipe" for i in range(len(part.segments))]
    lines = []
    for pipe, seg in zip(pipes, part.segments, strict=True):
        os.mkfifo(pipe, 0o600)
        lines.append(f"file '{pipe}'\nduration {seg.duration:.6f}\n")
    lst = work / f"{part.source}.txt"
    lst.write_text("".join(lines), "utf-8")
    cmd = tools.concat_command(lst, out, part.segments[0].start)
    feeder = _Feeder(v, part.segments, pipes)
    feeder.start()
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=3600, check=False, stdin=subprocess.DEVNULL)
    finally:
        feeder.release()
        feeder.join(60)
        for pipe in pipes:
            pipe.unlink(missing_ok=True)
        lst.unlink(missing_ok=True)
    if feeder.error is not None:
        raise feeder.error
    if proc.returncode != 0 or len(feeder.hashes) != len(part.segments):
        raise ExportError(
            f"ffmpeg could not join {part.source}: {proc.stderr.decode(errors='replace')[-300:]}"
        )
    return [
        {"id": seg.id, "start": iso(seg.start), "end": iso(seg.end), "duration": seg.duration, "sha256": h}
        for seg, h in zip(part.segments, feeder.hashes, strict=True)
    ]


def build_export(
    v: Vault,
    parts: Sequence[ExportPart],
    incident: dict[str, Any],
    exporter: dict[str, Any],
    start: datetime,
    end: datetime,
) -> Built:
    """Build the export's files in tmpfs scratch; the caller streams the zip (`Built.stream()`)."""

    crcs: dict[str, int | None] = {}  # the joined files' CRC-32s, so the zip need not read them twice

    def camera(work: Path, part: ExportPart, files: dict[str, str]) -> dict[str, Any]:
        if not part.segments:
            return {"camera": part.source, "file": None, "runs": [], "segments": [], "gaps": part.gaps}
        tz = v.cfg.site(v.cfg.source(part.source).site).timezone
        runs, segs = [], []
        for run in recording_runs(part.segments):
            name = run_file_name(part.source, run[0].start, tz)
            out = work / name
            listed, files[name], crcs[name] = _join(v, ExportPart(part.source, run), work, out)
            segs += listed
            runs.append(
                {"file": name, "start": iso(run[0].start), "end": iso(run[-1].end), "segments": len(run)}
            )
        return {
            "camera": part.source,
            "file": runs[0]["file"],
            "runs": runs,
            "segments": segs,
            "gaps": part.gaps,
        }

    def gaps_file(work: Path, cams: list[dict[str, Any]], files: dict[str, str]) -> None:
        gaps_txt = (
            "".join(
                f"{c['camera']}\t{g['start']}\t{g['end']}\t{g['reason']}\n" for c in cams for g in c["gaps"]
            )
            or "no gaps in the exported range\n"
        )
        (work / "gaps.txt").write_text("camera\tstart\tend\treason\n" + gaps_txt, "utf-8")
        files["gaps.txt"] = sha256_file(work / "gaps.txt")

    built = build_signed(
        v,
        parts,
        camera,
        header={"format": FORMAT, "incident": incident, "exporter": exporter},
        listed_as="cameras",
        start=start,
        end=end,
        finish=gaps_file,
    )
    built.crc32.update((name, crc) for name, crc in crcs.items() if crc is not None)
    return built


#: Renders one part of an export into the scratch directory, adding each file it writes (name:
#: SHA-256) to the dict, and returns the part's manifest entry.
PartRenderer = Callable[[Path, "ExportPart", dict[str, str]], dict[str, Any]]


def build_signed(
    v: Vault,
    parts: Sequence[ExportPart],
    render: PartRenderer,
    header: dict[str, Any],
    listed_as: str,
    start: datetime,
    end: datetime,
    finish: Callable[[Path, list[dict[str, Any]], dict[str, str]], None] | None = None,
) -> Built:
    """The one export pipeline: a private tmpfs scratch directory, each part rendered into it,
    `finish` (files over all parts), then the manifest (`header`, the range, the parts' entries
    under `listed_as`) signed. On any failure the scratch directory is removed."""
    work = scratch_dir(export_scratch(v.cfg))
    try:
        files: dict[str, str] = {}
        entries = [render(work, part, files) for part in parts]
        if finish is not None:
            finish(work, entries, files)
        manifest = {**header, "range": {"start": iso(start), "end": iso(end)}, listed_as: entries}
        built = sign(v, work, files, manifest)
        event(log, "export.built", format=header.get("format"), parts=len(parts), bytes=built.size())
        return built
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def gather_parts(
    v: Vault, sources: Sequence[str], start: datetime, end: datetime, kind: Callable[[str], str] | None = None
) -> list[ExportPart]:
    """Each source's segments in [start, end) that can still be opened, with the gaps in its
    coverage: what an export of that range holds and discloses."""
    with v.sessions() as s:
        parts = [
            ExportPart(x, exportable_segments(s, x, start, end), kind=kind(x) if kind else "camera")
            for x in sources
        ]
        for p in parts:
            p.gaps = coverage_gaps(s, p.source, p.segments, start, end)
    return parts


#: Bytes per piece of the zip as it streams: each is one read of a scratch file and one write to
#: the HTTP response, so the export holds at most about one in memory per open response.
STREAM_PIECE = 1 << 20


@dataclass
class Built:
    """A built export: its files in a private scratch directory and the signed manifest.

    `stream()` yields the zip as it is assembled (never written whole to scratch) and removes
    each file once it is in the stream; `discard()` removes whatever is left.
    """

    work: Path
    files: dict[str, str]
    manifest: bytes
    signature: bytes
    #: Unlisted members written after the signature (raw signature, SHA256SUMS).
    extra: dict[str, bytes] = field(default_factory=dict)
    #: CRC-32 of listed files computed while they were built: sent without a second read for it.
    crc32: dict[str, int] = field(default_factory=dict)

    def size(self) -> int:
        return sum((self.work / n).stat().st_size for n in self.files if (self.work / n).exists())

    def stream(self, chunk: int = STREAM_PIECE) -> Iterator[bytes]:
        sink = _Sink()
        try:
            with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as z:  # type: ignore[arg-type]
                z.writestr(MANIFEST, self.manifest)
                z.writestr(SIGNATURE, self.signature)
                for name, data in self.extra.items():
                    z.writestr(name, data)
                yield sink.take()
                for name in self.files:
                    path = self.work / name
                    info = zipfile.ZipInfo.from_file(path, name)
                    info.compress_type = zipfile.ZIP_STORED
                    with open(path, "rb") as src:
                        if name in self.crc32:
                            yield from _stored_known(z, sink, info, self.crc32[name], src, chunk)
                        else:
                            with z.open(info, "w", force_zip64=True) as dst:
                                while b := src.read(chunk):
                                    dst.write(b)
                                    yield sink.take()
                    path.unlink()
            yield sink.take()
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def _stored_known(
    z: zipfile.ZipFile, sink: _Sink, info: zipfile.ZipInfo, crc: int, src: BinaryIO, chunk: int
) -> Iterator[bytes]:
    """One stored member whose CRC-32 and size are known: its local header says both (no data
    descriptor), then the file's bytes pass as read, neither copied nor checksummed again.
    The member joins `z`'s central directory as `ZipFile.open(..., "w")` would add it."""
    info.CRC, info.compress_size = crc, info.file_size
    info.external_attr = info.external_attr or 0o600 << 16
    info.header_offset = sink.tell()
    sink.write(info.FileHeader(zip64=True))
    yield sink.take()
    sent = 0
    while b := src.read(chunk):
        sent += len(b)
        sink.skip(len(b))
        yield b
    if sent != info.file_size:
        raise ExportError(
            f"{info.filename} changed size while it was sent ({sent} of {info.file_size} bytes)"
        )
    z.start_dir = sink.tell()
    z.filelist.append(info)
    z.NameToInfo[info.filename] = info


class _Sink:
    """A write-only file for zipfile: it streams (data descriptors) instead of seeking back."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, b: bytes) -> int:
        self.parts.append(bytes(b))
        self.offset += len(b)
        return len(b)

    def skip(self, n: int) -> None:
        """`n` bytes went to the stream without passing through here."""
        self.offset += n

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def sign(v: Vault, work: Path, files: dict[str, str], manifest: dict[str, Any]) -> Built:
    """Add the file hashes, time and key id to `manifest` and sign it.

    Shared by evidence and subject-access exports, so one `verify-export` checks both.
    """
    sign_key = keys.load_sign_private(v.cfg.keys.dir / keys.SIGN_KEY)
    pub = sign_key.public_key()
    kid = keys.key_id(pub).hex()
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (work / PUBLIC_KEY).write_bytes(pem)
    (work / INSTRUCTIONS).write_text(VERIFY_TEXT.format(key_id=kid), "utf-8")
    files = {
        **files,
        PUBLIC_KEY: sha256_file(work / PUBLIC_KEY),
        INSTRUCTIONS: sha256_file(work / INSTRUCTIONS),
    }
    manifest = {
        **manifest,
        "files": files,
        "created": iso(v.clock()),
        "signing_key_id": kid,
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    sig = sign_key.sign(body)
    extra = {RAW_SIGNATURE: sig, SUMS: sha256sums(files, hashlib.sha256(body).hexdigest()).encode()}
    return Built(work, files, body, (sig.hex() + "\n").encode(), extra)


def sha256sums(files: dict[str, str], manifest_sha256: str) -> str:
    """`sha256sum -c` input for the manifest and every file it lists (binary mode marker)."""
    rows = {**files, MANIFEST: manifest_sha256}
    return "".join(f"{h} *{name}\n" for name, h in sorted(rows.items()))


def verify_export(zpath: Path, pub: Ed25519PublicKey) -> dict[str, Any]:
    """Offline check: signature over the manifest, then every file's SHA-256; no extra files."""
    try:
        z = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as e:
        raise ExportInvalid(f"{zpath}: not a readable zip ({e})") from None
    with z:
        names = set(z.namelist())
        for need in (MANIFEST, SIGNATURE):
            if need not in names:
                raise ExportInvalid(f"{need} is missing from the export")
        try:
            body = z.read(MANIFEST)
            sig = bytes.fromhex(z.read(SIGNATURE).decode("ascii").strip())
        except (zipfile.BadZipFile, ValueError, UnicodeDecodeError) as e:
            raise ExportInvalid(f"manifest or signature unreadable: {e}") from None
        try:
            pub.verify(sig, body)
        except InvalidSignature:
            raise ExportInvalid(
                "manifest.json signature does not verify: the manifest was changed or signed by another key"
            ) from None
        manifest = json.loads(body)
        files: dict[str, str] = manifest.get("files", {})
        if RAW_SIGNATURE in names and z.read(RAW_SIGNATURE) != sig:
            raise ExportInvalid(f"{RAW_SIGNATURE} is not the manifest's signature")
        if SUMS in names:
            want_sums = sha256sums(files, hashlib.sha256(body).hexdigest())
            if z.read(SUMS).decode("utf-8", errors="replace") != want_sums:
                raise ExportInvalid(f"{SUMS} does not list exactly the manifest's hashes")
        extra = names - set(files) - set(UNLISTED)
        if extra:
            raise ExportInvalid(f"files not listed in the manifest: {', '.join(sorted(extra))}")
        for name, want in files.items():
            if name not in names:
                raise ExportInvalid(f"{name} is listed in the manifest but missing")
            h = hashlib.sha256()
            try:
                with z.open(name) as f:
                    while b := f.read(1 << 20):
                        h.update(b)
            except (zipfile.BadZipFile, OSError) as e:
                raise ExportInvalid(f"{name}: unreadable in the zip ({e})") from None
            if h.hexdigest() != want:
                raise ExportInvalid(f"{name}: SHA-256 {h.hexdigest()} does not match the manifest ({want})")
    return manifest
