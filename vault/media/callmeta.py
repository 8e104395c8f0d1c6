"""Call metadata shared by live capture and PBX ingest: validation and the keyed remote-party hash.

Both paths store the same fields (line, start, agent, direction, remote or remote_hash, call_id)
in the sealed segment's header meta, so `segments list --agent/--direction` finds a call however
it arrived. The remote-party hash is an HMAC with its own secret (`keys/remote-hash.key`), never
the vault's private key: a recorder holds it, and a leak of it must not open any recording.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from config.model import HoldfastConfig
from vault.errors import HoldfastError, KeyFileError
from vault.timeutil import iso, parse_iso

REMOTE_HASH_KEY = "remote-hash.key"
DIRECTIONS = ("in", "out")
#: Field names of a PBX sidecar, exactly (operators' PBX scripts write them): anything else is a malformed sidecar.
SIDECAR_FIELDS = ("line", "start", "agent", "direction", "remote", "call_id")
_CALL_ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_MAX_TEXT = 200


class CallMetaError(HoldfastError):
    """Call metadata that cannot be stored as given (unknown line, bad direction, ...)."""


@dataclass(frozen=True)
class CallMeta:
    line: str
    start: datetime
    agent: str
    direction: str
    remote: str
    call_id: str

    def to_meta(self, cfg: HoldfastConfig) -> dict[str, Any]:
        """The segment-header form; the remote party is hashed when the line's config says so."""
        line = cfg.source(self.line)
        meta: dict[str, Any] = {
            "source": self.line,
            "site": line.site,
            "kind": "audio",
            "line": self.line,
            "start": iso(self.start),
            "call_start": iso(self.start),
            "agent": self.agent,
            "direction": self.direction,
            "call_id": self.call_id,
        }
        if getattr(line, "hash_remote", False):
            meta["remote_hash"] = hash_remote(load_remote_hash_key(cfg.keys.dir), self.remote)
        else:
            meta["remote"] = self.remote
        return meta


def _text(value: Any, what: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise CallMetaError(f"{what}: expected a string, got {type(value).__name__}")
    v = value.strip()
    if not v and not allow_empty:
        raise CallMetaError(f"{what}: must not be empty")
    if len(v) > _MAX_TEXT or any(ord(c) < 32 for c in v):
        raise CallMetaError(f"{what}: at most {_MAX_TEXT} printable characters")
    return v


def validate(
    cfg: HoldfastConfig,
    *,
    line: Any,
    start: Any,
    agent: Any,
    direction: Any,
    remote: Any,
    call_id: Any,
) -> CallMeta:
    """Check every field against the config; raise CallMetaError naming the first bad one."""
    line_s = _text(line, "line")
    try:
        kind = cfg.source_kind(line_s)
    except KeyError:
        raise CallMetaError(f"line: {line_s!r} is not a call line in the configuration") from None
    if kind != "line":
        raise CallMetaError(f"line: {line_s!r} is a camera, not a call line")
    if isinstance(start, datetime):
        if start.tzinfo is None:
            raise CallMetaError("start: time has no UTC offset")
        start_dt = start
    else:
        try:
            start_dt = parse_iso(_text(start, "start"), "start")
        except ValueError as e:
            raise CallMetaError(str(e)) from None
    if direction not in DIRECTIONS:
        raise CallMetaError(f"direction: {direction!r} is not one of {', '.join(DIRECTIONS)}")
    cid = _text(call_id, "call_id")
    if not _CALL_ID_RE.match(cid):
        raise CallMetaError(f"call_id: {cid!r} must match {_CALL_ID_RE.pattern}")
    return CallMeta(
        line=line_s,
        start=start_dt,
        agent=_text(agent, "agent"),
        direction=str(direction),
        remote=_text(remote, "remote", allow_empty=True),
        call_id=cid,
    )


# -- keyed hash of the remote party ------------------------------------------------------------


def init_remote_hash_key(keys_dir: Path) -> Path:
    """Create keys/remote-hash.key (32 random bytes, 0600); never overwrites an existing one."""
    path = keys_dir / REMOTE_HASH_KEY
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite it (hashes would change)") from None
    try:
        os.write(fd, secrets.token_bytes(32).hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def load_remote_hash_key(keys_dir: Path) -> bytes:
    path = keys_dir / REMOTE_HASH_KEY
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: remote-party hash key not found; a line has hash_remote = true "
            "(create it once with `holdfast call hash-key --init`)"
        ) from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyFileError(f"{path}: readable by group or others; run `chmod 600 {path}`")
    try:
        key = bytes.fromhex(path.read_text("ascii").strip())
    except ValueError:
        raise KeyFileError(f"{path}: not a hex-encoded key") from None
    if len(key) < 32:
        raise KeyFileError(f"{path}: key shorter than 32 bytes")
    return key


def normalise_remote(remote: str) -> str:
    """Spaces, dashes and brackets are formatting, not identity: `+358 40-123` == `+35840123`."""
    return re.sub(r"[\s\-().]", "", remote)


def hash_remote(key: bytes, remote: str) -> str:
    digest = hmac.new(key, normalise_remote(remote).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"
