"""The vault's key files: an X25519 pair for sealing segments and an Ed25519 pair for signing logs.

Recorders only ever load `seal.pub`, so a compromised recorder cannot read what it recorded.
Private keys are PEM (PKCS#8) files with mode 0600; anything group- or world-readable is refused,
the way ssh refuses a private key that others can read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from vault.errors import KeyFileError
from vault.sealed.keyid import key_id, raw_public  # noqa: F401 - raw_public re-exported for callers

_Priv = TypeVar("_Priv", X25519PrivateKey, Ed25519PrivateKey)
_Pub = TypeVar("_Pub", X25519PublicKey, Ed25519PublicKey)

SEAL_KEY = "seal.key"
SEAL_PUB = "seal.pub"
SIGN_KEY = "sign.key"
SIGN_PUB = "sign.pub"


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """O_EXCL: `keys init` must never overwrite a key that sealed footage depends on."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists; refusing to overwrite a key (move it away first)"
        ) from None
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_pem(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def init_keys(directory: Path) -> list[Path]:
    """Create both key pairs in `directory`; fails without touching anything if any file exists."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    targets = [directory / n for n in (SEAL_KEY, SEAL_PUB, SIGN_KEY, SIGN_PUB)]
    existing = [p for p in targets if p.exists()]
    if existing:
        raise KeyFileError(
            f"{', '.join(map(str, existing))} already exist; `keys init` never overwrites keys"
        )
    seal = X25519PrivateKey.generate()
    sign = Ed25519PrivateKey.generate()
    _write_new(directory / SEAL_KEY, _private_pem(seal), 0o600)
    _write_new(directory / SEAL_PUB, _public_pem(seal.public_key()), 0o644)
    _write_new(directory / SIGN_KEY, _private_pem(sign), 0o600)
    _write_new(directory / SIGN_PUB, _public_pem(sign.public_key()), 0o644)
    return targets


def _read_private(path: Path) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: private key not found (run `holdfast keys init`)") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyFileError(
            f"{path}: private key is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        return path.read_bytes()
    except PermissionError:
        raise KeyFileError(f"{path}: permission denied (run as the holdfast user)") from None


def _read_public(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: public key not found (run `holdfast keys init`)") from None


def _load_private(path: Path, kind: type[_Priv], name: str) -> _Priv:
    try:
        key = serialization.load_pem_private_key(_read_private(path), password=None)
    except ValueError as e:
        raise KeyFileError(f"{path}: not a PEM private key ({e})") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path}: expected an {name} private key")
    return key


def _load_public(path: Path, kind: type[_Pub], name: str) -> _Pub:
    try:
        key = serialization.load_pem_public_key(_read_public(path))
    except ValueError as e:
        raise KeyFileError(f"{path}: not a PEM public key ({e})") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path}: expected an {name} public key")
    return key


def load_seal_private(path: Path) -> X25519PrivateKey:
    return _load_private(path, X25519PrivateKey, "X25519")


def load_seal_public(path: Path) -> X25519PublicKey:
    return _load_public(path, X25519PublicKey, "X25519")


def load_sign_private(path: Path) -> Ed25519PrivateKey:
    return _load_private(path, Ed25519PrivateKey, "Ed25519")


def load_sign_public(path: Path) -> Ed25519PublicKey:
    return _load_public(path, Ed25519PublicKey, "Ed25519")


@dataclass
class Keyring:
    """The private sealing keys the vault can open segments with, by key id.

    A list, not one key, so that `keys rotate` can keep old keys exactly as long as
    segments sealed to them exist.
    """

    seal_keys: dict[bytes, X25519PrivateKey]

    @classmethod
    def load(cls, directory: Path) -> Keyring:
        keys: dict[bytes, X25519PrivateKey] = {}
        candidates = sorted(directory.glob("seal*.key"))
        if not candidates:
            raise KeyFileError(f"{directory}: no seal*.key found (run `holdfast keys init`)")
        for p in candidates:
            k = load_seal_private(p)
            keys[key_id(k.public_key())] = k
        return cls(keys)

    def get(self, kid: bytes) -> X25519PrivateKey:
        try:
            return self.seal_keys[kid]
        except KeyError:
            raise KeyFileError(
                f"no private key with id {kid.hex()} in the keyring (sealed to a key this vault does not hold)"
            ) from None


class SealPublicFile:
    """`seal.pub` as recorders use it: re-read when the file changes (after `keys rotate`).

    Recorders call `.current()` at each segment start, so new segments are sealed to the new key
    without a restart. (Under systemd the recorders see seal.pub through a bind mount, which pins
    the old file; `keys rotate` restarts them there.)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._key: X25519PublicKey | None = None
        self.current()

    def current(self) -> X25519PublicKey:
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if self._key is None or (stamp is not None and stamp != self._stamp):
            self._key = load_seal_public(self.path)
            self._stamp = stamp
        return self._key
