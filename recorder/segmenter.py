"""One camera's fragments into sealed segments and gaps: the recorder's rules, with no I/O loop.

`Segmenter` receives what `vault.media.mp4.FragmentedMp4Reader` parses from ffmpeg's output and decides
everything that makes a recording: where a segment starts and is cut, what wall-clock time each
start gets, when a parameter change closes a segment, and which gaps are written with which
reason. It never reads a pipe, starts a process or sleeps; recorder/camera.py does that and tells
it when a connection starts and ends. The wall clock is passed in (`Clock`), so a test drives it
with real MP4 fragments and a clock of its own, and simulates a drifting camera in milliseconds.

Segmenting rule: a segment starts at a keyframe fragment and is cut at the first keyframe
fragment once it holds >= ``segment_seconds`` of media, so every segment is init (ftyp+moov) +
fragments: a standalone playable fragmented MP4.

Wall clock: at the first fragment of a connection the segmenter anchors wall-clock time
(arrival minus the fragment's duration: ffmpeg emits a fragment when the next keyframe arrives)
and advances by media time after that, so consecutive segments abut exactly; every connection
re-anchors, a camera whose media time drifts more than ``MAX_DRIFT_SECONDS`` from the wall clock
is re-anchored, and a start never moves before what is already recorded (no overlap).

Gaps: when a connection ends the segment closes with its ``end_reason``; a gap from the last
recorded instant to the next segment's start is written when recording resumes (or at shutdown),
with the reason the stream ended and why reconnects failed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from vault.media.mp4 import Box, Fragment, InitSegment
from vault.ops.events import DEBUG, WARNING, EventLog, event
from vault.store.fsutil import atomic_write_bytes
from vault.store.spool import SpoolSegment, write_gap
from vault.timeutil import iso, utcnow

log = EventLog("holdfast.recorder.camera")

#: Sample-entry fourccs of the codecs the recorder accepts (H.264, H.265).
SUPPORTED_CODECS = {"avc1": "h264", "avc3": "h264", "hev1": "hevc", "hvc1": "hevc"}
#: What other sample entries ffmpeg writes for a camera's stream are, for the log line.
OTHER_CODECS = {
    "mp4v": "MPEG-4 Part 2 or Motion JPEG",
    "jpeg": "Motion JPEG",
    "vp08": "VP8",
    "vp09": "VP9",
    "av01": "AV1",
}
#: Wall clock and media time may drift apart (camera clock); beyond this, re-anchor.
MAX_DRIFT_SECONDS = 2.0


class UnsupportedStream(Exception):
    """The camera sends something the recorder must not store as video (not H.264/H.265)."""


class Clock(Protocol):
    """Where the segmenter reads the wall clock: the system's in production, a test's in tests."""

    def now(self) -> datetime: ...


class SystemClock:
    """The system's wall clock, timezone-aware UTC."""

    def now(self) -> datetime:
        return utcnow()


class _Open:
    """The segment being written: its spool handle and what its trailer will say."""

    __slots__ = ("spool", "start", "init_signature", "duration", "fragments")

    def __init__(self, spool: SpoolSegment, start: datetime, init_signature: str) -> None:
        self.spool = spool
        self.start = start
        self.init_signature = init_signature
        self.duration = 0.0
        self.fragments = 0


