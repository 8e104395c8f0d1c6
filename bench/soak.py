"""The whole appliance left alone while things go wrong: `bench/soak.py --minutes N`.

Every daemon runs as its own process, started with the command line of its systemd unit and
restarted as `Restart=always` + `RestartSec` would (tests/support/units.py): two camera recorders
on the GStreamer RTSP test server, a call recorder on a PulseAudio null sink with calls started
and stopped through its control socket, PBX ingest fed with recordings ffmpeg writes into the PBX
directory, ingest, the purger fired like its timer, and the API with clients that search, view
and export. Back-dated imports (`holdfast seal --start <40 days ago>`) keep the purger busy all
along. The store lives on a size-limited tmpfs.

Meanwhile a chaos loop, every choice drawn from a seeded RNG (the seed is printed first, and
`--seed` replays a run): `kill -9` of a random daemon's main process, the RTSP server stopped for
5-30 s (scaled down for short runs), the store's filesystem filled past the high-water mark or to
the last byte, legal holds placed and released (on recent footage and on a back-dated range that
imports keep landing in).

At the end, with every producer stopped and the spool drained, it checks:
- `holdfast check --deep --json` reports no problem (when the installed CLI has `check`);
- every segment a recorder, the PBX ingest or an import closed (from their log events and an
  independent inotify watch of the spool) is indexed, or purged with exactly one purge-log entry;
  nothing was rejected and nothing is left in the spool;
- no segment was purged while a hold covered it, and every segment an active hold covers exists;
- per camera, segments and gaps cover the run without holes, and each RTSP outage and each kill
  of that camera's recorder falls inside a recorded gap;
- both logs verify offline (`holdfast audit export` + `holdfast audit verify`);
- no API answer was a 5xx.

It prints what it survived (segments recorded, ingested, purged; kills by daemon; outages; the
spool's largest backlog; API latency) and exits 0 when every check passed, 1 when a check failed,
2 when the soak could not be set up. Needs root (it mounts the tmpfs), ffmpeg, GStreamer's RTSP
server, PulseAudio. Everything binds 127.0.0.1; every process it started is gone when it exits,
Ctrl-C included.

    sudo .venv/bin/python bench/soak.py --minutes 10 [--seed N] [--dir DIR] [--json FILE]

Over 500 lines on purpose: one script that a person runs and reads top to bottom (daemons, chaos
loop, invariant checks, report); splitting it would scatter one experiment over files.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from appliance.commands import TrackedCommands  # noqa: E402
from tests.support.rtsp import RtspServer, free_port, gst_rtsp_available  # noqa: E402
from tests.support.units import MARKER, Supervisor, Unit, unit_from_file  # noqa: E402

HOLDFAST = [sys.executable, "-m", "cli.main"]
#: What the shipped units run, replaced by this checkout's CLI and the soak's config.
INSTALLED_HOLDFAST = "/opt/holdfast/.venv/bin/holdfast"
INSTALLED_CONFIG = "/etc/holdfast/holdfast.toml"
PASSWORD = "soak password for the api"
CAMERAS = ("office-1", "garage-1")
LINE = "cs-1"
SITE = "demo"
EXIT_OK, EXIT_PROBLEMS, EXIT_SETUP = 0, 1, 2
#: Holes between a camera's segments and gaps shorter than this are rounding, not lost footage.
HOLE_TOLERANCE = 2.0
KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


class SetupError(RuntimeError):
    """The soak cannot run here (not root, a tool missing); the message says what to install."""


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(p / 100 * len(ys)))]


def parse_event(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in KV.findall(line):
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        out[k] = v
    return out


@dataclass
class Stats:
    kills: dict[str, int] = field(default_factory=dict)
    kill_log: list[tuple[str, datetime]] = field(default_factory=list)
    outages: list[tuple[datetime, datetime]] = field(default_factory=list)
    fills: list[dict[str, Any]] = field(default_factory=list)
    holds_placed: int = 0
    holds_released: int = 0
    imports: list[str] = field(default_factory=list)
    import_failures: list[str] = field(default_factory=list)
    pbx_dropped: int = 0
    calls: int = 0
    call_failures: list[str] = field(default_factory=list)
    purge_runs: dict[str, int] = field(default_factory=dict)
    purge_refusals: list[str] = field(default_factory=list)
    spool_max: int = 0
    spool_max_at: str = ""
    store_max_percent: float = 0.0
    api_latency: list[float] = field(default_factory=list)
    export_latency: list[float] = field(default_factory=list)
    api_status: dict[str, int] = field(default_factory=dict)
    api_5xx: list[str] = field(default_factory=list)
    api_4xx: list[str] = field(default_factory=list)
    api_unavailable: int = 0
    incidents: int = 0
    spool_seen: set[str] = field(default_factory=set)


class Soak:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.seed: int = a.seed if a.seed is not None else secrets.randbelow(2**31)
        self.rng = random.Random(self.seed)
        self.scale = max(0.2, min(1.0, a.minutes / 10))
        self.run_id = secrets.token_hex(6)
        self.dir = Path(a.dir).resolve() if a.dir else Path(tempfile.mkdtemp(prefix="holdfast-soak-"))
        self.site = self.dir / "site"
        self.storefs = self.dir / "storefs"
        self.store = self.storefs / "store"
        self.ballast = self.storefs / "ballast"
        self.cfg_path = self.site / "holdfast.toml"
        self.stats = Stats()
        self.stop = threading.Event()
        self.chaos_stop = threading.Event()
        self.timer_stop = threading.Event()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.helpers = TrackedCommands()
        self.mounted = False
        self.rtsp: RtspServer | None = None
        self.pulse: Any = None
        self.sup: Supervisor | None = None
        self.observer: Any = None
        self.api_port = free_port()
        self.rtsp_port = free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.env: dict[str, str] = {}
        self.active_holds: list[tuple[str, str]] = []  # (hold id, kind)
        self.old_hold: tuple[str, datetime, datetime] | None = None
        self.old_cursor = now_utc() - timedelta(days=40)
        self.held_cursor: datetime | None = None
        self.t_start = now_utc()
        self.t_chaos_end = self.t_start
        self.problems: list[str] = []
        self.findings: list[str] = []
        self.scratch: Path | None = None

    # -- output ---------------------------------------------------------------------------------

    def say(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # -- helpers -------------------------------------------------------------------------------------

    def run(
        self, cmd: list[str], input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """A short-lived command (CLI call, ffmpeg), tracked so that cleanup can end it."""
        return self.helpers.run(cmd, input=input, timeout=timeout)

    def holdfast(
        self, *args: str, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        return self.run([*HOLDFAST, "--config", str(self.cfg_path), *args], input=input, timeout=timeout)

    def thread(self, name: str, target: Any, *args: Any) -> None:
        def guarded() -> None:
            try:
                target(*args)
            except Exception as e:  # noqa: BLE001 - a dead driver thread is a soak failure, reported
                self.problems.append(f"soak thread {name} crashed: {type(e).__name__}: {e}")
                traceback.print_exc()

        th = threading.Thread(target=guarded, name=name, daemon=True)
        th.start()
        self.threads.append(th)

    def usage_percent(self) -> float:
        st = os.statvfs(self.storefs)
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        return 100.0 * (total - free) / total if total else 0.0

    def spool_backlog(self) -> int:
        spool = self.site / "spool"
        try:
            return sum(1 for p in spool.iterdir() if p.name.endswith(".seg"))
        except OSError:
            return 0

    # -- setup ----------------------------------------------------------------------------------

    def setup(self) -> None:
        if os.geteuid() != 0:
            raise SetupError("the soak mounts a size-limited tmpfs for the store: run it as root")
        for tool in ("ffmpeg", "ffprobe", "pulseaudio", "pactl", "paplay", "sox", "mount", "umount"):
            if shutil.which(tool) is None:
                raise SetupError(f"{tool} missing: make apt (see the Makefile's APT_PACKAGES)")
        ok, why = gst_rtsp_available()
        if not ok:
            raise SetupError(why)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.environ[MARKER] = f"{self.run_id}:soak-helper"  # inherited by every helper we start
        base_env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        p = subprocess.run([*HOLDFAST, "init", str(self.site)], env=base_env, capture_output=True)
        if p.returncode != 0:
            raise SetupError(f"holdfast init failed: {p.stderr.decode(errors='replace')}")
        self.storefs.mkdir()
        p = subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.a.store_mb}m,mode=0750",
                "holdfast-soak",
                str(self.storefs),
            ],
            capture_output=True,
        )
        if p.returncode != 0:
            raise SetupError(
                f"mounting the store's tmpfs failed: {p.stderr.decode(errors='replace').strip()}"
            )
        self.mounted = True
        self.store.mkdir(mode=0o750)
        text = self.cfg_path.read_text("utf-8")
        old_store = re.search(r'^store = "(.*)"$', text, re.M)
        assert old_store is not None
        shutil.rmtree(old_store.group(1), ignore_errors=True)
        scratch = re.search(r'^scratch = "(.*)"$', text, re.M)
        self.scratch = Path(scratch.group(1)) if scratch else None
        subs = [
            (r'^store = ".*"$', f'store = "{self.store}"'),
            (r"rtsp://127\.0\.0\.1:\d+/", f"rtsp://127.0.0.1:{self.rtsp_port}/"),
            (r"^segment_seconds = \d+$", f"segment_seconds = {self.a.segment_seconds}\nstall_seconds = 6"),
            (r"^require_clock_sync = true$", "require_clock_sync = false"),
            (r"^high_water_percent = \d+$", f"high_water_percent = {self.a.high_water}"),
            (r"^settle_seconds = \d+$", "settle_seconds = 1"),
            (r"^port = \d+$", f"port = {self.api_port}"),
        ]
        for pat, repl in subs:
            text, n = re.subn(pat, repl, text, flags=re.M)
            if n == 0:
                raise SetupError(f"holdfast init's config has no line matching {pat!r}: update bench/soak.py")
        self.cfg_path.write_text(text, "utf-8")
        from tests.support.audio import Pulse, tone_wav

        self.pulse = Pulse(self.dir / "pulse")
        self.env = {
            **base_env,
            **self.pulse.env,
            "HOLDFAST_CONFIG": str(self.cfg_path),
            "PYTHONUNBUFFERED": "1",
        }
        self.helpers.env = self.env
        self.tone = tone_wav(self.dir / "tone.wav", 4.0, 523.0)
        self.clip = self.dir / "clip.mp4"
        p = subprocess.run(
            [
                "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=4",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p",
                "-movflags", "+frag_keyframe+empty_moov+default_base_moof", str(self.clip),
            ],
            capture_output=True,
        )  # fmt: skip
        if p.returncode != 0:
            raise SetupError(f"ffmpeg could not make the import clip: {p.stderr.decode(errors='replace')}")
        for name, role, sites in (("soak-sec", "security", [SITE]), ("soak-dpo", "dpo", [])):
            args = ["users", "add", name, "--role", role, "--password-stdin"]
            for s in sites:
                args += ["--site", s]
            r = self.holdfast(*args, input=(PASSWORD + "\n").encode())
            if r.returncode != 0:
                raise SetupError(f"holdfast users add {name}: {r.stderr.decode(errors='replace')}")
        self.rtsp = RtspServer(
            self.rtsp_port,
            mounts=[f"/{c}" for c in CAMERAS],
            width=480,
            height=270,
            fps=10,
            bitrate=300,
            gop=10,
            pattern="ball",
        ).start()
        self.say(
            f"dir {self.dir}; store on a {self.a.store_mb} MB tmpfs; rtsp 127.0.0.1:{self.rtsp_port}; "
            f"api {self.base}"
        )

    def start_units(self) -> None:
        """Each daemon as its shipped unit runs it: ExecStart=, Environment=, Restart=, RestartSec=."""
        from appliance.units import UNIT_DIR

        self.sup = Supervisor(self.run_id, self.env, self.dir / "logs", say=self.say)

        def unit(file: str, name: str, instance: str = "") -> Unit:
            return unit_from_file(
                UNIT_DIR / file,
                name=name,
                instance=instance,
                holdfast=HOLDFAST,
                config=self.cfg_path,
                bin_path=INSTALLED_HOLDFAST,
                etc_config=INSTALLED_CONFIG,
            )

        units = [
            unit("holdfast-ingest.service", "ingest"),
            *(unit("holdfast-recorder@.service", f"recorder-{c}", c) for c in CAMERAS),
            unit("holdfast-calls@.service", f"calls-{LINE}", LINE),
            unit("holdfast-pbx-ingest.service", "pbx-ingest"),
            unit("holdfast-api.service", "api"),
        ]
        for u in units:
            self.say(f"unit {u.name}: {' '.join(u.cmd[len(HOLDFAST) :])} (RestartSec={u.restart_sec:g})")
        for u in units:
            self.sup.add(u)
        self.sup.add(unit("holdfast-purge.service", "purge"), start=False)
        self.sup.watch()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise SetupError(
                f"the API did not answer /healthz within 60 s: see {self.dir / 'logs' / 'api.log'}"
            )

    def watch_spool(self) -> None:
        """An observer independent of the daemons' own logs: every sealed file that reached the spool."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        seen = self.stats.spool_seen

        class H(FileSystemEventHandler):
            def on_any_event(self, ev: FileSystemEvent) -> None:
                for p in (getattr(ev, "dest_path", ""), ev.src_path):
                    name = os.path.basename(str(p))
                    if name.endswith(".seg") and "/" not in name:
                        seen.add(name[: -len(".seg")])

        self.observer = Observer()
        self.observer.schedule(H(), str(self.site / "spool"), recursive=False)
        self.observer.start()

    # -- producers -------------------------------------------------------------------------------

    def call_loop(self) -> None:
        n = 0
        rng = random.Random(f"{self.seed}:calls")
        while not self.stop.wait(rng.uniform(2, 6)):
            n += 1
            r = self.holdfast(
                "call", "start", "--line", LINE, "--agent", "Soak Agent", "--direction", "in",
                "--remote", f"+3584000{n:05d}", timeout=30,
            )  # fmt: skip
            if r.returncode != 0:
                self.stats.call_failures.append(r.stderr.decode(errors="replace").strip()[-200:])
                continue
            self.run(["paplay", "--device=vsink", str(self.tone)], timeout=30)
            r = self.holdfast("call", "stop", "--line", LINE, timeout=30)
            if r.returncode == 0:
                self.stats.calls += 1
            else:
                self.stats.call_failures.append(r.stderr.decode(errors="replace").strip()[-200:])

    def pbx_loop(self) -> None:
        pbx = self.site / "pbx"
        n = 0
        rng = random.Random(f"{self.seed}:pbx")
        while not self.stop.wait(rng.uniform(4, 10)):
            n += 1
            name = f"soak-{self.run_id}-{n:05d}"
            start = now_utc() - timedelta(seconds=5)
            r = self.run(
                ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency={300 + n % 500}:duration=3",
                 "-ar", "8000", "-ac", "1", str(pbx / f"{name}.wav")],
                timeout=60,
            )  # fmt: skip
            if r.returncode != 0:
                self.problems.append(
                    f"ffmpeg could not write a PBX recording: {r.stderr.decode(errors='replace')}"
                )
                continue
            side = {
                "line": LINE,
                "start": iso(start),
                "agent": "PBX Agent",
                "direction": "out",
                "remote": f"+3585000{n:05d}",
                "call_id": f"pbx-{self.run_id}-{n}",
            }
            tmp = pbx / f".{name}.json.tmp"
            tmp.write_text(json.dumps(side), "utf-8")
            os.replace(tmp, pbx / f"{name}.json")

    def import_loop(self) -> None:
        """Back-dated imports: already past their deadline, so every purge pass has work."""
        rng = random.Random(f"{self.seed}:imports")
        while not self.stop.wait(rng.uniform(1.5, 4)):
            cam = rng.choice(CAMERAS)
            with self.lock:
                held = self.old_hold
                if held is not None and held[0] and rng.random() < 0.4 and self.held_cursor is not None:
                    start = self.held_cursor
                    self.held_cursor += timedelta(seconds=30)
                    cam = "office-1"
                else:
                    start = self.old_cursor
                    self.old_cursor -= timedelta(seconds=30)
            r = self.holdfast("seal", "--source", cam, "--start", iso(start), str(self.clip), timeout=60)
            if r.returncode == 0:
                self.stats.imports.append(Path(r.stdout.decode().strip()).name.removesuffix(".seg"))
            else:
                self.stats.import_failures.append(r.stderr.decode(errors="replace").strip()[-300:])

    def purge_timer(self) -> None:
        """holdfast-purge.timer, on a short interval: start the oneshot unless it still runs."""
        assert self.sup is not None
        while not self.timer_stop.wait(self.a.purge_interval):
            self.sup.start("purge")

    def sampler(self) -> None:
        while not self.stop.wait(0.5):
            n = self.spool_backlog()
            if n > self.stats.spool_max:
                self.stats.spool_max, self.stats.spool_max_at = n, time.strftime("%H:%M:%S")
            self.stats.store_max_percent = max(self.stats.store_max_percent, self.usage_percent())

    # -- API clients ---------------------------------------------------------------------------

    def api_client(self, k: int) -> None:
        rng = random.Random(f"{self.seed}:api-{k}")
        sec = self.login("soak-sec")
        dpo = self.login("soak-dpo") if k == 0 else None
        next_export = time.monotonic() + rng.uniform(10, 30)
        open_incidents: list[tuple[int, float]] = []
        with httpx.Client(base_url=self.base, timeout=120) as c:
            while not self.stop.wait(rng.uniform(0.2, 1.0)):
                cam = rng.choice(CAMERAS)
                t = now_utc()
                segs = self.api(
                    c, sec, "GET", "/api/v1/segments",
                    params={"source": cam, "start": iso(t - timedelta(minutes=3)), "end": iso(t)},
                )  # fmt: skip
                if segs is not None and segs.status_code == 200 and segs.json():
                    sid = rng.choice(segs.json())["id"]
                    self.api(
                        c, sec, "GET", f"/api/v1/segments/{sid}/media",
                        params={"purpose": "soak: reviewing recent footage"}, headers={"Range": "bytes=0-65535"},
                    )  # fmt: skip
                if time.monotonic() > next_export:
                    next_export = time.monotonic() + rng.uniform(20, 40)
                    inc = self.api(
                        c, sec, "POST", "/api/v1/incidents",
                        json={"site": SITE, "cameras": [cam], "start": iso(t - timedelta(seconds=70)),
                              "end": iso(t - timedelta(seconds=20)), "description": f"soak incident by client {k}"},
                    )  # fmt: skip
                    if inc is not None and inc.status_code == 201:
                        self.stats.incidents += 1
                        iid = inc.json()["id"]
                        self.api(c, sec, "POST", f"/api/v1/incidents/{iid}/export", export=True)
                        open_incidents.append((iid, time.monotonic() + rng.uniform(10, 40)))
                if dpo is not None:
                    for iid, due in list(open_incidents):
                        if time.monotonic() > due:
                            self.api(
                                c, dpo, "POST", f"/api/v1/incidents/{iid}/close",
                                json={"reason": "soak: closed after export"},
                            )  # fmt: skip
                            open_incidents.remove((iid, due))
                else:
                    open_incidents.clear()  # only client 0 holds the DPO role; others' holds stay

    def login(self, user: str) -> dict[str, str]:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.post(
                    self.base + "/api/v1/auth/token",
                    data={"username": user, "password": PASSWORD},
                    timeout=30,
                )
                if r.status_code == 200:
                    return {"Authorization": f"Bearer {r.json()['access_token']}"}
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.stop.is_set():
                raise RuntimeError(f"could not log in as {user}")
            time.sleep(0.5)

    def api(
        self, c: httpx.Client, auth: dict[str, str], method: str, url: str, export: bool = False, **kw: Any
    ) -> httpx.Response | None:
        headers = {**auth, **kw.pop("headers", {})}
        t0 = time.perf_counter()
        try:
            r = c.request(method, url, headers=headers, **kw)
        except httpx.HTTPError:
            self.stats.api_unavailable += 1  # the API is being restarted after a kill
            return None
        dt = (time.perf_counter() - t0) * 1000
        key = str(r.status_code)
        self.stats.api_status[key] = self.stats.api_status.get(key, 0) + 1
        if r.status_code >= 500:
            self.stats.api_5xx.append(f"{method} {url} -> {r.status_code}: {r.text[:300]}")
        elif r.status_code >= 400 and len(self.stats.api_4xx) < 20:
            self.stats.api_4xx.append(f"{method} {url} -> {r.status_code}: {r.text[:200]}")
        elif r.status_code < 400:
            (self.stats.export_latency if export else self.stats.api_latency).append(dt)
        return r

    # -- chaos -------------------------------------------------------------------------------------

    def rng_uniform(self, a: float, b: float) -> float:
        with self.lock:
            return self.rng.uniform(a, b)

    def scaled(self, a: float, b: float, floor: float) -> float:
        return max(floor, self.rng_uniform(a, b) * self.scale)

    def chaos(self) -> None:
        assert self.sup is not None
        outage: threading.Thread | None = None
        fill: threading.Thread | None = None
        while not self.chaos_stop.wait(self.rng_uniform(2.5, 7)):
            with self.lock:
                roll = self.rng.random()
            if roll < 0.5:
                names = [n for n, u in self.sup.units.items() if u.running]
                if not names:
                    continue
                with self.lock:
                    name = self.rng.choice(sorted(names))
                if self.sup.kill9(name):
                    self.stats.kills[name] = self.stats.kills.get(name, 0) + 1
                    self.stats.kill_log.append((name, now_utc()))
                    self.say(f"chaos: kill -9 {name}")
            elif roll < 0.7:
                self.chaos_hold()
            elif roll < 0.85:
                if outage is None or not outage.is_alive():
                    outage = threading.Thread(
                        target=self.chaos_outage, args=(self.scaled(5, 30, 4),), daemon=True
                    )
                    outage.start()
            elif fill is None or not fill.is_alive():
                with self.lock:
                    full = self.rng.random() < 0.5
                fill = threading.Thread(
                    target=self.chaos_fill, args=(full, self.scaled(10, 40, 6)), daemon=True
                )
                fill.start()
        for th in (outage, fill):
            if th is not None:
                th.join()

    def chaos_outage(self, seconds: float) -> None:
        assert self.rtsp is not None
        self.say(f"chaos: RTSP server down for {seconds:.1f} s")
        t0 = now_utc()
        self.rtsp.stop()
        self.chaos_stop.wait(seconds)
        t1 = now_utc()
        self.rtsp.start()
        self.stats.outages.append((t0, t1))

    def chaos_fill(self, full: bool, seconds: float) -> None:
        """Fill the store's filesystem: past the high-water mark, or to its last byte."""
        st = os.statvfs(self.storefs)
        total = st.f_blocks * st.f_frsize
        used = total - st.f_bavail * st.f_frsize
        target = total if full else int(total * min(99.0, self.a.high_water + 5) / 100)
        want = max(0, target - used)
        written = 0
        with open(self.ballast, "wb") as f:
            block = b"\0" * (1 << 20)
            try:
                while written < want:
                    written += f.write(block[: min(len(block), want - written)])
                f.flush()
            except OSError:
                pass  # ENOSPC: that is the point
        pctv = self.usage_percent()
        self.say(
            f"chaos: store filesystem {'full' if full else 'above high water'} ({pctv:.0f} %) for {seconds:.1f} s"
        )
        self.stats.fills.append({"full": full, "seconds": round(seconds, 1), "usage_percent": round(pctv, 1)})
        self.chaos_stop.wait(seconds)
        self.ballast.unlink(missing_ok=True)

    def chaos_hold(self) -> None:
        with self.lock:
            release = self.active_holds and self.rng.random() < 0.45
            pick = self.rng.choice(self.active_holds) if release else None
            old = self.old_hold is None and self.rng.random() < 0.4
            cam = self.rng.choice(CAMERAS)
        if pick is not None:
            hid, kind = pick
            r = self.holdfast(
                "hold", "release", hid, "--reason", "soak: released by the chaos loop", "--user", "soak"
            )
            if r.returncode == 0:
                self.stats.holds_released += 1
                with self.lock:
                    self.active_holds.remove(pick)
                    if kind == "old":
                        self.old_hold = None
                self.say(f"chaos: released hold {hid} ({kind})")
            else:
                self.problems.append(f"hold release {hid} failed: {r.stderr.decode(errors='replace')}")
            return
        if old:
            with self.lock:
                a = self.old_cursor - timedelta(days=2)
                self.old_cursor = a - timedelta(days=1)
                b = a + timedelta(hours=12)
            args = ["--source", "office-1", "--from", iso(a), "--to", iso(b)]
            kind = "old"
        else:
            t = now_utc()
            args = [
                "--source",
                cam,
                "--from",
                iso(t - timedelta(seconds=90)),
                "--to",
                iso(t - timedelta(seconds=10)),
            ]
            kind = "recent"
        r = self.holdfast("hold", "add", *args, "--reason", f"soak: {kind} footage held", "--user", "soak")
        if r.returncode != 0:
            self.problems.append(f"hold add failed: {r.stderr.decode(errors='replace')}")
            return
        hid = r.stdout.decode().strip()
        self.stats.holds_placed += 1
        with self.lock:
            self.active_holds.append((hid, kind))
            if kind == "old":
                self.old_hold = (hid, a, b)
                self.held_cursor = a + timedelta(seconds=30)
        self.say(f"chaos: placed hold {hid} ({kind} footage)")

    # -- the run --------------------------------------------------------------------------------

    def soak(self) -> None:
        self.t_start = now_utc()
        self.watch_spool()
        self.start_units()
        self.say(f"all daemons up; soaking for {self.a.minutes:g} min")
        for name, target in (
            ("sampler", self.sampler),
            ("calls", self.call_loop),
            ("pbx", self.pbx_loop),
            ("imports", self.import_loop),
        ):
            self.thread(name, target)
        timer = threading.Thread(target=self.purge_timer, name="purge-timer", daemon=True)
        timer.start()
        for k in range(self.a.clients):
            self.thread(f"api-{k}", self.api_client, k)
        chaos = threading.Thread(target=self.chaos, name="chaos", daemon=True)
        chaos.start()
        end = time.monotonic() + self.a.minutes * 60
        last = time.monotonic()
        while time.monotonic() < end:
            time.sleep(1)
            if time.monotonic() - last > 30:
                last = time.monotonic()
                self.say(
                    f"kills {sum(self.stats.kills.values())}, outages {len(self.stats.outages)}, fills "
                    f"{len(self.stats.fills)}, imports {len(self.stats.imports)}, spool {self.spool_backlog()}, "
                    f"store {self.usage_percent():.0f} %"
                )
        self.t_chaos_end = now_utc()
        self.say("chaos over: letting the appliance recover")
        self.chaos_stop.set()
        chaos.join()
        self.ballast.unlink(missing_ok=True)
        assert self.rtsp is not None and self.sup is not None
        if not self.rtsp.running:
            self.rtsp.start()
        self.stop.set()
        for th in self.threads:
            th.join(timeout=180)
        self.settle(timer)

    def settle(self, timer: threading.Thread) -> None:
        """Stop the producers as systemd would at shutdown, then let ingest and the purger finish."""
        assert self.sup is not None
        for name in self.sup.units:
            if name != "purge":
                self.sup.units[name].enabled = True
        self.wait(
            lambda: all(self.sup.units[n].running for n in self.sup.units if n != "purge"),
            60,
            "every daemon running",
        )
        self.wait(lambda: not any((self.site / "pbx").glob("*.wav")), 60, "PBX directory drained")
        for n in (*[f"recorder-{c}" for c in CAMERAS], f"calls-{LINE}", "pbx-ingest"):
            rc = self.sup.stop(n)
            if rc not in (0, None, -15):
                self.problems.append(f"{n} exited {rc} on SIGTERM (expected a clean stop)")
        if not self.wait(
            lambda: self.spool_backlog() == 0 and not list((self.site / "spool").glob("*.json")),
            180,
            "spool drained",
        ):
            self.problems.append(
                f"the spool did not drain: {sorted(p.name for p in (self.site / 'spool').iterdir())[:20]}"
            )
        self.timer_stop.set()
        timer.join()
        self.wait(lambda: not self.sup.units["purge"].running, 120, "the running purge pass")
        self.sup.start("purge")
        self.wait(lambda: not self.sup.units["purge"].running, 120, "the last purge pass")
        for n in ("api", "ingest"):
            self.sup.stop(n)

    def wait(self, pred: Any, timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.2)
        ok = bool(pred())
        if not ok:
            self.say(f"timed out after {timeout:g} s waiting for: {what}")
        return ok

    # -- checks -----------------------------------------------------------------------------------

    def closed_by_daemons(self) -> dict[str, str]:
        """Segment id -> who closed it, from the daemons' log events."""
        closed: dict[str, str] = {}
        events = {
            "camera.segment",
            "spool.partial_recovered",
            "call.part_closed",
            "call.stopped",
            "pbx.sealed",
        }
        for log in (self.dir / "logs").glob("*.log"):
            for line in log.read_text("utf-8", errors="replace").splitlines():
                if "event=" not in line:
                    continue
                ev = parse_event(line)
                if ev.get("event") in events and ev.get("segment"):
                    closed[ev["segment"]] = f"{log.stem}:{ev['event']}"
        for sid in self.stats.imports:
            closed[sid] = "import"
        return closed

    def check(self) -> dict[str, Any]:
        from sqlalchemy import select

        import config as config_pkg
        from vault.index.schema import Gap, PurgeLogRow, Segment
        from vault.retention import holds as holds_mod
        from vault.vault import Vault

        cfg = config_pkg.load(self.cfg_path)
        closed = self.closed_by_daemons()
        for sid in self.stats.spool_seen:
            closed.setdefault(sid, "spool-watch")
        rejected = (
            sorted(p.name for p in (self.site / "spool" / "rejected").glob("*"))
            if (self.site / "spool" / "rejected").exists()
            else []
        )
        if rejected:
            self.problems.append(f"ingest rejected {len(rejected)} file(s): {rejected[:10]}")
        left = sorted(p.name for p in (self.site / "spool").iterdir() if p.is_file())
        if left:
            self.problems.append(f"left in the spool: {left[:10]}")
        with Vault(cfg) as v, v.sessions() as s:
            rows = {seg.id: seg for seg in s.scalars(select(Segment))}
            plog: dict[str, list[dict[str, Any]]] = {}
            for r in s.scalars(select(PurgeLogRow)):
                plog.setdefault(r.segment_id, []).append(json.loads(r.entry))
            gaps = list(s.scalars(select(Gap)))
            all_holds = [holds_mod.hold_dict(h, s) for h in holds_mod.list_holds(s, include_released=True)]
            now = v.clock()
            held_now = {
                seg_id for (seg_id,) in s.execute(select(Segment.id).where(holds_mod.held_clause(now)))
            }
            # 1. every closed segment indexed, or purged with exactly one entry
            missing = []
            for sid, who in sorted(closed.items()):
                if sid in rows:
                    if rows[sid].state != "stored":
                        self.problems.append(f"segment {sid} ({who}) is left in state {rows[sid].state!r}")
                    continue
                n = len(plog.get(sid, []))
                if n != 1:
                    missing.append(f"{sid} ({who}, {n} purge-log entries)")
            if missing:
                self.problems.append(
                    f"{len(missing)} closed segment(s) neither indexed nor purged once: {missing[:10]}"
                )
            for sid in plog:
                if sid in rows:
                    self.problems.append(f"purge-log entry for {sid}, which is still indexed")
            # 2. holds: nothing purged while held; everything held now is present
            for h in all_holds:
                a = parse_time(h["created_at"])
                ends = [parse_time(x) for x in (h["released_at"], h["until"]) if x]
                b = min(ends) if ends else None
                for sid, entries in plog.items():
                    e = entries[0]
                    covered = sid in h["segments"] or (
                        e.get("source") in h["sources"] and h["from"] and h["to"]
                        and parse_time(h["from"]) <= parse_time(e["end"])
                        and parse_time(h["to"]) >= parse_time(e["start"])
                    )  # fmt: skip
                    if not covered:
                        continue
                    t = parse_time(e["purged_at"])
                    if t > a and (b is None or t < b):
                        self.problems.append(
                            f"segment {sid} purged at {e['purged_at']} while hold {h['id']} covered it"
                        )
            for sid in held_now:
                seg = rows[sid]
                if not (cfg.paths.store / seg.storage_key).is_file():
                    self.problems.append(f"held segment {sid} has no blob in the store")
            # 3. per camera, segments + gaps cover the run; outages and kills fall in gaps
            cover = self.coverage(rows, plog, gaps)
        check = self.run_check()
        logs = self.verify_logs()
        purged_reasons: dict[str, int] = {}
        for entries in plog.values():
            r = entries[0].get("reason", "?")
            purged_reasons[r] = purged_reasons.get(r, 0) + 1
        by_kind: dict[str, int] = {}
        for who in closed.values():
            k = who.split(":")[-1]
            by_kind[k] = by_kind.get(k, 0) + 1
        return {
            "segments_closed": len(closed),
            "closed_by": by_kind,
            "indexed_at_end": len(rows),
            "ingested": len(rows) + len(plog),
            "purged": len(plog),
            "purged_by_reason": purged_reasons,
            "held_at_end": len(held_now),
            "holds": len(all_holds),
            "gaps": len(gaps),
            "coverage": cover,
            "check": check,
            "audit": logs,
        }

    def coverage(
        self, rows: dict[str, Any], plog: dict[str, list[dict[str, Any]]], gaps: list[Any]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        lo = self.t_start
        for cam in CAMERAS:
            spans: list[tuple[datetime, datetime, str]] = []
            for seg in rows.values():
                if seg.source == cam and seg.end > lo:
                    spans.append((seg.start.astimezone(UTC), seg.end.astimezone(UTC), "segment"))
            for entries in plog.values():
                e = entries[0]
                if e.get("source") == cam and parse_time(e["end"]) > lo:
                    spans.append((parse_time(e["start"]), parse_time(e["end"]), "segment"))
            gap_spans = [
                (g.start.astimezone(UTC), g.end.astimezone(UTC), g.reason)
                for g in gaps
                if g.source == cam and g.end > lo
            ]
            spans += gap_spans
            spans.sort()
            holes: list[str] = []
            if spans:
                reach = spans[0][1]
                for a, b, _ in spans[1:]:
                    if (a - reach).total_seconds() > HOLE_TOLERANCE:
                        holes.append(f"{iso(reach)} .. {iso(a)} ({(a - reach).total_seconds():.1f} s)")
                    reach = max(reach, b)
            for h in holes:
                self.problems.append(f"{cam}: nothing recorded and no gap between {h}")
            starts = [g[0] for g in gap_spans]
            order = sorted(range(len(gap_spans)), key=lambda i: starts[i])
            gs = [gap_spans[i] for i in order]

            def in_gap(
                t0: datetime, t1: datetime, slack: float, gs: list[tuple[datetime, datetime, str]] = gs
            ) -> bool:
                i = bisect.bisect_right([g[0] for g in gs], t1 + timedelta(seconds=slack))
                return any(g[1] >= t0 for g in gs[max(0, i - 20) : i])

            unexplained = []
            for t0, t1 in self.stats.outages:
                if not in_gap(t0, t1, 1.0):
                    unexplained.append(f"RTSP outage {iso(t0)} .. {iso(t1)}")
            kills = [t for n, t in self.stats.kill_log if n == f"recorder-{cam}"]
            for t in kills:
                if not in_gap(t, t, 3.0):
                    unexplained.append(f"kill of recorder-{cam} at {iso(t)}")
            for u in unexplained:
                self.problems.append(f"{cam}: no gap explains the {u}")
            # A gap that claims time a segment recorded: reported, not failed (a recorder killed
            # between closing a segment and recording how far it got; see docs/benchmarks.md).
            segs = sorted(x for x in spans if x[2] == "segment")
            seg_starts = [x[0] for x in segs]
            overlaps = []
            for g0, g1, why in gap_spans:
                i = bisect.bisect_left(seg_starts, g1)
                for a, b, _ in segs[max(0, i - 50) : i]:
                    o = (min(b, g1) - max(a, g0)).total_seconds()
                    if o > 0.5:
                        overlaps.append(f"gap {iso(g0)} .. {iso(g1)} ({why}) covers {o:.1f} s of a segment")
            self.findings += [f"{cam}: {x}" for x in overlaps]
            out[cam] = {
                "gaps": len(gap_spans),
                "holes": len(holes),
                "kills": len(kills),
                "unexplained": len(unexplained),
                "gaps_over_segments": len(overlaps),
            }
        return out

    def run_check(self) -> dict[str, Any]:
        r = self.holdfast("check", "--deep", "--json", timeout=600)
        err = r.stderr.decode(errors="replace")
        if r.returncode == 2 and "invalid choice: 'check'" in err:
            self.say("holdfast check is not in this installation: skipped (the other checks still ran)")
            return {"available": False}
        try:
            body = json.loads(r.stdout)
        except ValueError:
            self.problems.append(
                f"holdfast check --deep --json exited {r.returncode} without JSON: {err[-500:]}"
            )
            return {"available": True, "ok": False}
        if r.returncode != 0 or not body.get("ok"):
            for p in body.get("problems", [])[:20]:
                self.problems.append(
                    f"holdfast check: {p.get('kind')} {p.get('segment') or p.get('path')}: {p.get('detail')}"
                )
            if r.returncode != 1 or body.get("ok"):
                self.problems.append(f"holdfast check exited {r.returncode} with ok={body.get('ok')}")
        return {"available": True, "ok": bool(body.get("ok")), "problems": len(body.get("problems", []))}

    def verify_logs(self) -> dict[str, Any]:
        out = self.dir / "audit-export"
        r = self.holdfast("audit", "export", str(out), timeout=600)
        if r.returncode != 0:
            self.problems.append(
                f"holdfast audit export exited {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}"
            )
            return {"verified": False}
        r = self.holdfast(
            "audit", "verify", str(out), "--pubkey", str(self.site / "keys" / "sign.pub"), timeout=600
        )
        text = (r.stdout + r.stderr).decode(errors="replace")
        if r.returncode != 0:
            self.problems.append(f"holdfast audit verify exited {r.returncode}: {text[-800:]}")
        return {"verified": r.returncode == 0, "output": text.strip().splitlines()[-3:]}

    # -- summary and cleanup -------------------------------------------------------------------

    def summary(self, result: dict[str, Any]) -> dict[str, Any]:
        assert self.sup is not None
        st = self.stats
        names = {0: "ok", 3: "clock-refused", 4: "store-full", -9: "killed"}
        for rc in self.sup.units["purge"].exits:
            key = names.get(rc, f"exit-{rc}")
            st.purge_runs[key] = st.purge_runs.get(key, 0) + 1
        if st.api_5xx:
            self.problems.append(f"{len(st.api_5xx)} API answer(s) were 5xx: {st.api_5xx[:5]}")
        if st.import_failures:
            self.problems.append(f"{len(st.import_failures)} import(s) failed: {st.import_failures[:3]}")
        if st.purge_runs.get("clock-refused"):
            self.problems.append(
                f"the purger refused {st.purge_runs['clock-refused']} time(s) on its clock guard"
            )
        for u in self.sup.units.values():
            if u.failed:
                self.problems.append(f"{u.name} stopped restarting: {u.failed}")
        for k, v in st.purge_runs.items():
            if k.startswith("exit-"):
                self.problems.append(f"the purger exited {k[5:]} {v} time(s): see logs/purge.log")
        return {
            "seed": self.seed,
            "minutes": self.a.minutes,
            "ok": not self.problems,
            "problems": self.problems,
            "findings": self.findings,
            "kills": dict(sorted(st.kills.items())),
            "restarts": {n: max(0, u.starts - 1) for n, u in self.sup.units.items() if n != "purge"},
            "outages": len(st.outages),
            "outage_seconds": round(sum((b - a).total_seconds() for a, b in st.outages), 1),
            "fills": st.fills,
            "holds_placed": st.holds_placed,
            "holds_released": st.holds_released,
            "imports": len(st.imports),
            "calls": st.calls,
            "call_failures": len(st.call_failures),
            "purge_runs": st.purge_runs,
            "spool_max_backlog": st.spool_max,
            "store_max_percent": round(st.store_max_percent, 1),
            "api_requests": len(st.api_latency),
            "api_p50_ms": round(pct(st.api_latency, 50), 1),
            "api_p99_ms": round(pct(st.api_latency, 99), 1),
            "exports": len(st.export_latency),
            "export_p99_ms": round(pct(st.export_latency, 99), 1),
            "api_status": st.api_status,
            "api_unavailable": st.api_unavailable,
            "api_4xx_samples": st.api_4xx,
            "incidents": st.incidents,
            **result,
        }

    def cleanup(self) -> None:
        self.stop.set()
        self.chaos_stop.set()
        self.timer_stop.set()
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
        self.helpers.kill_all()
        if self.sup is not None:
            self.sup.close()
        if self.rtsp is not None:
            self.rtsp.stop()
        if self.pulse is not None:
            self.pulse.stop()
        if self.sup is not None:
            self.sup.kill_everything()
        else:
            from tests.support.units import processes_marked

            for pid in processes_marked(self.run_id + ":"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.mounted:
            r = subprocess.run(["umount", str(self.storefs)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(self.storefs)], capture_output=True)
            self.mounted = False
        if self.scratch is not None and self.scratch.is_dir() and self.scratch.name.startswith("holdfast-"):
            shutil.rmtree(self.scratch, ignore_errors=True)


def print_summary(s: dict[str, Any]) -> None:
    print()
    print(f"soak {'PASSED' if s['ok'] else 'FAILED'}: {s['minutes']:g} min, seed {s['seed']}")
    print(
        f"  segments closed {s.get('segments_closed', 0)} {s.get('closed_by', {})}; ingested {s.get('ingested', 0)}, "
        f"purged {s.get('purged', 0)} {s.get('purged_by_reason', {})}, indexed at the end {s.get('indexed_at_end', 0)}"
    )
    print(f"  kills {sum(s['kills'].values())} {s['kills']}; restarts {s['restarts']}")
    print(
        f"  RTSP outages {s['outages']} ({s['outage_seconds']} s); store fills {len(s['fills'])} "
        f"(max {s['store_max_percent']} %); holds placed {s['holds_placed']}, released {s['holds_released']}"
    )
    print(
        f"  imports {s['imports']}, calls {s['calls']}, purge runs {s['purge_runs']}; spool's largest backlog "
        f"{s['spool_max_backlog']} segment(s)"
    )
    print(
        f"  API: {s['api_requests']} requests p50 {s['api_p50_ms']} ms p99 {s['api_p99_ms']} ms; {s['exports']} "
        f"exports p99 {s['export_p99_ms']} ms; statuses {s['api_status']}; refused while down {s['api_unavailable']}"
    )
    print(
        f"  gaps {s.get('gaps', 0)} {s.get('coverage', {})}; check {s.get('check')}; audit {s.get('audit', {}).get('verified')}"
    )
    for x in s["api_4xx_samples"][:5]:
        print(f"  API 4xx (expected when footage was purged or an incident is gone; judge): {x}")
    for f in s["findings"]:
        print(f"  FINDING: {f}")
    for p in s["problems"]:
        print(f"  PROBLEM: {p}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long the chaos runs")
    ap.add_argument("--seed", type=int, help="replay a run's random choices (printed at start)")
    ap.add_argument("--dir", help="working directory (default: a new temporary one, kept for inspection)")
    ap.add_argument("--json", dest="json_out", help="also write the summary as JSON to this file")
    ap.add_argument("--clients", type=int, default=3, help="concurrent API clients")
    ap.add_argument("--store-mb", type=int, default=48, help="size of the store's tmpfs")
    ap.add_argument("--high-water", type=int, default=80, help="[purge] high_water_percent")
    ap.add_argument("--purge-interval", type=float, default=8.0, help="seconds between purge runs")
    ap.add_argument("--segment-seconds", type=int, default=5, help="cameras' segment_seconds")
    a = ap.parse_args(argv)
    soak = Soak(a)
    print(
        f"soak seed {soak.seed} (replay with --seed {soak.seed}), {a.minutes:g} min, run {soak.run_id}",
        flush=True,
    )

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT too, explicitly: a soak started in the background by a shell inherits SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    summary: dict[str, Any] | None = None
    try:
        soak.setup()
        soak.soak()
        result = soak.check()
        summary = soak.summary(result)
    except SetupError as e:
        print(f"soak: cannot run: {e}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:
        print("soak: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        soak.cleanup()
    print_summary(summary)
    print(f"logs and data in {soak.dir}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(summary, indent=2, default=str), "utf-8")
    return EXIT_OK if summary["ok"] else EXIT_PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
