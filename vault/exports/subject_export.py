"""The answer to a subject access request: redacted video, call audio as recorded, signed like evidence.

Video: one re-encoded MP4 per camera with everyone but the subject blurred (vault.media.redact).
Calls: the subject is a party to the call, so the recording is handed over as it was sealed
(the other party is the company's own agent acting for it; the seeds keep "the name of the
employee who answered" with every call). Each call part is its own file, bytes exactly as
recorded. The zip carries `manifest.json` (format `holdfast-subject-access/1`) signed with the
vault's Ed25519 key, so `holdfast verify-export` checks it with the public key alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vault.exports.evidence import ExportPart, PartRenderer, sha256_file
from vault.index.schema import Segment
from vault.media.redact import Redactor, redact_video
from vault.timeutil import iso
from vault.vault import Vault

FORMAT = "holdfast-subject-access/1"
NOTE = (
    "Video is re-encoded with everyone but the subject irreversibly blurred; segment sha256 "
    "values are of the original recordings it was made from. Call audio is exported as "
    "recorded: the subject is a party to the call."
)
_EXT = {"audio/ogg": "ogg", "audio/wav": "wav", "audio/mpeg": "mp3", "audio/flac": "flac"}


def _seg_entry(seg: Segment) -> dict[str, Any]:
    return {"id": seg.id, "start": iso(seg.start), "end": iso(seg.end), "duration": seg.duration}


def _audio_ext(seg: Segment) -> str:
    mime = str((seg.meta or {}).get("mime", "")).split(";")[0].strip()
    return _EXT.get(mime, "bin")


def manifest_header(request: dict[str, Any], exporter: dict[str, Any]) -> dict[str, Any]:
    """The manifest's own fields; vault.exports.evidence.build_signed adds the range, sources and files."""
    return {"format": FORMAT, "subject_request": request, "exporter": exporter, "note": NOTE}


def part_renderer(v: Vault, redactor_for: Callable[[], Redactor]) -> PartRenderer:
    """How one source of the answer is written (for vault.exports.evidence.build_signed): a camera as one
    redacted MP4, a call line as its recordings. `redactor_for()` makes a fresh Redactor per
    camera (detector state is per video)."""

    def source(work: Path, part: ExportPart, files: dict[str, str]) -> dict[str, Any]:
        entry: dict[str, Any] = {"source": part.source, "kind": part.kind, "gaps": part.gaps}
        if part.kind == "camera":
            videos = [s for s in part.segments if s.kind == "video"]
            if videos:
                name = f"{part.source}-redacted.mp4"
                red: Redactor = redactor_for()
                done = redact_video(v, videos, red, work / name)
                files[name] = sha256_file(work / name)
                entry["file"] = name
                entry["redaction"] = red.summary()
                entry["segments"] = [{**_seg_entry(s), **d} for s, d in zip(videos, done, strict=True)]
            else:
                entry["file"], entry["segments"] = None, []
            return entry
        entry["files"], entry["segments"] = [], []
        for seg in part.segments:
            name = f"{part.source}-{seg.id}.{_audio_ext(seg)}"
            h = hashlib.sha256()
            with open(work / name, "wb") as f:
                for piece in v.read_plaintext(seg):
                    h.update(piece)
                    f.write(piece)
            files[name] = h.hexdigest()
            m = seg.meta or {}
            call = {k: m.get(k) for k in ("call_id", "agent", "direction", "remote", "remote_hash", "part")}
            entry["files"].append(name)
            entry["segments"].append(
                {**_seg_entry(seg), "sha256": h.hexdigest(), "file": name, "call": call, "redaction": "none"}
            )
        return entry

    return source
