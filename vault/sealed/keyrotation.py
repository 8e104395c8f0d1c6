"""Key rotation: new segments sealed to a new key; old private keys live exactly as long as
segments that need them, then are destroyed; the log signing key hands over to its successor.

Seal key (`rotate_seal`), crash-safe order, every step atomic (rename) and fsynced:
1. write the new pair as `seal.next.key` / `seal.next.pub` (O_EXCL, 0600 / 0644);
2. rename `seal.key` -> `seal-<keyid>.key` (the keyring loads `seal*.key`, so nothing that
   needs the old key loses it at any moment);
3. rename `seal.next.key` -> `seal.key`, then `seal.next.pub` -> `seal.pub`.
Recorders read `seal.pub` when a segment starts, so new segments use the new key.

Pruning (`prune_and_log` -> `prune_seal_keys`, run by the purger after each run and by `holdfast keys prune`): an
old `seal-<keyid>.key` is destroyed once no indexed segment sealed to it still has its envelope
(purging NULLs the envelope) and no spooled file waits for ingest under it. Destroying is:
overwrite with random bytes, fsync, unlink, fsync the directory; logged as the structured event
`keys.destroyed` and, when the access log exists, as an access-log entry.

Sign key (`rotate_sign`): a transition statement `{old_key_id, new_key_id, new_public_key, at,
checkpoint}` signed by the old key AND the new key is appended to `sign-transitions.jsonl`; the
checkpoint in it is the latest log checkpoint re-signed by the new key ("signed over"). An
auditor who trusts the first `sign.pub` follows the chain with `trusted_sign_keys` and passes
the resulting keys to `tlogverify.verify_log`. The old private sign key is then destroyed (nothing is
ever signed with it again); its public half stays as `sign-<keyid>.pub`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from vault.errors import KeyFileError
from vault.ledger import entries
from vault.ops.logsetup import event
from vault.sealed import keys
from vault.sealed.seal import MAGIC
from vault.store.fsutil import fsync_dir
from vault.store.spool import SEG_SUFFIX
from vault.timeutil import iso, utcnow

log = logging.getLogger("holdfast.keys")

TRANSITIONS = "sign-transitions.jsonl"
_KID_AT = slice(14, 22)  # key id in a sealed segment's header (docs/sealed-format.md)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    keys._write_new(path, data, mode)  # O_EXCL + fsync: never clobbers a key


def _pem_priv(k: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return keys._private_pem(k)


def _pem_pub(k: Any) -> bytes:
    return keys._public_pem(k)


def rotate_seal(directory: Path) -> tuple[str, str]:
    """Returns (old key id, new key id) in hex."""
    old_pub = keys.load_seal_public(directory / keys.SEAL_PUB)
    keys.load_seal_private(directory / keys.SEAL_KEY)  # refuse to rotate away a key we cannot read
    old_kid = keys.key_id(old_pub).hex()
    new = X25519PrivateKey.generate()
    nk, np_ = directory / "seal.next.key", directory / "seal.next.pub"
    for p in (nk, np_):
        p.unlink(missing_ok=True)  # leftovers of a crashed rotation (never the live key)
    _write_new(nk, _pem_priv(new), 0o600)
    _write_new(np_, _pem_pub(new.public_key()), 0o644)
    kept = directory / f"seal-{old_kid}.key"
    if kept.exists():
        raise KeyFileError(f"{kept} already exists: this key was rotated before")
    os.rename(directory / keys.SEAL_KEY, kept)
    os.rename(nk, directory / keys.SEAL_KEY)
    os.rename(np_, directory / keys.SEAL_PUB)
    fsync_dir(directory)
    new_kid = keys.key_id(new.public_key()).hex()
    event(log, "keys.seal_rotated", old_key=old_kid, new_key=new_kid, kept=kept.name)
    return old_kid, new_kid


def destroy_file(path: Path) -> None:
    """Overwrite, fsync, unlink, fsync dir: the best a filesystem allows (see docs: SSDs and CoW)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.write(os.urandom(max(size, 1)))
        f.flush()
        os.fsync(f.fileno())
    path.unlink()
    fsync_dir(path.parent)


def _spooled_key_ids(spool: Path) -> set[str]:
    out: set[str] = set()
    for d in (spool, spool / ".partial"):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.name.endswith((SEG_SUFFIX, ".part")):
                try:
                    with open(p, "rb") as f:
                        head = f.read(22)
                except OSError:
                    continue
                if head[:8] == MAGIC and len(head) == 22:
                    out.add(head[_KID_AT].hex())
    return out


