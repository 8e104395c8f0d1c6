"""The plaintext scanner every invariant-1 test relies on: it catches real media, not noise."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.scan import find_plaintext

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


def test_sixty_four_megabytes_of_random_bytes_are_clean() -> None:
    assert find_plaintext(os.urandom(64 << 20)) is None
