"""`holdfast demo --dir DIR`: the whole appliance on one machine, supervised, stopped by Ctrl-C.

Children, each in its own process group (so a signal to one never leaks, and the whole group,
ffmpeg included, can be stopped): the RTSP test server (office-1, garage-1 on 127.0.0.1), one
camera recorder per camera, a PulseAudio null sink with a call recorder on line cs-1 fed with
espeak-ng speech and periodic `call start/stop`, ingest, the purger every interval, and the API
with `security`, `auditor` and `dpo` users whose generated passwords are printed with the URL.

So the first minutes show what Holdfast is for, the demo first imports back-dated footage of
the first camera (a day past its retention limit, `import_history`) and opens an incident over
the last part of it: the first purge (as soon as ingest has indexed the import) removes the
rest and logs it, while the incident's legal hold keeps its part past the deadline, with the
incident's reason on the auditor's page.

A piece whose tool is missing (no RTSP server, no PulseAudio) is skipped with a message naming
it; the rest still runs. Stop: SIGINT or SIGTERM -> SIGTERM to every group in reverse
start order, wait up to 10 s, then SIGKILL the group; then wait for every child. No process is
left behind (the acceptance test checks /proc).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from appliance.commands import TrackedCommands

REPO = Path(__file__).resolve().parents[1]
RTSP_SERVER = REPO / "appliance" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
HOLDFAST = [sys.executable, "-m", "cli.main"]
STOP_GRACE = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]


@dataclass
class Demo:
    dir: Path
    rtsp_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    children: list[Child] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    env: dict[str, str] = field(default_factory=dict)
    _helpers: TrackedCommands = field(default_factory=TrackedCommands)
    _threads: list[threading.Thread] = field(default_factory=list)

    def say(self, msg: str) -> None:
        print(msg, flush=True)

    # -- setup ----------------------------------------------------------------------------

    def prepare(self) -> Path:
        self.dir = self.dir.resolve()
        cfg = self.dir / "holdfast.toml"
        base_env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        if not cfg.exists():
            subprocess.run(
                [*HOLDFAST, "init", str(self.dir)], check=True, env=base_env, stdout=subprocess.DEVNULL
            )
        text = cfg.read_text("utf-8")
        text = re.sub(r'url = "rtsp://127\.0\.0\.1:\d+/', f'url = "rtsp://127.0.0.1:{self.rtsp_port}/', text)
        text = re.sub(r"^port = \d+$", f"port = {self.api_port}", text, flags=re.M)
        # The demo box has no NTP guarantee: the purger's clock guard is relaxed knowingly here.
        text = re.sub(r"^require_clock_sync = true$", "require_clock_sync = false", text, flags=re.M)
        text = re.sub(r"^interval_seconds = \d+$", "interval_seconds = 60", text, flags=re.M)
        cfg.write_text(text, "utf-8")
        run = self.dir / "run"
        run.mkdir(mode=0o700, exist_ok=True)
        (self.dir / "home").mkdir(exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        self.env = {
            **base_env,
            "HOLDFAST_CONFIG": str(cfg),
            "HOME": str(self.dir / "home"),
            "XDG_RUNTIME_DIR": str(run),
        }
        self._helpers.env = self.env
        return cfg

    def spawn(self, name: str, cmd: list[str]) -> Child:
        log = open(self.dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            cmd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name, proc, log)
        self.children.append(child)
        (self.dir / "run" / "demo.pids").open("a").write(f"{proc.pid} {name}\n")
        return child

    def helper(
        self, cmd: list[str], input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """A short-lived command from a helper thread (call start/stop, paplay, purge), tracked so
        that stop() can end it too: a daemon thread dies with the supervisor, its child would not."""
        if self.stop_event.is_set():
            return subprocess.CompletedProcess(cmd, 1, b"", b"demo stopping")
        return self._helpers.run(cmd, input=input, timeout=timeout)

    def holdfast(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return self.helper([*HOLDFAST, *args], input=input)

    # -- pieces ------------------------------------------------------------------------------

    def start_rtsp(self) -> bool:
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            self.say(
                f"skip cameras: {SYSTEM_PYTHON} missing (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)"
            )
            return False
        c = self.spawn(
            "rtsp-server",
            [
                SYSTEM_PYTHON,
                str(RTSP_SERVER),
                str(self.rtsp_port),
                "--mount",
                "/office-1",
                "--mount",
                "/garage-1",
                "--width",
                "1280",
                "--height",
                "720",
                "--pattern",
                "ball",
                "--bitrate",
                "1000",
            ],
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if c.proc.poll() is not None:
                self.say(f"skip cameras: the RTSP test server exited (see {self.dir}/logs/rtsp-server.log)")
                return False
            try:
                socket.create_connection(("127.0.0.1", self.rtsp_port), timeout=0.2).close()
                self.say(f"rtsp: rtsp://127.0.0.1:{self.rtsp_port}/office-1 and /garage-1")
                return True
            except OSError:
                time.sleep(0.1)
        self.say("skip cameras: the RTSP test server did not open its port")
        return False

    def start_pulse(self) -> bool:
        for tool in ("pulseaudio", "pactl", "paplay", "espeak-ng"):
            if shutil.which(tool) is None:
                self.say(
                    f"skip calls: {tool} missing (apt-get install pulseaudio pulseaudio-utils espeak-ng)"
                )
                return False
        c = self.spawn(
            "pulseaudio",
            [
                "pulseaudio",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "-n",
                "--use-pid-file=no",
                "--load=module-null-sink sink_name=vsink",
                "--load=module-native-protocol-unix",
            ],
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and c.proc.poll() is None:
            if (
                subprocess.run(
                    ["pactl", "set-default-source", "vsink.monitor"], env=self.env, capture_output=True
                ).returncode
                == 0
            ):
                return True
            time.sleep(0.2)
        self.say("skip calls: PulseAudio did not start (see logs/pulseaudio.log)")
        return False

    def call_loop(self, line: str) -> None:
        """A call every ~20 s: start, 8 s of espeak-ng speech into the null sink, stop."""
        n = 0
        wav = self.dir / "run" / "call.wav"
        self.helper(
            ["espeak-ng", "-w", str(wav), "Hello, this is Holdfast customer service. Your call is recorded."]
        )
        self.stop_event.wait(8)  # let the recorder open its device
        while not self.stop_event.is_set():
            n += 1
            r = self.holdfast(
                "call",
                "start",
                "--line",
                line,
                "--agent",
                "Demo Agent",
                "--direction",
                "in",
                "--remote",
                f"+35840000{n:04d}",
            )
            if r.returncode == 0:
                self.helper(["paplay", "--device=vsink", str(wav)], timeout=60)
                self.stop_event.wait(2)
                self.holdfast("call", "stop", "--line", line)
            self.stop_event.wait(12)

    def purge_loop(self, interval: float, first: list[Path] | None = None) -> None:
        """Purge every `interval` s; first as soon as ingest has indexed the imported history."""
        if first:
            deadline = time.monotonic() + 90
            while any(p.exists() for p in first) and time.monotonic() < deadline:
                if self.stop_event.wait(0.5):
                    return
            r = self.holdfast("purge")
            if r.returncode == 0:
                self.say(f"first purge: {r.stdout.decode(errors='replace').strip()}")
            else:
                self.say(f"purge: {r.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
        while not self.stop_event.wait(interval):
            r = self.holdfast("purge")
            if r.returncode != 0:
                self.say(f"purge: {r.stderr.decode(errors='replace').strip().splitlines()[-1:]}")

    def add_user(self, name: str, role: str, cfg: Any) -> str | None:
        """A demo account with a fresh generated password (printed with the URL).

        Only `security` is bound to sites (vault.people.users refuses sites on other roles). On a rerun
        in the same --dir the account exists: its password is reset to a new one here, in the
        index, because there is no `holdfast users passwd` command to do it."""
        from sqlalchemy import select

        from vault.index.schema import User
        from vault.people.users import Actor, UserError, add_user, hash_password
        from vault.vault import Vault

        pw = secrets.token_urlsafe(12)
        sites = [cfg.sites[0].id] if role == "security" else []
        try:
            with Vault(cfg) as v:
                v.migrate()
                with v.sessions.begin() as s:
                    user = s.scalar(select(User).where(User.name == name))
                    if user is None:
                        add_user(
                            s,
                            name,
                            role,
                            sites,
                            pw,
                            v.clock(),
                            access_log=v.access_log,
                            by=Actor("holdfast-demo", "system"),
                        )
                    else:
                        user.password_hash = hash_password(pw)
                        user.failed_logins = 0
                        user.locked_until = None
        except (UserError, OSError) as e:
            self.say(f"users: could not create {name}: {e}")
            return None
        return pw

    def import_history(self, cfg: Any, kept: int = 3, purged: int = 5) -> list[Path]:
        """Back-dated footage of the first camera, a day past its retention limit, sealed into the
        spool; an incident (with its legal hold) covers the last `kept` segments. Returns the
        spool files, gone once ingest has indexed them."""
        from datetime import UTC, datetime, timedelta

        from vault.index.schema import Incident
        from vault.retention import holds
        from vault.store.spool import SpoolSegment
        from vault.timeutil import iso
        from vault.vault import Vault

        if not cfg.cameras or shutil.which("ffmpeg") is None:
            self.say("skip history: no camera in the config or ffmpeg missing")
            return []
        cam = cfg.cameras[0]
        cls = cfg.retention[cam.retention]
        days = cls.days if cls.days is not None else 31 * (cls.months or 1)
        seconds = 10.0
        start = (datetime.now(UTC) - timedelta(days=days + 1)).replace(second=0, microsecond=0)
        clip = self.dir / "run" / "history.mp4"
        made = self.helper(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
            + ["-i", f"testsrc2=size=640x360:rate=25:duration={seconds}", "-c:v", "libx264"]
            + ["-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-bf", "0"]
            + ["-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", str(clip)]
        )
        if made.returncode != 0:
            self.say(
                f"skip history: ffmpeg could not make the clip: {made.stderr.decode(errors='replace')[-200:]}"
            )
            return []
        data = clip.read_bytes()
        paths: list[Path] = []
        held_from = start + timedelta(seconds=seconds * purged)
        held_to = start + timedelta(seconds=seconds * (purged + kept))
        with Vault(cfg) as v:
            v.migrate()
            for i in range(purged + kept):
                t = start + timedelta(seconds=seconds * i)
                meta = {"source": cam.id, "site": cam.site, "kind": "video", "start": iso(t)}
                seg = SpoolSegment(cfg.paths.spool, v.seal_public, {**meta, "imported_from": "demo history"})
                seg.write(data)
                path, _ = seg.close(
                    {"end": iso(t + timedelta(seconds=seconds)), "duration": seconds, "end_reason": "import"}
                )
                paths.append(Path(path))
            now = v.clock()
            with v.sessions.begin() as s:
                inc = Incident(
                    site=cam.site,
                    cameras=[cam.id],
                    start=held_from,
                    end=held_to,
                    description="Demo: window broken at the service desk (footage kept for the police)",
                    state="open",
                    opened_by="security",
                    opened_at=now,
                    notes=[],
                )
                s.add(inc)
                s.flush()
                inc.hold_id = holds.add_hold(
                    s,
                    v.access_log,
                    actor="security",
                    role="security",
                    reason=f"incident:{inc.id}: {inc.description}",
                    now=now,
                    sources=[cam.id],
                    start=held_from,
                    end=held_to,
                    incident=str(inc.id),
                    known_sources={c.id for c in cfg.cameras},
                ).id
                incident_id = inc.id
        self.say(
            f"history: {purged + kept} segments of {cam.id} from {iso(start)}, past its {cls.describe()} "
            f"limit: the first purge removes what no hold keeps; incident {incident_id} holds "
            f"{iso(held_from)}–{iso(held_to)} past the deadline"
        )
        return paths

    def _thread(self, target: Any, *args: Any) -> None:
        th = threading.Thread(target=target, args=args, daemon=True)
        th.start()
        self._threads.append(th)

    # -- run / stop -----------------------------------------------------------------------------

    def run(self, duration: float | None = None) -> int:
        cfg_path = self.prepare()
        import config as config_pkg

        cfg = config_pkg.load(cfg_path)
        self.say(f"holdfast demo in {self.dir} (logs in {self.dir}/logs)")
        history = self.import_history(cfg)  # before ingest starts: one process migrates the index
        self.spawn("ingest", [*HOLDFAST, "ingest"])
        if self.start_rtsp():
            for cam in cfg.cameras:
                self.spawn(f"recorder-{cam.id}", [*HOLDFAST, "record", "camera", cam.id])
        if cfg.lines and self.start_pulse():
            line = cfg.lines[0].id
            self.spawn(f"calls-{line}", [*HOLDFAST, "record", "calls", line])
            self._thread(self.call_loop, line)
        self._thread(self.purge_loop, float(cfg.purge.interval_seconds), history)
        creds = {
            u: self.add_user(u, r, cfg)
            for u, r in (("security", "security"), ("auditor", "auditor"), ("dpo", "dpo"))
        }
        self.spawn("api", [*HOLDFAST, "serve", "--port", str(self.api_port)])
        self.say(f"open http://127.0.0.1:{self.api_port}")
        for user, pw in creds.items():
            if pw:
                self.say(f"  user {user}  password {pw}")
        self.say("running; Ctrl-C stops everything")
        old = {s: signal.signal(s, lambda *_: self.stop_event.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            deadline = None if duration is None else time.monotonic() + duration
            while not self.stop_event.wait(1.0):
                if deadline is not None and time.monotonic() > deadline:
                    break
                for c in self.children:
                    if c.proc.poll() is not None and not getattr(c, "reported", False):
                        self.say(f"{c.name} exited with {c.proc.returncode} (see logs/{c.name}.log)")
                        c.reported = True  # type: ignore[attr-defined]
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)
            self.clear_scratch(cfg.paths.scratch, cfg.api.export_scratch)
        return 0

    def clear_scratch(self, *dirs: Path | None) -> None:
        """Remove the demo's tmpfs scratch once every child is gone: what a recorder or an export
        left there is plaintext in memory, and nothing of a stopped demo needs it. A box's own
        scratch is systemd's (`RuntimeDirectory=`, removed when the unit stops)."""
        for d in dirs:
            # Only the shape `holdfast init` gives the demo (/dev/shm/holdfast-<hash of its
            # directory>): a scratch edited to point at a shared directory is left alone.
            if (
                d is not None
                and d.parent == Path("/dev/shm")
                and d.name.startswith("holdfast-")
                and d.exists()
            ):
                shutil.rmtree(d, ignore_errors=True)
                self.say(f"removed scratch {d}")

    def stop(self) -> None:
        """Stop children one by one in reverse start order, each group SIGTERM then SIGKILL.

        One at a time, not all at once: a consumer must stop before what it reads from (the call
        recorder before PulseAudio, recorders before the RTSP server) or it dies on a read error
        instead of sealing its last segment, and ingest (started first) goes last so it indexes
        what the recorders closed on the way out."""
        self.stop_event.set()
        self.say("stopping...")
        self._helpers.close()  # no helper starts after this
        self._helpers.kill_all()
        for th in self._threads:
            th.join(timeout=5)
        deadline = time.monotonic() + STOP_GRACE * 2
        for c in reversed(self.children):
            if c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGTERM)
                try:
                    c.proc.wait(timeout=max(2.0, min(STOP_GRACE, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    self.say(f"{c.name} did not stop in time: killed")
            # Whatever is left in the group (ffmpeg under a recorder, paplay...) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.proc.pid, signal.SIGKILL)
            c.proc.wait()
            c.log.close()
        self.say("stopped")
