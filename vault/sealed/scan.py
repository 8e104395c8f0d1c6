"""Find plaintext media in bytes by its structure: what `holdfast check` runs over spool and store.

Sealed segments are AES-GCM ciphertext behind a `HOLDFAST` header; plaintext audio or video on
disk breaks invariant 1. Bare 3- and 4-byte magic numbers occur by chance in megabytes of
ciphertext (`ID3` about once per 16 MB), so every signature is anchored in structure random
bytes do not have: an MP4 box whose size leads to another box or to the end of the data, an
Ogg page header with version 0, `RIFF....WAVE`, an ID3v2 header, a FLAC STREAMINFO block, an
EBML header naming webm/matroska. Each is at least ~40 bits, so a gigabyte of ciphertext gives
no false alarm.
"""

from __future__ import annotations

import re
from typing import BinaryIO

#: How much of a file the scan reads: containers put their structure at the start, and a bound
#: keeps a stray multi-gigabyte file from filling memory.
SCAN_LIMIT = 64 * 1024 * 1024

MP4_BOX_TYPES = (b"ftyp", b"styp", b"moov", b"moof", b"mdat", b"sidx")

_PATTERNS: dict[str, re.Pattern[bytes]] = {
    "ogg": re.compile(rb"OggS\x00[\x00-\x07]", re.S),
    "wav": re.compile(rb"RIFF.{4}WAVE", re.S),
    "id3": re.compile(rb"ID3[\x02\x03\x04]\x00", re.S),
    "flac": re.compile(rb"fLaC[\x00\x80]\x00\x00\x22", re.S),
    "ebml": re.compile(rb"\x1aE\xdf\xa3.{0,40}?(webm|matroska)", re.S),
}


def _box_ok(data: bytes, pos: int) -> bool:
    if pos + 8 > len(data):
        return False
    size = int.from_bytes(data[pos : pos + 4], "big")
    kind = data[pos + 4 : pos + 8]
    return size >= 8 and pos + size <= len(data) and all(0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 for c in kind)


def _mp4_hit(data: bytes) -> int | None:
    for kind in MP4_BOX_TYPES:
        i = data.find(kind, 4)
        while i >= 0:
            pos = i - 4
            size = int.from_bytes(data[pos:i], "big")
            if size >= 8 and pos + size <= len(data):
                nxt = pos + size
                if nxt == len(data) or _box_ok(data, nxt):
                    return pos
            i = data.find(kind, i + 1)
    return None


def find_plaintext(data: bytes) -> tuple[int, str] | None:
    """(offset, format) of the first plaintext media structure in `data`, or None."""
    pos = _mp4_hit(data)
    if pos is not None:
        return pos, "mp4"
    for name, pat in _PATTERNS.items():
        m = pat.search(data)
        if m:
            return m.start(), name
    return None


def scan_file(f: BinaryIO) -> tuple[int, str] | None:
    """find_plaintext over the first SCAN_LIMIT bytes of an open file: an MP4's leading boxes
    (ftyp, then moov or moof) chain within that prefix, every other format starts with its magic."""
    return find_plaintext(f.read(SCAN_LIMIT))
