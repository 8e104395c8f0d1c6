"""The plaintext scanner `holdfast check` and every invariant-1 test rely on: it catches real
media, not noise; the tests' independent leading-signature check knows each whole file too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tests.support.scan import starts_like_media
from vault.sealed.scan import find_plaintext
from vault.store.spool import SpoolSegment, ensure_spool

LAVFI_AUDIO = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]


@pytest.mark.parametrize(
    "name,args,fmt",
    [
        (
            "a.mp4",
            [
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=160x120:rate=5",
                "-t",
                "1",
                "-c:v",
                "libx264",
                "-movflags",
                "+frag_keyframe+empty_moov+default_base_moof",
            ],
            "mp4",
        ),
        ("a.ogg", [*LAVFI_AUDIO, "-c:a", "libopus"], "ogg"),
        ("a.wav", [*LAVFI_AUDIO], "wav"),
        ("a.flac", [*LAVFI_AUDIO], "flac"),
        ("a.mp3", [*LAVFI_AUDIO, "-id3v2_version", "3"], "id3"),
        ("a.webm", [*LAVFI_AUDIO, "-c:a", "libopus"], "ebml"),
    ],
)
def test_real_media_is_found(tmp_path: Path, name: str, args: list[str], fmt: str) -> None:
    p = tmp_path / name
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *args, str(p)], check=True, timeout=60)
    data = p.read_bytes()
    # also when embedded mid-file, as a leaked fragment inside other bytes would be
    for blob in (data, os.urandom(1000) + data[: max(len(data) // 2, 64)] + os.urandom(1000)):
        found = find_plaintext(blob)
        assert found is not None and found[1] == fmt, (name, found)
    assert starts_like_media(data[:16]) is not None, name


def test_sixty_four_megabytes_of_random_bytes_are_clean() -> None:
    assert find_plaintext(os.urandom(64 << 20)) is None


def test_a_sealed_segment_does_not_start_like_media(tmp_path: Path) -> None:
    ensure_spool(tmp_path)
    seg = SpoolSegment(tmp_path, X25519PrivateKey.generate().public_key(), {"source": "cam-1"})
    seg.write(b"\x00\x00\x00\x18ftypisom" + os.urandom(4096))
    path, _ = seg.close({"end_reason": "test"})
    assert starts_like_media(path.read_bytes()[:16]) is None
