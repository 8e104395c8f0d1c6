"""A throwaway Debian box for tests: systemd booted as PID 1 of a private pid+mount namespace.

Set up as docs/systemd.md ("The boot test") describes, so that nothing on the host changes:
overlays (upper dirs on a tmpfs) over /etc, /var/lib, /var/log, /var/cache, /opt and /root;
tmpfs over /tmp, /run and /var/tmp (without them systemd-tmpfiles at boot wipes the host's /tmp);
a private /dev; /sys and /proc/sys read-only; units that act on the shared kernel masked; the
host's enabled units left out; its own cgroup subtree. The network namespace is shared, so
units reach servers on the host's 127.0.0.1. SIGKILL to the namespace's PID 1 ends all of it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import secrets
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

from tests.support.wait import wait_for

SYSTEMD = "/lib/systemd/systemd"
BOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Where the checkout is bind-mounted (read-only) inside the box: outside every tmpfs'd path.
SRC = "/opt/holdfast-src"
CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))

#: Units that would act on the kernel or hardware every namespace shares (modules, sysctls,
#: binfmt, device nodes, pstore, disks, the clock, audit): masked inside the box.
MASKED = (
    "systemd-modules-load.service",
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-tmpfiles-setup-dev.service",
    "kmod-static-nodes.service",
    "systemd-pstore.service",
    "systemd-repart.service",
    "systemd-pcrphase.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-remount-fs.service",
    "systemd-timesyncd.service",
    "systemd-journald-audit.socket",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "systemd-ask-password-console.path",
    "lvm2-monitor.service",
)

PID1_SCRIPT = r"""#!/bin/bash
# PID 1 of the new pid+mount namespace: make the box, then exec systemd. Every step before the
# tmpfs over /tmp and /run is what keeps systemd-tmpfiles off the host's files.
set -euo pipefail
STATE=$1 CHECKOUT=$2 CG=$3 MASKED=$4
mount --make-rprivate /
for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
  mkdir -p "$h/$CG"; echo $$ > "$h/$CG/cgroup.procs"
