"""Benchmark: CPU and memory per concurrent call (capture + encode + seal) vs bare ffmpeg Opus.

For N in (1, 8, 16) lines: N `holdfast record calls` processes capture the same PulseAudio null
sink monitor (a private daemon, no sound card) while a tone+noise file plays into it, each with an
active call; we measure CPU (utime+stime from /proc, recorder and its ffmpeg child) over a fixed
window and memory (RSS and private) at its end. The baseline, in the same run, is N bare
`ffmpeg -re -f s16le ... -c:a libopus -b:a 24k -f ogg /dev/null` encoding the same audio in real time.
PulseAudio's own CPU (the "sound card") is excluded from both.

    PYTHONPATH=. .venv/bin/python bench/calls.py [--seconds 15] [--lines 1 8 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recorder.callcontrol import control_request, control_socket_path  # noqa: E402
from tests.support.appliance import HOLDFAST, make_appliance  # noqa: E402
from tests.support.audio import Pulse  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def memory(pid: int) -> tuple[int, int]:
    """(RSS, private) bytes from smaps_rollup."""
    rss = priv = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            k, _, v = line.partition(":")
            if k == "Rss":
                rss = int(v.split()[0]) * 1024
            elif k in ("Private_Clean", "Private_Dirty"):
                priv += int(v.split()[0]) * 1024
    except OSError:
        pass
    return rss, priv


def children(pid: int) -> list[int]:
    """Children of every thread: ffmpeg is spawned from the control-server thread, not main."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
        except OSError:
            continue
    return out


def measure(pids_fn, seconds: float) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    pids = pids_fn()
    before = {p: cpu_seconds(p) for p in pids}
    time.sleep(seconds)
    pids = pids_fn()
    cpu = sum(cpu_seconds(p) - before.get(p, 0.0) for p in pids)
    mem = [memory(p) for p in pids]
    return cpu / seconds, sum(m[0] for m in mem), sum(m[1] for m in mem)


def run_recorders(n: int, pulse: Pulse, work: Path, audio: Path, seconds: float) -> tuple[float, int, int]:
    app = make_appliance(work / f"site-{n}")
    extra = "".join(f'\n[[lines]]\nid = "b-{i}"\nsite = "demo"\nretention = "call-audio"\n' for i in range(n))
    app.config_path.write_text(app.config_path.read_text() + extra)
    env = {**app.env(), "HOME": pulse.env["HOME"], "XDG_RUNTIME_DIR": pulse.env["XDG_RUNTIME_DIR"]}
    procs = [
        subprocess.Popen(
            [*HOLDFAST, "record", "calls", f"b-{i}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(n)
    ]
    cfg = app.cfg
    try:
        for i in range(n):
            sock = control_socket_path(cfg, f"b-{i}")
            deadline = time.monotonic() + 120
            while True:
                try:
                    if control_request(sock, "GET", "/status", timeout=5)[1].get("capturing"):
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"recorder b-{i} did not start")
                time.sleep(0.2)
        for i in range(n):
            st, body = control_request(
                control_socket_path(cfg, f"b-{i}"),
                "POST",
                "/calls/start",
                {"agent": "bench", "direction": "in", "remote": "0"},
            )
            assert st == 200, body
        player = subprocess.Popen(["paplay", "--device=vsink", str(audio)], env=pulse.env)
        time.sleep(2.0)  # past start-up

        def pids() -> list[int]:
            out = []
            for p in procs:
                out.append(p.pid)
                out += children(p.pid)
            return out

        assert len(pids()) == 2 * n, "an encoder is missing"
        result = measure(pids, seconds)
        for i in range(n):
            control_request(control_socket_path(cfg, f"b-{i}"), "POST", "/calls/stop", {})
        player.wait(timeout=120)
        return result
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)


def run_baseline(n: int, raw: Path, seconds: float) -> tuple[float, int, int]:
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    procs = [
        subprocess.Popen(
            [
                ffmpeg,
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-f",
                "s16le",
                "-ar",
                "48000",
                "-ac",
                "1",
                "-i",
                str(raw),
                "-c:a",
                "libopus",
                "-b:a",
                "24k",
                "-application",
                "voip",
                "-f",
                "ogg",
                "-y",
                "/dev/null",
            ]
        )
        for _ in range(n)
    ]
    try:
        time.sleep(2.0)
        return measure(lambda: [p.pid for p in procs], seconds)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--lines", type=int, nargs="+", default=[1, 8, 16])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as td:
        work = Path(td)
        length = args.seconds + 8
        audio = work / "voice.wav"
        subprocess.run(
            [
                "sox",
                "-n",
                "-r",
                "48000",
                "-c",
                "1",
                "-b",
                "16",
                str(audio),
                "synth",
                str(length),
                "sine",
                "300-3000",
                "pinknoise",
                "remix",
                "-",
                "vol",
                "0.3",
            ],
            check=True,
        )
        raw = work / "voice.raw"
        subprocess.run(["sox", str(audio), "-t", "raw", str(raw)], check=True)
        pulse = Pulse(work / "pulse")
        try:
            print(f"window {args.seconds:.0f} s; CPU in % of one core; memory in MiB (RSS / private)")
            print(
                f"{'lines':>5} | {'holdfast cpu/call':>17} {'rss/call':>9} {'priv/call':>9} | "
                f"{'ffmpeg cpu/call':>15} {'rss/call':>9} {'priv/call':>9} | {'cpu ratio':>9}"
            )
            for n in args.lines:
                h_cpu, h_rss, h_priv = run_recorders(n, pulse, work, audio, args.seconds)
                b_cpu, b_rss, b_priv = run_baseline(n, raw, args.seconds)
                mib = 1024 * 1024
                print(
                    f"{n:>5} | {100 * h_cpu / n:>16.2f}% {h_rss / n / mib:>9.1f} {h_priv / n / mib:>9.1f} | "
                    f"{100 * b_cpu / n:>14.2f}% {b_rss / n / mib:>9.1f} {b_priv / n / mib:>9.1f} | "
                    f"{(h_cpu / b_cpu if b_cpu else float('nan')):>8.1f}x",
                    flush=True,
                )
        finally:
            pulse.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
