"""C2SP signed notes (c2sp.org/signed-note, Go's golang.org/x/mod/sumdb/note) with Ed25519.

Why this format: a checkpoint written as a signed note is read by the transparency-log tools
others wrote (Go's sumdb/note, transparency-dev's checkpoint parsers, witnesses), so an auditor
needs no Holdfast code to check what the appliance signed. A note is

    <text ending in a newline>
    <blank line>
    — <key name> base64(4-byte key ID || Ed25519 signature over the text)

with key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]. A verifier key
("vkey") is published as `<name>+<key ID hex>+base64(0x01 || public key)`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vault.sealed.keyid import raw_public

EM_DASH = "\u2014"
#: Signature type byte of Ed25519 in the signed-note registry.
SIG_ED25519 = 0x01
#: Verifiers must accept at least 16 signatures; more is refused as malformed.
MAX_SIGNATURES = 100

_NAME_RE = re.compile(r"^[^\s+]+$")


class NoteError(ValueError):
    """A note is malformed, or no trusted key's signature on it verifies."""


@dataclass(frozen=True)
class Verifier:
    """A trusted key: the note signatures it checks are those with its name and key ID."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    signature: bytes


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


def key_id(name: str, pub: Ed25519PublicKey) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || public key)[:4], as the spec recommends for Ed25519."""
    check_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([SIG_ED25519]) + raw_public(pub)).digest()[:4]


def verifier(name: str, pub: Ed25519PublicKey) -> Verifier:
    return Verifier(name, key_id(name, pub), pub)


def verifier_key(name: str, pub: Ed25519PublicKey) -> str:
    """The published verifier key line, e.g. for Go's note.NewVerifier."""
    b64 = base64.b64encode(bytes([SIG_ED25519]) + raw_public(pub)).decode()
    return f"{name}+{key_id(name, pub).hex()}+{b64}"


def parse_verifier_key(vkey: str) -> Verifier:
    """Inverse of verifier_key; the key ID must match the name and key."""
    parts = vkey.strip().split("+", 2)  # the base64 key may itself contain "+"
    if len(parts) != 3:
        raise NoteError(f"verifier key {vkey!r} is not NAME+KEYID+KEY")
    name, hexid, b64 = parts
    check_name(name)
    try:
        raw = base64.b64decode(b64, validate=True)
        kid = bytes.fromhex(hexid)
    except (binascii.Error, ValueError) as e:
        raise NoteError(f"verifier key {vkey!r}: {e}") from None
    if len(kid) != 4 or len(raw) != 33 or raw[0] != SIG_ED25519:
        raise NoteError(f"verifier key {vkey!r} is not an Ed25519 note key")
    pub = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_id(name, pub) != kid:
        raise NoteError(f"verifier key {vkey!r}: key ID does not match the name and key")
    return Verifier(name, kid, pub)


def _check_text(text: bytes) -> str:
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NoteError(f"note is not UTF-8: {e}") from None
    if any(c < " " and c != "\n" for c in s):
        raise NoteError("note contains an ASCII control character other than newline")
    return s


def signature_line(name: str, pub: Ed25519PublicKey, signature: bytes) -> str:
    """`— name base64(key ID || signature)` for a signature already made over the note text."""
    b64 = base64.b64encode(key_id(name, pub) + signature).decode()
    return f"{EM_DASH} {name} {b64}\n"


def assemble(text: bytes, lines: list[str]) -> bytes:
    """Text, blank line, signature lines: the signed note's bytes."""
    s = _check_text(text)
    if not s.endswith("\n"):
        raise NoteError("note text must end in a newline")
    return (s + "\n" + "".join(lines)).encode("utf-8")


def sign(text: bytes, name: str, key: Ed25519PrivateKey) -> bytes:
    """Sign `text` (which must end in a newline) as a one-signature note."""
    return assemble(text, [signature_line(name, key.public_key(), key.sign(text))])


def parse(note: bytes) -> tuple[bytes, list[Signature]]:
    """Split a note into its text and signatures; no signature is checked here."""
    s = _check_text(note)
    if not s.endswith("\n"):
        raise NoteError("note must end in a newline")
    cut = s.rfind("\n\n")
    if cut < 0:
        raise NoteError("note has no blank line before its signatures")
    text, sig_block = s[: cut + 1], s[cut + 2 :]
    sigs: list[Signature] = []
    for line in sig_block.split("\n")[:-1]:
        if not line.startswith(EM_DASH + " "):
            raise NoteError(f"signature line {line!r:.60} does not start with '— '")
        fields = line[2:].split(" ")
        if len(fields) != 2:
            raise NoteError(f"signature line {line!r:.60} is not '— NAME SIGNATURE'")
        name, b64 = fields
        check_name(name)
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise NoteError(f"signature of {name!r} is not base64") from None
        if len(raw) < 5:
            raise NoteError(f"signature of {name!r} is too short")
        sigs.append(Signature(name, raw[:4], raw[4:]))
    if not sigs:
        raise NoteError("note has no signature lines")
    if len(sigs) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(sigs)} signatures (at most {MAX_SIGNATURES} accepted)")
    return text.encode("utf-8"), sigs


def open_note(note: bytes, verifiers: list[Verifier]) -> tuple[bytes, Verifier]:
    """The note's text and the trusted key whose signature verified; NoteError otherwise.

    Signatures from unknown keys are ignored; a known key whose signature fails rejects the note.
    """
    text, sigs = parse(note)
    ok: Verifier | None = None
    for sig in sigs:
        for v in verifiers:
            if v.name == sig.name and v.key_id == sig.key_id:
                try:
                    v.public_key.verify(sig.signature, text)
                except InvalidSignature:
                    raise NoteError(
                        f"signature by {sig.name}+{sig.key_id.hex()} does not verify: the note was altered"
                    ) from None
                ok = ok or v
    if ok is None:
        known = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers) or "none"
        raise NoteError(
            "no signature on the note is from a trusted key (signed by "
            + ", ".join(f"{s.name}+{s.key_id.hex()}" for s in sigs)
            + f"; trusted: {known})"
        )
    return text, ok
