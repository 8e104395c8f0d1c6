"""The ffmpeg child of a camera recorder: its command line, the process, and why it exited.

ffmpeg connects to the camera over RTSP/TCP and stream-copies (never decodes) video into
fragmented MP4 on its stdout; recorder/camera.py reads that pipe and recorder/segmenter.py cuts
it into segments. What lives here is everything about the process itself: the arguments, a
spawn that stays inside the recorder's memory budget (``os.posix_spawnp``, not ``subprocess``:
see recorder/camera.py), and the translation of its exit status and last stderr lines into a
cause an operator can act on (wrong credentials, unreachable, unsupported codec...), with any
password in a URL redacted.
"""

from __future__ import annotations

import contextlib
import os
import re

READ_SIZE = 1 << 16  # a pipe holds 64 KiB: a larger read only allocates more
#: ffmpeg cuts a fragment at every keyframe and at least this often (``-frag_duration``), which
#: bounds what it and this process buffer to half a second of video, whatever the GOP length
#: (a camera with a 10 s GOP at 8 Mbit/s would otherwise hand over 10 MB fragments). 0.2 s
#: saved another 0.8 MB of heap per recorder but cost 0.1x of bare ffmpeg's CPU (bench/recorder.py).
FRAGMENT_SECONDS = 0.5


def redact_url(url: str) -> str:
    """The URL with any password replaced: logs and STATUS must never carry credentials."""
    return re.sub(r"(rtsps?://[^:/@\s]*):[^@/\s]*@", r"\1:***@", url)


#: ffmpeg's words when MP4 has no sample entry for a stream's codec: G.711 (pcm_mulaw, pcm_alaw)
#: and G.726, the audio many IP cameras send. With plain ``-c copy`` such a camera would never be
#: recorded at all.
NOT_IN_MP4 = re.compile(r"Could not find tag for codec (\S+) in stream #\d+")
#: What such audio is encoded to (the only encoding the recorder ever does; video is always
#: copied): AAC plays wherever the MP4 does.
AUDIO_ENCODER = ("-c:v", "copy", "-c:a", "aac", "-b:a", "64k")


# A plain argument list, not ffmpeg-python (which vault.media.tools uses for every other ffmpeg run):
# importing `ffmpeg` here adds 5.3 MiB RSS to each recorder (measured over `import recorder.camera`:
# 23.8 MiB -> 29.1 MiB) to build one fixed list (budget: tests/test_camera_budget.py).
def ffmpeg_command(
    url: str, timeout_seconds: float, ffmpeg: str = "ffmpeg", *, encode_audio: bool = False
) -> list[str]:
    """Stream copy (never decode) to fragmented MP4 on stdout; ``-timeout`` is the RTSP socket
    I/O timeout in microseconds (ffmpeg 5.1's rtsp demuxer; ``-stimeout`` is gone).
    ``encode_audio``: audio MP4 cannot carry is encoded to AAC, video still copied."""
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-rtsp_transport",
        "tcp",
        "-timeout",
        str(int(timeout_seconds * 1_000_000)),
        "-i",
        url,
        "-map",
        "0:v",
        "-map",
        "0:a?",
        *(AUDIO_ENCODER if encode_audio else ("-c", "copy")),
        "-f",
        "mp4",
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof",
        "-frag_duration",
        str(int(FRAGMENT_SECONDS * 1_000_000)),
        "pipe:1",
    ]


_CAUSES: tuple[tuple[str, str], ...] = (
    (r"\b401\b|Unauthorized", "wrong credentials (RTSP 401 Unauthorized)"),
    (r"\b403\b|Forbidden", "access forbidden (RTSP 403 Forbidden)"),
    (r"\b404\b|Not Found", "no such stream on the camera (RTSP 404 Not Found)"),
    (r"Connection refused", "camera unreachable (connection refused)"),
    (r"[Tt]imed out|timeout", "camera unreachable (timed out)"),
    (r"No route to host|Network is unreachable|Host is unreachable", "camera unreachable (no route)"),
    (
        r"Name or service not known|Temporary failure in name resolution|not resolve",
        "camera unreachable (unknown host)",
    ),
    (r"Invalid data found|Protocol not found", "not an RTSP stream (invalid data)"),
)


def classify_exit(returncode: int, stderr_lines: list[str]) -> str:
    """Turn ffmpeg's exit status and last stderr lines into a cause an operator can act on."""
    text = "\n".join(stderr_lines)
    for pattern, cause in _CAUSES:
        if re.search(pattern, text):
            return cause
    m = NOT_IN_MP4.search(text)
    if m:
        return f"the camera's {m[1]} stream cannot be stored in MP4"
    if returncode == 0:
        return "stream ended"
    last = redact_url(stderr_lines[-1].strip()) if stderr_lines else "no error message"
    return f"ffmpeg exited {returncode}: {last}"


def is_unreachable(cause: str) -> bool:
    return cause.startswith("camera unreachable") or cause == "stream ended"


class FfmpegProcess:
    """One ffmpeg child: stdout and stderr on pipes, stdin on /dev/null, its own session.

    ``os.posix_spawnp`` rather than ``subprocess`` (0.4 MB per recorder; see the module doc).
    """

    def __init__(self, cmd: list[str]) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid = os.posix_spawnp(
                cmd[0],
                cmd,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                setsid=True,  # a terminal's Ctrl-C must not signal ffmpeg twice
            )
        except OSError:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        self.stdout = out_r
        self.stderr: int | None = err_r
        self.returncode: int | None = None
        self._err_tail = b""

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def signal(self, sig: int) -> None:
        if self.poll() is None:  # never signal a reaped pid: it may be someone else's now
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def read_stderr(self) -> list[str]:
        """Complete lines now readable on stderr (all that is left, at end of file)."""
        if self.stderr is None:
            return []
        data = os.read(self.stderr, READ_SIZE)
        if not data:
            os.close(self.stderr)
            self.stderr = None
            data, self._err_tail = self._err_tail + b"\n", b""
        else:
            data, self._err_tail = self._err_tail + data, b""
        *lines, self._err_tail = data.split(b"\n")
        return [line.decode(errors="replace").rstrip() for line in lines]

    def close_stdout(self) -> None:
        if self.stdout >= 0:
            os.close(self.stdout)
            self.stdout = -1
