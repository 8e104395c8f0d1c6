"""Naming public keys: the raw bytes and the 8-byte id every sealed header carries.

Kept apart from vault.sealed.keys (which reads and writes PEM files through cryptography's
serialization module, 1.7 MB per process) so the camera recorder can seal without loading it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey


def raw_public(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes_raw()


def key_id(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    """8 bytes naming a public key: enough to pick the right private key, stored in every header."""
    return sha256(raw_public(key))[:8]


def sha256(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()
