"""Camera recorder benchmark: Holdfast vs bare ffmpeg stream copy, N cameras, same server, same run.

    PYTHONPATH=. /work/main/.venv/bin/python bench/recorder.py --cameras 1 8 32 --duration 60

For each N, one GStreamer RTSP server loops a pre-encoded 1080p25 H.264 file at 4 Mbit/s (no
per-camera encoding; the server's CPU is not counted). Three recorders of N cameras each run at
the same time against it:

- Holdfast, one process per camera (`holdfast record camera CAM`, the holdfast-recorder@ unit),
  each with its ffmpeg child;
- Holdfast, one process for the site (`holdfast record camera --site SITE`, the
  holdfast-site-recorder@ unit): one Python process, a thread and an ffmpeg child per camera;
- bare ffmpeg writing 10 s segment files the way Frigate does (`-c copy -f segment
  -segment_time 10 -reset_timestamps 1`), one process per camera.

Every second the benchmark reads /proc: CPU seconds (utime+stime, plus reaped children), RSS, and
from smaps_rollup PSS and USS (Private_Clean + Private_Dirty). A Holdfast camera counts its share
of the recorder process(es) plus its ffmpeg child. Ratios compare like with like: whole camera
against whole camera, and Holdfast's ffmpeg children against the bare ffmpeg processes; the
Python recorder's own share has no bare counterpart and is shown without a ratio.

The recorders run from a byte-compiled copy of the packages in the temporary work directory
(as an installed appliance runs from compiled modules), with PYTHONDONTWRITEBYTECODE set: the
benchmark writes nothing into the tree it runs from.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.dont_write_bytecode = True  # nothing written into the tree this runs from
#: The packages the recorders import, copied and compiled into the work directory.
PACKAGES = ("config", "vault", "recorder", "cli", "api", "appliance")

from tests.support.media import make_h264_annexb  # noqa: E402
from tests.support.rtsp import RtspServer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def _stat(pid: int) -> tuple[float, float] | None:
    """(own CPU s, reaped children's CPU s) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    f = raw[raw.rindex(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / TICK, (int(f[13]) + int(f[14])) / TICK


def _mem(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS, USS) in kB from smaps_rollup (0s if the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0, 0, 0
    kv = {m[0]: int(m[1]) for m in re.findall(r"^(\w+):\s+(\d+) kB", text, flags=re.M)}
    return kv.get("Rss", 0), kv.get("Pss", 0), kv.get("Private_Clean", 0) + kv.get("Private_Dirty", 0)


def _children(pid: int) -> list[int]:
    """Children of every thread of `pid` (a recorder's ffmpeg is spawned by its camera thread)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


@dataclass
class Tree:
    """One camera's processes: a root (recorder or ffmpeg) and its live children."""

    proc: subprocess.Popen[bytes]
    #: The root is a Python recorder (its ffmpeg are children); False: the root is ffmpeg itself.
    python_root: bool = True
    cpu: float = 0.0
    cpu_at_warm: float | None = None  # CPU when the measured window starts
    own_cpu: float = 0.0  # the Python recorder alone (no ffmpeg); 0 for a bare ffmpeg
    own_cpu_at_warm: float | None = None
    peak: list[int] = field(default_factory=lambda: [0, 0, 0])  # RSS, PSS, USS kB (peak of sum)
    own_uss: int = 0  # peak USS kB of the Python recorder alone; 0 for a bare ffmpeg
    startup_peak: list[int] = field(default_factory=lambda: [0, 0, 0])  # before the window

    def sample(self) -> None:
        root = _stat(self.proc.pid)
        if root is None:
            return
        cpu = root[0] + root[1]
        mem = list(_mem(self.proc.pid))
        if self.python_root:
            self.own_cpu = max(self.own_cpu, root[0])
            self.own_uss = max(self.own_uss, mem[2])
        for child in _children(self.proc.pid):
            st = _stat(child)
            if st is not None:
                cpu += st[0] + st[1]
                for i, v in enumerate(_mem(child)):
                    mem[i] += v
        self.cpu = max(self.cpu, cpu)
        self.peak = [max(a, b) for a, b in zip(self.peak, mem, strict=True)]


def _config(site: Path, url: str, n: int, code: Path) -> Path:
    """`holdfast init` config with N cameras at site demo (cam-000...) and N at site shared
    (shared-000...), all on the benchmark's server."""
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(
        [sys.executable, "-m", "cli.main", "init", str(site)],
        check=True,
        capture_output=True,
        env=env,
        cwd=code,
    )
    path = site / "holdfast.toml"
    text = re.sub(r"\[\[cameras\]\]\n(?:[^\[\n][^\n]*\n|\n)*", "", path.read_text())
    cams = "".join(
        f'[[cameras]]\nid = "{prefix}-{i:03d}"\nsite = "{site_id}"\nurl = "{url}"\nretention = "office-camera"\n\n'
        for prefix, site_id in (("cam", "demo"), ("shared", "shared"))
        for i in range(n)
    )
    path.write_text('[[sites]]\nid = "shared"\ncountry = "FI"\n\n' + cams + text)
    return path


def compiled_copy(work: Path) -> Path:
    """The packages copied into `work/code` and byte-compiled there (not in the source tree)."""
    code = work / "code"
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, code / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        compileall.compile_dir(str(code / pkg), quiet=1)
    return code


def run(n: int, duration: float, stream: Path, work: Path, code: Path) -> dict[str, float]:
    server = RtspServer(0, ["/cam"], file=str(stream)).start()
    url = server.url("/cam")
    site = work / f"site-{n}"
    cfg = _config(site, url, n, code)
    bare_dir = work / f"bare-{n}"
    bare_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1", "HOLDFAST_CONFIG": str(cfg)}
    logs = open(work / f"log-{n}.txt", "wb")  # noqa: SIM115 - closed below
    holdfast: list[Tree] = []
    bare: list[Tree] = []
    cmd = [sys.executable, "-m", "cli.main", "record", "camera", "--site", "shared"]
    shared = Tree(subprocess.Popen(cmd, env=env, stdout=logs, stderr=logs, cwd=code))
    try:
        for i in range(n):
            cmd = [sys.executable, "-m", "cli.main", "record", "camera", f"cam-{i:03d}"]
            holdfast.append(Tree(subprocess.Popen(cmd, env=env, stdout=logs, stderr=logs, cwd=code)))
            ff = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp"]
            ff += ["-i", url, "-c", "copy", "-f", "segment", "-segment_time", "10", "-reset_timestamps", "1"]
            ff.append(str(bare_dir / f"cam-{i:03d}-%05d.mp4"))
            ffp = subprocess.Popen(ff, stdin=subprocess.DEVNULL, stdout=logs, stderr=logs)
            bare.append(Tree(ffp, python_root=False))
        # Start-up (a Python CLI, an RTSP handshake and ffmpeg's probing per camera) is paid once
        # per daemon start and is not what a camera costs all day: measure it, then wait until
        # every recorder is writing before the measured window starts.
        t_start = time.monotonic()
        spool = site / "spool"
        while time.monotonic() - t_start < 180:
            for t in [*holdfast, shared, *bare]:
                t.sample()
            live = {p.name.split(".")[0] for p in (spool / ".partial").glob("*.seg.part")}
            started = sum(1 for x in live if x.startswith("cam-"))
            shared_started = sum(1 for x in live if x.startswith("shared-"))
            bare_started = len({p.name[:7] for p in bare_dir.glob("*.mp4")})
            if started == n and shared_started == n and bare_started == n:
                break
            time.sleep(0.5)
        startup = time.monotonic() - t_start
        for t in [*holdfast, shared, *bare]:
            t.sample()
            t.cpu_at_warm = t.cpu
            t.own_cpu_at_warm = t.own_cpu
            # Memory, like CPU, is measured in the window: the CLI's validation before it execs
            # the lean daemon (same PID) is a start-up transient, reported apart.
            t.startup_peak, t.peak, t.own_uss = t.peak, [0, 0, 0], 0
        segs_before = len(list(spool.glob("*.seg")))
        files_before = len(list(bare_dir.glob("*.mp4")))
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration:
            for t in [*holdfast, shared, *bare]:
                t.sample()
            time.sleep(1.0)
        for t in [*holdfast, shared, *bare]:
            t.sample()
        segs = len(list(spool.glob("*.seg"))) - segs_before
        files = len(list(bare_dir.glob("*.mp4"))) - files_before
    finally:
        for t in [*holdfast, shared]:
            t.proc.send_signal(signal.SIGTERM)
        for t in bare:
            t.proc.send_signal(signal.SIGINT)
        for t in [*holdfast, shared, *bare]:
            try:
                t.proc.wait(15)
            except subprocess.TimeoutExpired:
                t.proc.kill()
        logs.close()
        server.stop()

    def per_cam(trees: list[Tree], n: int = n) -> dict[str, float]:
        window = [t.cpu - (t.cpu_at_warm or 0.0) for t in trees]
        own = sum(t.own_cpu - (t.own_cpu_at_warm or 0.0) for t in trees) / n
        return {
            "startup_cpu_s": sum(t.cpu_at_warm or 0.0 for t in trees) / n,
            "cpu_s": sum(window) / n,
            "ffmpeg_cpu_s": sum(window) / n - own,
            "own_cpu_s": own,
            "pct_core": sum(window) / n / duration * 100,
            "rss_mb": sum(t.peak[0] for t in trees) / n / 1024,
            "pss_mb": sum(t.peak[1] for t in trees) / n / 1024,
            "uss_mb": sum(t.peak[2] for t in trees) / n / 1024,
            "own_uss_mb": sum(t.own_uss for t in trees) / n / 1024,
            "startup_pss_mb": sum(t.startup_peak[1] for t in trees) / n / 1024,
        }

    h, st, b = per_cam(holdfast), per_cam([shared]), per_cam(bare)
    print(
        f"\n== {n} camera(s): {duration:.0f} s window after all were recording ({startup:.1f} s to get there); "
        f"1080p25 H.264 4 Mbit/s; closed in window: holdfast segments={segs} (both layouts), bare files={files}"
    )
    head = ("per camera", "unit/camera", "site process", "bare ffmpeg", "ratio", "ratio")
    print(f"{head[0]:24} {head[1]:>12} {head[2]:>12} {head[3]:>12} {head[4]:>6} {head[5]:>6}")
    print(f"{'':24} {'(A)':>12} {'(B)':>12} {'(C)':>12} {'A/C':>6} {'B/C':>6}")
    labels = {
        "startup_cpu_s": "start-up CPU s (once)",
        "cpu_s": "CPU s in the window",
        "ffmpeg_cpu_s": "  of which ffmpeg",
        "own_cpu_s": "  of which Python",
        "pct_core": "CPU % of one core",
        "rss_mb": "peak RSS MB",
        "pss_mb": "peak PSS MB",
        "uss_mb": "peak USS MB",
        "own_uss_mb": "  of which Python",
        "startup_pss_mb": "start-up peak PSS MB",
    }
    for k, label in labels.items():
        if not b[k]:  # the Python recorder's share: bare ffmpeg has none to compare with
            print(f"{label:24} {h[k]:12.2f} {st[k]:12.2f} {'-':>12} {'-':>6} {'-':>6}")
            continue
        ra, rb = h[k] / b[k], st[k] / b[k]
        print(f"{label:24} {h[k]:12.2f} {st[k]:12.2f} {b[k]:12.2f} {ra:6.2f} {rb:6.2f}")
    for name, x in (("unit per camera", h), ("site process", st)):
        print(
            f"holdfast ({name}) total CPU: {x['cpu_s'] * n / duration / NCPU * 100:.1f} % of the machine ({NCPU} cores)"
        )
    return {
        **{f"h_{k}": v for k, v in h.items()},
        **{f"s_{k}": v for k, v in st.items()},
        **{f"b_{k}": v for k, v in b.items()},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--keep", type=Path, help="work in this (new) directory and keep logs and output")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="holdfast-bench-") as tmp:
        work = Path(tmp)
        if args.keep is not None:
            args.keep.mkdir(parents=True)
            work = args.keep
        # An installed appliance runs from byte-compiled modules (pip compiles on install): so do
        # the recorders here, from a compiled copy, never compiling into this tree.
        code = compiled_copy(work)
        stream = make_h264_annexb(work / "cam.h264", seconds=10, bitrate_kbps=4000)
        for n in args.cameras:
            run(n, args.duration, stream, work, code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
