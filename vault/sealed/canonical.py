"""Canonical JSON: the one byte form of a value, wherever bytes are hashed, signed or sealed.

Log entries (vault.ledger.entries), checkpoints, sealed headers' metadata and trailers (vault.sealed.seal) and
policy versions (vault.retention.purge) are all hashed or authenticated as these bytes, so they must be
reproducible: sorted keys, no whitespace, UTF-8, and no NaN or infinity (which JSON lacks).
Imports only json: the camera recorder seals with it under a tight import budget
(tests/test_camera_budget.py), so the log's base errors live here too rather than in vault.ledger.entries.
"""

from __future__ import annotations

import json
from typing import Any


class TlogError(Exception):
    """Base class for tamper-evident log errors."""


class EntryFormatError(TlogError, ValueError):
    """An entry is not canonical JSON with integer ``seq`` and hex ``prev``."""


def canonical_json(obj: Any) -> bytes:
    """One byte string per value (sorted keys, no whitespace, UTF-8), so hashes are reproducible."""
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EntryFormatError(f"value cannot be encoded as canonical JSON: {exc}") from exc
    return text.encode("utf-8")