def prune_seal_keys(vault: Any, audit: Callable[[str, dict[str, Any]], None] | None = None) -> list[str]:
    """Destroy old seal keys no segment needs any more; returns the destroyed key ids."""
    # Imported here: the offline verifier (`audit verify`) uses this module without a database.
    from sqlalchemy import func, select

    from vault.index.schema import Segment

    directory: Path = vault.cfg.keys.dir
    current = keys.key_id(keys.load_seal_public(directory / keys.SEAL_PUB)).hex()
    spooled = _spooled_key_ids(vault.cfg.paths.spool)
    destroyed = []
    for p in sorted(directory.glob("seal-*.key")):
        kid = p.name[len("seal-") : -len(".key")]
        if kid == current:
            continue
        with vault.sessions() as s:
            live = s.scalar(
                select(func.count())
                .select_from(Segment)
                .where(Segment.key_id == kid, Segment.envelope.is_not(None))
            )
        if live or kid in spooled:
            event(log, "keys.kept", key=kid, live_segments=live, in_spool=kid in spooled)
            continue
        destroy_file(p)
        destroyed.append(kid)
        event(log, "keys.destroyed", logging.WARNING, key=kid, reason="no segment sealed to it remains")
        if audit is not None:
            audit("key-destroyed", {"key_id": kid, "reason": "no segment sealed to it remains"})
    if destroyed:
        vault.__dict__.pop("keyring", None)  # the cached keyring still held the destroyed key
    return destroyed


PRUNE_ACTOR = "holdfast-purge"
PRUNE_PURPOSE = "crypto-shredding: no segment sealed to this key keeps its key envelope"


def prune_and_log(vault: Any, actor: str = PRUNE_ACTOR, role: str = "system") -> list[str]:
    """`prune_seal_keys` with every destruction appended to the tamper-evident access log
    (action `key.destroyed`) and the log's head signed, so an auditor sees when each seal key
    went, not only the journal. Run by the purger after each pass and by `holdfast keys prune`.

    Order: destroy, then log. A kill between the two leaves a destroyed key without its entry
    (the structured `keys.destroyed` line is already in the journal); logging first would risk
    an entry for a key that still exists. Each destroyed key is logged in its own transaction.
    """

    def audit(action: str, details: dict[str, Any]) -> None:
        now = vault.clock()
        kid = details.get("key_id")
        with vault.sessions.begin() as s:
            vault.access_log.record(
                s,
                user=actor,
                role=role,
                action="key.destroyed" if action == "key-destroyed" else action,
                purpose=PRUNE_PURPOSE,
                at=now,
                key_id=kid,
                reason=details.get("reason"),
            )
            vault.access_log.checkpoint(s, vault.sign_key, now)

    return prune_seal_keys(vault, audit=audit)


def sign_over_latest(vault: Any) -> entries.Checkpoint | None:
    """Before a sign-key rotation: sign both logs' heads with the current key, and return the
    purge log's latest checkpoint for `rotate_sign` to re-sign with the new key (the handover
    point an auditor can check against both keys). None when the purge log is still empty."""
    now = vault.clock()
    with vault.sessions.begin() as s:
        for lg in (vault.purge_log, vault.access_log):
            lg.checkpoint(s, vault.sign_key, now)
    with vault.sessions() as s:
        cp: entries.Checkpoint | None = vault.purge_log.latest_checkpoint(s)
    return cp


# -- log signing key ------------------------------------------------------------------------


def _statement(body: dict[str, Any]) -> bytes:
    return b"holdfast sign-key transition v1\n" + entries.canonical_json(body)


def rotate_sign(directory: Path, latest: entries.Checkpoint | None = None) -> dict[str, Any]:
    """New sign key; the transition (and the latest checkpoint re-signed) appended; old private destroyed."""
    old = keys.load_sign_private(directory / keys.SIGN_KEY)
    new = Ed25519PrivateKey.generate()
    old_kid, new_kid = keys.key_id(old.public_key()).hex(), keys.key_id(new.public_key()).hex()
    body: dict[str, Any] = {
        "old_key_id": old_kid,
        "new_key_id": new_kid,
        "new_public_key": base64.b64encode(keys.raw_public(new.public_key())).decode(),
        "at": iso(utcnow()),
        "checkpoint": None,
    }
    if latest is not None:
        body["checkpoint"] = entries.sign_checkpoint(
            new, latest.origin, latest.size, latest.root, latest.time
        ).to_dict()
    stmt = _statement(body)
    record = {
        **body,
        "old_signature": base64.b64encode(old.sign(stmt)).decode(),
        "new_signature": base64.b64encode(new.sign(stmt)).decode(),
    }
    nk = directory / "sign.next.key"
    nk.unlink(missing_ok=True)
    _write_new(nk, _pem_priv(new), 0o600)
    with open(directory / TRANSITIONS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    old_pub_kept = directory / f"sign-{old_kid}.pub"
    if not old_pub_kept.exists():
        _write_new(old_pub_kept, _pem_pub(old.public_key()), 0o644)
    os.rename(nk, directory / keys.SIGN_KEY)  # atomically replaces the old private key
    tmp = directory / "sign.next.pub"
    tmp.unlink(missing_ok=True)
    _write_new(tmp, _pem_pub(new.public_key()), 0o644)
    os.rename(tmp, directory / keys.SIGN_PUB)
    fsync_dir(directory)
    event(log, "keys.sign_rotated", old_key=old_kid, new_key=new_kid, signed_over=latest is not None)
    return record


def read_transitions(directory: Path) -> list[dict[str, Any]]:
    p = directory / TRANSITIONS
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text("utf-8").splitlines() if line.strip()]


