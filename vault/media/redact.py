"""Irreversible redaction for subject access requests: everyone but the subject is blurred.

The one place Holdfast decodes video (recording and evidence export never do). Plaintext only
ever flows through pipes: the sealed segment is decrypted chunk by chunk into ffmpeg's stdin,
ffmpeg writes raw BGR frames to stdout, OpenCV redacts each frame in memory, and a second
ffmpeg reads raw frames on stdin and encodes H.264 into the tmpfs scratch directory (MP4 with
`+faststart` needs a seekable output; tmpfs is the one filesystem plaintext may touch).

Two modes:
* `faces`: OpenCV's Haar frontal-face cascade (`cv2.data.haarcascades`) on every frame; each
  face box (grown by a margin) is obliterated, and boxes are kept for a few frames so a face the
  detector misses for a frame or two stays covered. Faces whose centre lies in the optional
  subject rectangle are kept. Haar misses profiles, small and occluded faces: that is why:
* `all`: the whole frame is obliterated except a DPO-drawn rectangle around the subject.

"Irreversible": the region is downsampled to coarse blocks (the detail is discarded, not
filtered, so no deconvolution brings it back), upsampled and smoothed. The export contains only
the redacted re-encode, never the original pixels of a redacted region.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from vault.errors import HoldfastError
from vault.index.schema import Segment
from vault.media import tools
from vault.ops.logsetup import event
from vault.vault import Vault

log = logging.getLogger("holdfast.redact")
CASCADE = "haarcascade_frontalface_default.xml"
#: A face box is kept this many frames after its last detection (detector flicker).
PERSIST_FRAMES = 5
#: Face boxes grow by this fraction on every side (hair, ears, chin).
MARGIN = 0.25
DETECT_WIDTH = 640
MODES = ("faces", "all")
#: Default largest share of the frame left unblurred around the subject.
DEFAULT_MAX_SHARE = 0.25


class RedactError(HoldfastError):
    """Redaction could not be done as asked (bad rectangle, decoder or encoder failure)."""


@dataclass(frozen=True)
class Rect:
    """A rectangle as fractions of the frame (0..1), so it survives any resolution."""

    x: float
    y: float
    w: float
    h: float

    def __post_init__(self) -> None:
        if not (0 <= self.x < 1 and 0 <= self.y < 1 and 0 < self.w <= 1 and 0 < self.h <= 1):
            raise RedactError(f"subject rectangle {self} must lie in the frame (fractions 0..1)")
        if self.x + self.w > 1.0001 or self.y + self.h > 1.0001:
            raise RedactError(f"subject rectangle {self} extends past the frame")

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        x0, y0 = int(self.x * width), int(self.y * height)
        x1, y1 = min(width, round((self.x + self.w) * width)), min(height, round((self.y + self.h) * height))
        return x0, y0, x1, y1


def obliterate(region: np.ndarray, blocks: int = 12) -> np.ndarray:
    """Destroy detail: about `blocks` cells across the shorter side, then smooth the block edges."""
    h, w = region.shape[:2]
    if h < 2 or w < 2:
        return np.zeros_like(region)
    cell = max(2, min(h, w) // blocks)
    small = cv2.resize(region, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    k = max(3, (cell // 2) * 2 + 1)
    return cv2.GaussianBlur(big, (k, k), 0)


class FaceDetector:
    """Haar frontal-face detection on a downscaled grey frame; boxes in full-frame pixels."""

    def __init__(self) -> None:
        path = str(Path(cv2.data.haarcascades) / CASCADE)
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RedactError(f"OpenCV could not load the face cascade {path}")
        self.calls = 0

    def __call__(self, frame: np.ndarray) -> list[tuple[int, int, int, int]]:
        self.calls += 1
        h, w = frame.shape[:2]
        scale = min(1.0, DETECT_WIDTH / w)
        small = cv2.resize(frame, (int(w * scale), int(h * scale))) if scale < 1 else frame
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        found = self.cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(16, 16))
        return [tuple(int(v / scale) for v in box) for box in found]  # type: ignore[misc]


@dataclass
class Redactor:
    """Redacts frames one at a time; counts what it did for the manifest."""

    mode: str
    subject: Rect | None = None
    detector: Callable[[np.ndarray], list[tuple[int, int, int, int]]] | None = None
    #: Largest share of the frame the subject's rectangle may cover (`[api] subject_rect_max_share`):
    #: whatever lies in it is not blurred (blur=all) or its faces are kept (blur=faces), so a
    #: rectangle over the whole frame would hand over everyone in it.
    max_share: float = DEFAULT_MAX_SHARE
    frames: int = 0
    faces: int = 0
    frames_with_faces: int = 0
    _recent: deque[list[tuple[int, int, int, int]]] = field(
        default_factory=lambda: deque(maxlen=PERSIST_FRAMES)
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RedactError(f"blur mode {self.mode!r}: one of {', '.join(MODES)}")
        if self.mode == "all" and self.subject is None:
            raise RedactError("blur=all needs the subject's rectangle (everything else is blurred)")
        if self.subject is not None:
            share = min(self.subject.w, 1 - self.subject.x) * min(self.subject.h, 1 - self.subject.y)
            if share > self.max_share + 1e-9:
                raise RedactError(
                    f"subject rectangle covers {share:.0%} of the frame; at most {self.max_share:.0%} "
                    "may stay unblurred ([api] subject_rect_max_share): draw it around the subject only"
                )
        if self.mode == "faces" and self.detector is None:
            self.detector = FaceDetector()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        self.frames += 1
        h, w = frame.shape[:2]
        if self.mode == "all":
            assert self.subject is not None
            x0, y0, x1, y1 = self.subject.pixels(w, h)
            out = obliterate(frame, blocks=24)
            out[y0:y1, x0:x1] = frame[y0:y1, x0:x1]
            return out
        assert self.detector is not None
        boxes = self.detector(frame)
        if self.subject is not None:
            sx0, sy0, sx1, sy1 = self.subject.pixels(w, h)
            boxes = [b for b in boxes if not (sx0 <= b[0] + b[2] / 2 < sx1 and sy0 <= b[1] + b[3] / 2 < sy1)]
        self.faces += len(boxes)
        self.frames_with_faces += bool(boxes)
        self._recent.append(boxes)
        out = frame
        for bx, by, bw, bh in {b for seen in self._recent for b in seen}:
            mx, my = int(bw * MARGIN), int(bh * MARGIN)
            x0, y0 = max(0, bx - mx), max(0, by - my)
            x1, y1 = min(w, bx + bw + mx), min(h, by + bh + my)
            if out is frame:
                out = frame.copy()
            out[y0:y1, x0:x1] = obliterate(frame[y0:y1, x0:x1])
        return out

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mode": self.mode, "frames": self.frames, "max_unblurred_share": self.max_share}
        if self.subject is not None:
            d["subject_rect"] = {
                "x": self.subject.x,
                "y": self.subject.y,
                "w": self.subject.w,
                "h": self.subject.h,
            }
        if self.mode == "faces":
            d.update(
                detector=f"OpenCV {cv2.__version__} {CASCADE}",
                faces=self.faces,
                frames_with_faces=self.frames_with_faces,
                persist_frames=PERSIST_FRAMES,
            )
        return d


# -- pipes -------------------------------------------------------------------------------------


class _Drain(threading.Thread):
    """Reads a pipe to the end (ffmpeg's stderr) so the child never blocks on it."""

    def __init__(self, pipe: IO[bytes], keep: int = 2000) -> None:
        super().__init__(daemon=True)
        self.pipe, self.keep, self.data = pipe, keep, b""

    def run(self) -> None:
        self.data = self.pipe.read()[-self.keep :]


class _Feed(threading.Thread):
    """Decrypts a segment into a child's stdin, hashing the plaintext on the way."""

    def __init__(self, v: Vault, seg: Segment, pipe: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.v, self.seg, self.pipe = v, seg, pipe
        self.sha = hashlib.sha256()
        self.complete = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for piece in self.v.read_plaintext(self.seg):
                self.sha.update(piece)
                self.pipe.write(piece)
            self.complete = True
        except (BrokenPipeError, OSError, ValueError):
            pass  # the child stopped reading (ffprobe has what it needs)
        except BaseException as e:  # a seal error: reported by the caller
            self.error = e
        finally:
            with contextlib.suppress(OSError, ValueError):
                self.pipe.close()


def probe(v: Vault, seg: Segment, fifo: Path) -> tuple[int, int, str]:
    """Width, height and frame rate of a segment's video, read by ffprobe from a FIFO in tmpfs."""

    try:
        return tools.video_geometry(tools.probe_stream(v.read_plaintext(seg), fifo))
    except (tools.MediaError, KeyError, ValueError, TypeError) as e:
        raise RedactError(f"segment {seg.id}: no video stream ffprobe can read ({e})") from None


def redact_video(v: Vault, segments: list[Segment], redactor: Redactor, out: Path) -> list[dict[str, Any]]:
    """Decode every segment on a pipe, redact each frame, encode one H.264 MP4 at `out` (tmpfs).

    Returns per segment: id and the SHA-256 of its original plaintext (what the export was made from).
    """
    if not segments:
        raise RedactError("nothing to redact: no video segments")
    width, height, rate = probe(v, segments[0], out.with_name(out.name + ".probe"))
    frame_bytes = width * height * 3
    enc_cmd = tools.encode_h264_command(width, height, rate, out)
    enc = subprocess.Popen(enc_cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    enc_err = _Drain(enc.stderr)  # type: ignore[arg-type]
    enc_err.start()
    listed: list[dict[str, Any]] = []
    try:
        for seg in segments:
            dec_cmd = tools.decode_raw_command(width, height, rate)
            dec = subprocess.Popen(
                dec_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            feed = _Feed(v, seg, dec.stdin)  # type: ignore[arg-type]
            dec_err = _Drain(dec.stderr)  # type: ignore[arg-type]
            feed.start()
            dec_err.start()
            frames = 0
            try:
                while True:
                    buf = dec.stdout.read(frame_bytes)  # type: ignore[union-attr]
                    if len(buf) < frame_bytes:
                        break
                    frame = np.frombuffer(buf, np.uint8).reshape(height, width, 3)
                    enc.stdin.write(np.ascontiguousarray(redactor(frame)).tobytes())  # type: ignore[union-attr]
                    frames += 1
            finally:
                dec.stdout.close()  # type: ignore[union-attr]
                dec.wait(60)
                feed.join(60)
                dec_err.join(10)
            if feed.error is not None:
                raise feed.error
            if dec.returncode != 0 or not feed.complete:
                raise RedactError(
                    f"ffmpeg could not decode segment {seg.id}: {dec_err.data.decode(errors='replace')[-300:]}"
                )
            listed.append({"id": seg.id, "sha256": feed.sha.hexdigest(), "frames": frames})
        enc.stdin.close()  # type: ignore[union-attr]
        enc.wait(600)
        enc_err.join(10)
        if enc.returncode != 0:
            raise RedactError(
                f"ffmpeg could not encode the redacted video: {enc_err.data.decode(errors='replace')}"
            )
    except BaseException:
        enc.kill()
        enc.wait()
        out.unlink(missing_ok=True)
        raise
    event(log, "redact.video", segments=len(segments), frames=redactor.frames, mode=redactor.mode)
    return listed