class Segmenter:
    """Cuts one camera's fragments into sealed spool segments and writes its gaps."""

    def __init__(
        self,
        camera: str,
        site: str,
        segment_seconds: float,
        spool: Path,
        recipient: X25519PublicKey,
        state_path: Path,
        clock: Clock | None = None,
    ) -> None:
        self.camera = camera
        self.site = site
        self.spool = spool
        self.recipient = recipient
        self.clock: Clock = clock or SystemClock()
        #: Where ``covered_until`` survives a restart (a tiny JSON, no media).
        self.state_path = state_path
        self.seg: _Open | None = None
        #: (wall clock, media seconds) of this connection's first fragment.
        self.anchor: tuple[datetime, float] | None = None
        #: Everything before this instant is accounted for by a segment or a gap.
        self.covered_until: datetime | None = None
        #: A gap waiting for recording to resume: (start, reason).
        self.pending_gap: tuple[datetime, str] | None = None
        self.failed_attempts: list[str] = []
        #: The camera's audio codec once it proved to be one MP4 cannot carry (then encoded).
        self.audio_from: str | None = None
        self.segments_closed = 0
        #: What the open segment records, for the unit's STATUS line.
        self.describe = ""
        #: Cut at the first keyframe once this much is held: the target less a little slack, so a
        #: connection's first fragment (a frame or two short of a GOP) does not add a whole GOP.
        self._cut_at = segment_seconds - min(0.5, 0.05 * segment_seconds)

    # -- what the connection loop tells it ---------------------------------------------------

    def resume_after(self, last: datetime, reason: str) -> None:
        """A previous run recorded up to ``last``: what follows is a gap for ``reason``."""
        self.covered_until = last
        self.pending_gap = (last, reason)

    def connection_started(self) -> None:
        """A new ffmpeg session: its media time starts afresh, so the next fragment re-anchors."""
        self.anchor = None

    def connection_ended(self, cause: str) -> None:
        """The session ended for ``cause``: close the open segment; the silence after it is a gap."""
        if self.seg is not None:
            self.close(cause)
        if self.covered_until is not None and self.pending_gap is None and cause != "sigterm":
            self.pending_gap = (self.covered_until, cause)

    def attempt_failed(self, started: datetime, cause: str) -> None:
        """A connection recorded nothing; the pending gap's reason names the failed attempts."""
        self.failed_attempts.append(cause)
        if self.pending_gap is None and self.covered_until is None:
            # Never recorded since start-up: the outage is explained from start-up on.
            self.pending_gap = (started, cause)

    def attempt_recorded(self) -> None:
        self.failed_attempts = []

    def shutdown(self) -> None:
        """Close the open segment and write the gap still pending, up to now."""
        if self.seg is not None:
            self.close("sigterm")
        if self.pending_gap is not None:
            self._write_gap(self.clock.now(), suffix="; recorder stopped")

    def abandon(self) -> None:
        """Let go of the open segment the way a kill would (the next run recovers it)."""
        seg, self.seg = self.seg, None
        if seg is not None:
            seg.spool.detach()

    # -- boxes -------------------------------------------------------------------------------

    def on_item(self, item: InitSegment | Fragment | Box) -> bool:
        """Handle one item from the reader; True when a fragment was recorded."""
        if isinstance(item, InitSegment):
            self._check_codec(item)
            if self.seg is not None and self.seg.init_signature != item.init_signature:
                self.close("parameters changed")
            return False
        if isinstance(item, Fragment):
            return self._on_fragment(item)
        return False  # sidx, free, ...: not needed for playback of fragments

    def _check_codec(self, init: InitSegment) -> None:
        video = init.video
        if video is None:
            raise UnsupportedStream("unsupported stream: no video track")
        if video.codec not in SUPPORTED_CODECS:
            name = OTHER_CODECS.get(video.codec, "an unknown codec")
            raise UnsupportedStream(
                f"unsupported codec: the camera sends {name} ({video.codec!r}); only H.264 and H.265 "
                "are recorded: set the camera's stream to H.264 or H.265"
            )

    def _on_fragment(self, frag: Fragment) -> bool:
        arrival = self.clock.now()
        media = frag.decode_time_seconds
        if self.seg is None and not frag.is_keyframe:
            return False  # undecodable without its keyframe: a segment must start playable
        if media is None:
            media = (self.anchor[1] if self.anchor else 0.0) + (self.seg.duration if self.seg else 0.0)
        if self.anchor is None:
            self.anchor = (self._no_overlap(arrival - timedelta(seconds=frag.duration_seconds)), media)
        if self.seg is not None and frag.is_keyframe and self.seg.duration >= self._cut_at:
            self.close("segment length")
        if self.seg is None:
            start = self.anchor[0] + timedelta(seconds=media - self.anchor[1])
            observed = arrival - timedelta(seconds=frag.duration_seconds)
            if abs((observed - start).total_seconds()) > MAX_DRIFT_SECONDS:
                event(
                    log,
                    "camera.clock_drift",
                    WARNING,
                    camera=self.camera,
                    drift=round((observed - start).total_seconds(), 3),
                )
                start = self._no_overlap(observed)
                self.anchor = (start, media)
            self._open(frag, start)
        assert self.seg is not None
        self.seg.spool.write(frag.moof.data)  # two writes: joining them would copy the fragment
        self.seg.spool.write(frag.mdat.data)
        self.seg.duration += frag.duration_seconds
        self.seg.fragments += 1
        return True

    def _no_overlap(self, start: datetime) -> datetime:
        return max(start, self.covered_until) if self.covered_until is not None else start

    def _open(self, frag: Fragment, start: datetime) -> None:
        init = frag.init
        video = init.video
        assert video is not None
        if self.pending_gap is not None:
            self._write_gap(start)
        meta: dict[str, Any] = {
            "source": self.camera,
            "site": self.site,
            "kind": "video",
            "start": iso(start),
            "codec": SUPPORTED_CODECS.get(video.codec, video.codec),
            "sample_entry": video.codec,
            "width": video.width,
            "height": video.height,
            "init_signature": init.init_signature,
        }
        if init.audio is not None:
            meta["audio_codec"] = init.audio.codec
            if self.audio_from is not None:
                meta["audio_encoded_from"] = self.audio_from  # not the camera's own audio bits
        self.seg = _Open(SpoolSegment(self.spool, self.recipient, meta), start, init.init_signature)
        self.seg.spool.write(init.data)
        self.describe = f"{video.width}x{video.height} {meta['codec']}"
        event(
            log,
            "camera.segment_open",
            DEBUG,
            camera=self.camera,
            segment=self.seg.spool.segment_id,
            start=iso(start),
        )

    def close(self, reason: str) -> None:
        """Seal the open segment with ``reason`` as its end_reason and publish it in the spool."""
        seg, self.seg = self.seg, None
        assert seg is not None
        end = seg.start + timedelta(seconds=seg.duration)
        trailer = {
            "end": iso(end),
            "duration": round(seg.duration, 6),
            "end_reason": reason,
            "fragments": seg.fragments,
        }
        # Saved before the rename that publishes the segment: a kill between the two then leaves
        # a partial that the restart recovers, never a "recorder not running" gap over a segment.
        self._covered(end)
        seg.spool.close(trailer)
        self.segments_closed += 1
        event(
            log,
            "camera.segment",
            camera=self.camera,
            segment=seg.spool.segment_id,
            start=iso(seg.start),
            duration=round(seg.duration, 3),
            end_reason=reason,
            fragments=seg.fragments,
        )

    def _write_gap(self, end: datetime, suffix: str = "") -> None:
        assert self.pending_gap is not None
        start, first = self.pending_gap
        self.pending_gap = None
        reason = first
        failures = [c for c in self.failed_attempts if c]
        if failures:
            reason += f"; {len(failures)} reconnect attempt(s) failed: {failures[-1]}"
        reason += suffix
        if end > start:
            write_gap(self.spool, self.camera, start, end, reason)
            event(
                log,
                "camera.gap",
                camera=self.camera,
                start=iso(start),
                end=iso(end),
                seconds=round((end - start).total_seconds(), 3),
                reason=reason,
            )
        self._covered(end)

    def _covered(self, until: datetime) -> None:
        """Remember what is accounted for, across restarts."""
        self.covered_until = until if self.covered_until is None else max(self.covered_until, until)
        atomic_write_bytes(self.state_path, json.dumps({"covered_until": iso(self.covered_until)}).encode())