class TransitionError(entries.TlogError):
    pass


def trusted_sign_keys(
    root: Ed25519PublicKey, transitions: Sequence[dict[str, Any]]
) -> list[Ed25519PublicKey]:
    """Follow transitions from the key the auditor trusts; each must be signed by both keys."""
    chain = [root]
    for i, t in enumerate(transitions):
        cur = chain[-1]
        if t.get("old_key_id") != keys.key_id(cur).hex():
            raise TransitionError(
                f"transition {i} starts from key {t.get('old_key_id')}, not {keys.key_id(cur).hex()}"
            )
        new = _signed_by_both(i, t, cur)
        if keys.key_id(new).hex() != t["new_key_id"]:
            raise TransitionError(f"transition {i}: new_key_id does not match its public key")
        if t["checkpoint"] is not None:
            entries.verify_checkpoint(entries.Checkpoint.from_dict(t["checkpoint"]), new)
        chain.append(new)
    return chain


def _verify_transition(i: int, t: dict[str, Any], old: Ed25519PublicKey) -> Ed25519PublicKey:
    """Check one hand-over signed by both keys and naming both; returns the new key."""
    new = _signed_by_both(i, t, old)
    if keys.key_id(old).hex() != t["old_key_id"] or keys.key_id(new).hex() != t["new_key_id"]:
        raise TransitionError(f"transition {i}: key ids do not match the keys that signed it")
    return new


def _signed_by_both(i: int, t: dict[str, Any], old: Ed25519PublicKey) -> Ed25519PublicKey:
    """The new key of a hand-over whose statement both `old` and that new key signed."""
    try:
        new = Ed25519PublicKey.from_public_bytes(base64.b64decode(t["new_public_key"]))
        body = {k: t[k] for k in ("old_key_id", "new_key_id", "new_public_key", "at", "checkpoint")}
        stmt = _statement(body)
        old.verify(base64.b64decode(t["old_signature"]), stmt)
        new.verify(base64.b64decode(t["new_signature"]), stmt)
    except (KeyError, ValueError, TypeError, InvalidSignature) as e:
        raise TransitionError(
            f"transition {i} ({t.get('old_key_id')} -> {t.get('new_key_id')}) does not verify: {e!r}"
        ) from None
    return new


def trust_chain(
    anchor: Ed25519PublicKey,
    transitions: Sequence[dict[str, Any]],
    known: Sequence[Ed25519PublicKey] = (),
) -> list[Ed25519PublicKey]:
    """Every signing key linked to the auditor's key by hand-overs that both keys signed.

    Works from any key in the chain: forward (the statement carries the new public key) and
    backward (the old public key comes from `known`, e.g. the exported `sign-<id>.pub` files,
    and is trusted only because the already-trusted new key signed a statement naming its id).
    A transition that does not verify is an error, never skipped.
    """
    by_id = {keys.key_id(k).hex(): k for k in known}
    trusted = {keys.key_id(anchor).hex(): anchor}
    changed = True
    while changed:
        changed = False
        for i, t in enumerate(transitions):
            old_id, new_id = t.get("old_key_id"), t.get("new_key_id")
            if old_id in trusted and new_id not in trusted:
                new = _verify_transition(i, t, trusted[old_id])
                trusted[keys.key_id(new).hex()] = new
                changed = True
            elif new_id in trusted and old_id not in trusted and old_id in by_id:
                new = _verify_transition(i, t, by_id[old_id])
                if keys.key_id(new).hex() != new_id or keys.raw_public(new) != keys.raw_public(
                    trusted[new_id]
                ):
                    raise TransitionError(f"transition {i} names a different key as {new_id}")
                trusted[old_id] = by_id[old_id]
                changed = True
    return list(trusted.values())


def export_sign_history(keys_dir: Path, dest: Path) -> None:
    """Put the hand-overs and the archived public keys beside an audit export."""
    src = keys_dir / TRANSITIONS
    if src.exists():
        shutil.copyfile(src, dest / TRANSITIONS)
    for pub in sorted(keys_dir.glob("sign-*.pub")):
        shutil.copyfile(pub, dest / pub.name)


def load_sign_history(directory: Path) -> tuple[list[dict[str, Any]], list[Ed25519PublicKey]]:
    known = []
    for p in sorted(directory.glob("sign*.pub")):
        try:
            known.append(keys.load_sign_public(p))
        except keys.KeyFileError:
            continue
    return read_transitions(directory), known