done
mount -t tmpfs -o mode=0700 holdfast-box "$STATE"
for d in etc var/lib var/log var/cache opt root; do
  n=${d//\//-}
  mkdir -p "$STATE/$n/upper" "$STATE/$n/work"
  mount -t overlay "holdfast-$n" -o "lowerdir=/$d,upperdir=$STATE/$n/upper,workdir=$STATE/$n/work" "/$d"
done
mkdir -p /opt/holdfast-src
mount --bind "$CHECKOUT" /opt/holdfast-src
mount -o remount,bind,ro /opt/holdfast-src
mount -t tmpfs -o mode=1777,nosuid,nodev holdfast-tmp /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev holdfast-var-tmp /var/tmp
mount -t tmpfs -o mode=0755,nosuid,nodev holdfast-run /run
mount -t tmpfs -o mode=0755,nosuid holdfast-dev /dev
mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9; mknod -m 666 /dev/tty c 5 0
mkdir /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev holdfast-shm /dev/shm
ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
mount -o remount,bind,ro /sys
mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys
if [ -e /proc/sysrq-trigger ]; then
  mount --bind /proc/sysrq-trigger /proc/sysrq-trigger; mount -o remount,bind,ro /proc/sysrq-trigger
fi
rm -f /etc/systemd/system/*.wants/*
for u in $MASKED; do ln -sf /dev/null "/etc/systemd/system/$u"; done
exec env -i container=holdfast-test PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd --system --unit=basic.target
"""


def _die_with_parent() -> None:
    """unshare gets SIGKILL if the test process dies; --kill-child passes it to PID 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class BoxError(AssertionError):
    pass


class Box:
    """One booted box; `run` executes a command inside (its mount and pid namespace)."""

    def __init__(self, workdir: Path, checkout: Path) -> None:
        self.workdir = workdir
        self.checkout = checkout
        self.cgroup = f"holdfast-boot-{os.getpid()}-{secrets.token_hex(4)}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self._log: IO[bytes] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def boot(self, timeout: float = 120) -> Box:
        state = self.workdir / "state"
        state.mkdir(parents=True)
        script = self.workdir / "pid1.sh"
        script.write_text(PID1_SCRIPT)
        script.chmod(0o700)
        self._log = (self.workdir / "boot.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "unshare",
                "--fork",
                "--pid",
                "--mount",
                "--mount-proc",
                "--uts",
                "--ipc",
                "--kill-child=SIGKILL",
                str(script),
                str(state),
                str(self.checkout),
                self.cgroup,
                " ".join(MASKED),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at this point
        )
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")

        def pid1() -> int:
            try:
                kids = children.read_text().split()
                if kids and Path(f"/proc/{kids[0]}/comm").read_text().strip() == "systemd":
                    return int(kids[0])
            except OSError:
                pass
            return 0

        if not wait_for(lambda: pid1() or self.proc.poll() is not None, 30):  # type: ignore[union-attr]
            raise BoxError(f"systemd did not start: {self.boot_log()}")
        self.pid = pid1()
        if not self.pid:
            raise BoxError(f"the namespace's PID 1 exited: {self.boot_log()}")

        def booted() -> bool:
            p = self.run(["systemctl", "is-system-running"], check=False, timeout=30)
            return p.stdout.strip() in ("running", "degraded")

        if not wait_for(booted, timeout, step=0.5):
            state_now = self.run(["systemctl", "is-system-running"], check=False).stdout
            raise BoxError(f"systemd did not reach running ({state_now.strip()}): {self.boot_log()}")
        return self

    def boot_log(self) -> str:
        return (self.workdir / "boot.log").read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL to PID 1 ends every process of the pid namespace; then its cgroups go."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()
        for root in CGROUP_ROOTS:
            top = root / self.cgroup
            if not top.is_dir():
                continue

            def empty(top: Path = top) -> bool:
                return all(not (Path(d) / "cgroup.procs").read_text().strip() for d, _, _ in os.walk(top))

            wait_for(empty, 30)
            for d, _, _ in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
                with contextlib.suppress(OSError):
                    os.rmdir(d)

    # -- inside the box -------------------------------------------------------------------------

    def run(
        self,
        cmd: list[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        cwd: str = "/",
    ) -> subprocess.CompletedProcess[str]:
        """`cmd` in the box (its mounts and PIDs), with a clean environment (the box's PATH)."""
        environment = {"PATH": BOX_PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
        p = subprocess.run(
            [
                "nsenter",
                "-t",
                str(self.pid),
                "-m",
                "-p",
                "-u",
                "-i",
                "--",
                "env",
                "-i",
                *(f"{k}={v}" for k, v in environment.items()),
                "sh",
                "-c",
                'cd "$0" && exec "$@"',
                cwd,
                *cmd,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise BoxError(f"{' '.join(cmd)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def read(self, path: str) -> str:
        return self.run(["cat", path]).stdout

    def write(self, path: str, text: str) -> None:
        self.run(["sh", "-c", 'mkdir -p "$(dirname "$0")" && cat > "$0"', path], input=text)

    def journal(self, unit: str) -> str:
        return self.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit], check=False).stdout

    def sql(self, query: str) -> list[list[Any]]:
        """A read-only query of the box's index, as the holdfast user (never root-owned WAL files)."""
        code = (
            "import json, sqlite3, sys\n"
            "c = sqlite3.connect('file:/var/lib/holdfast/db/holdfast.db?mode=ro', uri=True, timeout=30)\n"
            "print(json.dumps(c.execute(sys.argv[1]).fetchall()))\n"
        )
        p = self.run(["runuser", "-u", "holdfast", "--", "/opt/holdfast/.venv/bin/python", "-c", code, query])
        return json.loads(p.stdout)

    def main_pid(self, unit: str) -> int:
        return int(self.show(unit, "MainPID")["MainPID"])


_SPAN = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


def timespan(text: str) -> float:
    """systemd's time span (`30s`, `1min 30s`, `500ms`) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|min|h)", text)
    if not parts:
        raise ValueError(f"not a systemd time span: {text!r}")
    return sum(float(n) * _SPAN[u] for n, u in parts)
