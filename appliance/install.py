"""`holdfast install` / `uninstall`: put the appliance on a Debian box, or into a staging root.

What install does, in order (every step idempotent; a rerun keeps config, keys and data):

1. the `holdfast` system user (`useradd --system`), unless it exists;
2. directories with owners and modes (see docs/systemd.md, "Layout on the box");
3. keys (`init_keys`, only when the key dir has none: never overwritten);
4. `/etc/holdfast/holdfast.toml` from the example with the box's paths (kept if present);
5. the index, migrated to head;
6. units into `/etc/systemd/system` (ExecStart pointing at this installation's `holdfast`),
   tmpfiles into `/etc/tmpfiles.d`, enabled with `systemctl enable` (symlinks: works offline);
   started only when systemd is running.

`--root DIR` stages all of it under DIR (like DESTDIR): the config names the box's real paths,
files are written under DIR. Under `--root` no user is created (it would change this machine's
/etc/passwd): files get the invoking user's owner, and the report says "simulated".
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from appliance import units
from config.load import render_example
from vault.errors import HoldfastError
from vault.sealed import keys

USER = "holdfast"
ETC = Path("/etc/holdfast")
STATE = Path("/var/lib/holdfast")
CONFIG = ETC / "holdfast.toml"
SYSTEMD_DIR = Path("/etc/systemd/system")
TMPFILES_DIR = Path("/etc/tmpfiles.d")
SCRATCH = Path("/run/holdfast")
PBX_DIR = Path("/run/holdfast-pbx")
# Exports are built in the API unit's own tmpfs (TemporaryFileSystem= in holdfast-api.service):
# not the /run that holds the PBX directory, so an export cannot fill it and drop PBX recordings.
EXPORT_SCRATCH = Path("/run/holdfast-export/exports")

#: (path, mode, owned by the holdfast user?) for every directory install makes.
DIRECTORIES: list[tuple[Path, int, bool]] = [
    (ETC, 0o750, False),
    (STATE, 0o750, True),
    (STATE / "spool", 0o750, True),
    (STATE / "store", 0o750, True),
    (STATE / "keys", 0o700, True),
    (STATE / "db", 0o750, True),
]

#: Units enabled on every box; per-camera / per-line instances are added from the config.
FIXED_UNITS = ["holdfast-ingest.service", "holdfast-api.service", "holdfast-purge.timer"]


class InstallError(HoldfastError):
    pass


def systemd_running() -> bool:
    """sd_booted(): systemd is PID 1 exactly when /run/systemd/system exists."""
    return Path("/run/systemd/system").is_dir()


def default_bin() -> Path:
    """The `holdfast` executable of the installation running this command (its venv's bin/)."""
    return Path(sys.prefix) / "bin" / "holdfast"


@dataclass
class Installer:
    root: Path = Path("/")
    holdfast_bin: Path = field(default_factory=default_bin)
    unit_dir: Path = units.UNIT_DIR
    report: list[str] = field(default_factory=list)

    @property
    def staged(self) -> bool:
        return self.root.resolve() != Path("/")

    def at(self, p: Path) -> Path:
        """Where a box path lives under the install root."""
        return self.root / p.relative_to("/")

    def say(self, msg: str) -> None:
        self.report.append(msg)

    # -- 1. user -------------------------------------------------------------------------

    def owner(self) -> tuple[int, int]:
        if self.staged:
            return os.getuid(), os.getgid()
        pw = pwd.getpwnam(USER)
        return pw.pw_uid, pw.pw_gid

    def ensure_user(self) -> None:
        if self.staged:
            self.say(
                f"user: simulated under --root (would run: useradd --system {USER}); files owned by uid {os.getuid()}"
            )
            return
        try:
            pwd.getpwnam(USER)
            self.say(f"user: {USER} exists")
            return
        except KeyError:
            pass
        if os.geteuid() != 0:
            raise InstallError("creating the holdfast system user needs root: run `sudo holdfast install`")
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                str(STATE),
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "Holdfast appliance",
                USER,
            ],
            check=True,
        )
        # The call recorder opens /dev/snd; the audio group grants it (harmless when absent).
        subprocess.run(["usermod", "-a", "-G", "audio", USER], check=False, capture_output=True)
        self.say(f"user: created system user {USER}")

    # -- 2. directories --------------------------------------------------------------------

    def ensure_dirs(self) -> None:
        uid, gid = self.owner()
        for path, mode, owned in DIRECTORIES:
            p = self.at(path)
            p.mkdir(parents=True, exist_ok=True)
            os.chmod(p, mode)
            if owned:
                os.chown(p, uid, gid)
            else:
                os.chown(p, os.getuid() if self.staged else 0, gid)
            self.say(f"dir: {path} {mode:04o}")

    # -- 3. keys -----------------------------------------------------------------------------

    def ensure_keys(self) -> None:
        kdir = self.at(STATE / "keys")
        if any(kdir.glob("seal*.key")) or any(kdir.glob("sign*.key")):
            self.say(f"keys: kept the existing keys in {STATE / 'keys'}")
        else:
            keys.init_keys(kdir)
            self.say(f"keys: created seal and sign key pairs in {STATE / 'keys'}")
        uid, gid = self.owner()
        for f in kdir.iterdir():
            os.chown(f, uid, gid)

    # -- 4. config ----------------------------------------------------------------------------

    def render_config(self) -> str:
        return render_example(
            spool=STATE / "spool",
            store=STATE / "store",
            scratch=SCRATCH,
            keys=STATE / "keys",
            pbx=PBX_DIR,
            database=STATE / "db" / "holdfast.db",
            export_scratch=EXPORT_SCRATCH,
        )

    def ensure_config(self) -> None:
        p = self.at(CONFIG)
        if p.exists():
            self.say(f"config: kept {CONFIG}")
        else:
            tmp = p.with_suffix(".toml.new")
            tmp.write_text(self.render_config(), "utf-8")
            os.replace(tmp, p)
            self.say(f"config: wrote {CONFIG} from the example; edit cameras, lines and sites")
        _, gid = self.owner()
        os.chown(p, os.getuid() if self.staged else 0, gid)
        os.chmod(p, 0o640)  # camera URLs may carry passwords

    # -- 5. index -----------------------------------------------------------------------------

    def ensure_index(self) -> None:
        from vault.index.db import make_engine, migrate

        db = self.at(STATE / "db" / "holdfast.db")
        engine = make_engine(f"sqlite:///{db}")
        try:
            migrate(engine)
        finally:
            engine.dispose()
        uid, gid = self.owner()
        for f in db.parent.iterdir():
            os.chown(f, uid, gid)
            os.chmod(f, 0o640)
        self.say(f"index: {STATE / 'db' / 'holdfast.db'} migrated to head")

    # -- 6. units -----------------------------------------------------------------------------

    def unit_names_to_enable(self) -> list[str]:
        import config as config_pkg

        present = {p.name for p in units.unit_files(self.unit_dir)}
        names = [u for u in FIXED_UNITS if u in present]
        try:
            cfg = config_pkg.load(self.at(CONFIG))
        except Exception as e:  # noqa: BLE001 - a bad config must not stop the unit install
            self.say(f"units: config not loadable ({e}); no recorder instances enabled")
            return names
        wanted, other = units.recorder_units(cfg)
        names += [n for n in wanted if n.split("@")[0] + "@.service" in present]
        self._retire(other)
        if "holdfast-calls@.service" in present:
            names += [f"holdfast-calls@{ln.id}.service" for ln in cfg.lines]
        return names

    def _retire(self, names: list[str]) -> None:
        """Disable (and stop) recorder instances of the layout not configured, if enabled."""
        wants = self.at(SYSTEMD_DIR) / "multi-user.target.wants"
        enabled = [n for n in names if (wants / n).is_symlink()]
        if not enabled:
            return
        now = [] if self.staged or not systemd_running() else ["--now"]
        cmd = ["systemctl", *([f"--root={self.root}"] if self.staged else []), "disable", *now, *enabled]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise InstallError(f"`{' '.join(cmd)}` failed: {p.stderr.strip()}")
        self.say(f"disabled (other recorder layout): {' '.join(enabled)}")

    def install_units(self) -> None:
        sd = self.at(SYSTEMD_DIR)
        sd.mkdir(parents=True, exist_ok=True)
        for p in units.unit_files(self.unit_dir):
            text = units.rewrite_exec(p.read_text("utf-8"), str(self.holdfast_bin))
            (sd / p.name).write_text(text, "utf-8")
            os.chmod(sd / p.name, 0o644)
            self.say(f"unit: {SYSTEMD_DIR / p.name}")
        for p in sorted(self.unit_dir.glob("*.tmpfiles.conf")):
            td = self.at(TMPFILES_DIR)
            td.mkdir(parents=True, exist_ok=True)
            name = p.name.replace(".tmpfiles.conf", ".conf")
            shutil.copyfile(p, td / name)
            self.say(f"tmpfiles: {TMPFILES_DIR / name}")
        names = self.unit_names_to_enable()
        if not names:
            return
        cmd = ["systemctl", *([f"--root={self.root}"] if self.staged else []), "enable", *names]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise InstallError(f"`{' '.join(cmd)}` failed: {p.stderr.strip()}")
        self.say(f"enabled: {' '.join(names)}")
        if self.staged:
            self.say("start: skipped (staged under --root)")
        elif systemd_running():
            subprocess.run(["systemctl", "daemon-reload"], check=True)
            subprocess.run(["systemd-tmpfiles", "--create"], check=False)
            # --no-block: a recorder is READY only after its camera's first fragment; install must
            # not hang on a camera that is not connected yet. `holdfast doctor` shows the states.
            subprocess.run(["systemctl", "start", "--no-block", *names], check=False)
            self.say(f"started: {' '.join(names)} (not waiting: `holdfast doctor` shows their states)")
        else:
            self.say(
                "systemd is not running on this machine (no /run/systemd/system): units installed and "
                "enabled, not started; they start at the next boot"
            )

    def install(self) -> list[str]:
        if not self.holdfast_bin.exists():
            raise InstallError(
                f"{self.holdfast_bin} does not exist: install the package into a venv first "
                "(`make install` does: /opt/holdfast/.venv) or pass --bin"
            )
        self.ensure_user()
        self.ensure_dirs()
        self.ensure_keys()
        self.ensure_config()
        self.ensure_index()
        self.install_units()
        return self.report

    # -- uninstall -------------------------------------------------------------------------------

    def uninstall(self, purge_data: bool = False) -> list[str]:
        sd = self.at(SYSTEMD_DIR)
        installed = [p.name for p in units.unit_files(self.unit_dir) if (sd / p.name).exists()]
        if installed and not self.staged and systemd_running():
            # Templates are disabled by their instances' names (`disable --now holdfast-recorder@.service`
            # stops nothing); instances started but never enabled are stopped by the pattern.
            instances = sorted(
                {
                    link.name
                    for w in sd.glob("*.wants")
                    for link in w.iterdir()
                    if link.name.startswith("holdfast-")
                }
            )
            subprocess.run(["systemctl", "disable", "--now", *installed, *instances], check=False)
            subprocess.run(["systemctl", "stop", "holdfast-*"], check=False)
            subprocess.run(["systemctl", "reset-failed", "holdfast-*"], check=False, capture_output=True)
        for wants in sd.glob("*.wants"):
            for link in wants.iterdir():
                target = os.readlink(link) if link.is_symlink() else ""
                if link.name.startswith("holdfast-") or "holdfast-" in target:
                    link.unlink()
                    self.say(f"disabled: {link.name}")
        for name in installed:
            (sd / name).unlink()
            self.say(f"removed unit: {SYSTEMD_DIR / name}")
        for p in sorted(self.unit_dir.glob("*.tmpfiles.conf")):
            (self.at(TMPFILES_DIR) / p.name.replace(".tmpfiles.conf", ".conf")).unlink(missing_ok=True)
        if not self.staged and systemd_running():
            subprocess.run(["systemctl", "daemon-reload"], check=False)
        if not purge_data:
            self.say(
                f"kept: {ETC} and {STATE} (config, keys, index and recordings); --purge-data removes them"
            )
            return self.report
        for d in (STATE, ETC):
            shutil.rmtree(self.at(d), ignore_errors=True)
            self.say(f"purged: {d}")
        if not self.staged:
            subprocess.run(["userdel", USER], check=False, capture_output=True)
            self.say(f"removed user {USER}")
        return self.report
