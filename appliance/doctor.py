"""`holdfast doctor`: is this box able to record, keep and purge? One row per check, with a fix.

Every check returns OK or FAIL (SKIP only when a check cannot apply here, e.g. no systemd as
PID 1, or an earlier failure it depends on). Checks use the real thing: the key files' stat,
PATH lookup, statvfs of the store, the kernel's clock state, an Alembic revision query, the
quick form of `holdfast check`, an RTSP DESCRIBE to every camera, `systemctl is-active`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass

import config as config_pkg
from appliance import rtsp_probe
from appliance.install import USER, systemd_running
from appliance.units import recorder_units
from config.load import ConfigError
from config.model import HoldfastConfig
from vault.retention.clocksync import clock_synchronised


@dataclass
class Check:
    name: str
    status: str  # OK | FAIL | SKIP
    detail: str
    fix: str = ""


def _ok(name: str, detail: str) -> Check:
    return Check(name, "OK", detail)


def _fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, "FAIL", detail, fix)


def clock_state() -> bool | None:
    """The kernel's NTP-synchronised flag, read as the purger's own clock guard reads it."""
    return clock_synchronised()


def check_config(path: str | None) -> tuple[Check, HoldfastConfig | None]:
    try:
        cfg = config_pkg.load(path)
    except ConfigError as e:
        where = f"{e.path}: " if e.path else ""
        return _fail(
            "config", f"{where}{'; '.join(e.errors)}", "fix the fields named, then `holdfast config check`"
        ), None
    return _ok(
        "config", f"{path or os.environ.get('HOLDFAST_CONFIG') or '/etc/holdfast/holdfast.toml'} is valid"
    ), cfg


def check_keys(cfg: HoldfastConfig) -> list[Check]:
    kdir = cfg.keys.dir
    out: list[Check] = []
    if not kdir.is_dir():
        return [_fail("keys", f"{kdir} does not exist", "run `holdfast keys init` (or `holdfast install`)")]
    try:
        expect_uid: int | None = pwd.getpwnam(USER).pw_uid if os.geteuid() == 0 else None
    except KeyError:
        expect_uid = None
    privates = sorted(kdir.glob("seal*.key")) + sorted(kdir.glob("sign*.key"))
    for name in ("seal.key", "seal.pub", "sign.key", "sign.pub"):
        if not (kdir / name).exists():
            out.append(_fail(f"keys {name}", f"{kdir / name} is missing", "run `holdfast keys init`"))
    dmode = stat.S_IMODE(kdir.stat().st_mode)
    if dmode & 0o077:
        out.append(_fail("keys dir", f"{kdir} has mode {dmode:04o}", f"chmod 700 {kdir}"))
    for p in privates:
        st = p.stat()
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            out.append(
                _fail(f"keys {p.name}", f"{p} has mode {mode:04o}: readable by others", f"chmod 600 {p}")
            )
        elif expect_uid is not None and st.st_uid != expect_uid:
            owner = pwd.getpwuid(st.st_uid).pw_name if st.st_uid >= 0 else st.st_uid
            out.append(
                _fail(f"keys {p.name}", f"{p} is owned by {owner}, not {USER}", f"chown {USER}:{USER} {p}")
            )
    if not out:
        out.append(_ok("keys", f"{len(privates)} private keys in {kdir}, all 0600"))
    return out


def check_tools() -> list[Check]:
    out = []
    for tool in ("ffmpeg", "ffprobe"):
        path = shutil.which(tool)
        out.append(
            _ok(tool, path)
            if path
            else _fail(
                tool, f"{tool} not found on PATH", "apt-get install ffmpeg (recorders and thumbnails need it)"
            )
        )
    return out


def check_disk(cfg: HoldfastConfig) -> list[Check]:
    out = []
    for what, path in (("store", cfg.paths.store), ("spool", cfg.paths.spool)):
        if not path.exists():
            out.append(
                _fail(f"disk {what}", f"{path} does not exist", "run `holdfast install` or `holdfast init`")
            )
            continue
        du = shutil.disk_usage(path)
        pct = 100.0 * du.used / du.total if du.total else 100.0
        hw = cfg.purge.high_water_percent
        detail = f"{path}: {pct:.1f}% used, {du.free / 1e9:.2f} GB free (high-water {hw:g}%)"
        if what == "store" and pct > hw:
            out.append(
                _fail(
                    "disk store",
                    detail,
                    "above the high-water mark the purger deletes the oldest unheld segments early "
                    "(disk-pressure): add disk, move [paths] store to a larger filesystem, or shorten "
                    "retention (with the privacy notice)",
                )
            )
        elif du.free < 1 << 30 and what == "spool" and du.total > 4 << 30:
            out.append(
                _fail("disk spool", detail, "free space on the spool filesystem (recorders spool here)")
            )
        else:
            out.append(_ok(f"disk {what}", detail))
    return out


def check_store(cfg: HoldfastConfig) -> list[Check]:
    """The S3 store: secret readable (and private), bucket reachable, versioned, with Object Lock."""
    if cfg.store.kind != "s3":
        return []
    from vault.errors import StoreError
    from vault.store.s3 import S3Store

    name = f"store s3 {cfg.store.bucket}"
    try:
        problems = S3Store(cfg.store).problems()
    except StoreError as e:
        return [
            _fail(
                name,
                str(e),
                "check [store] endpoint, access_key and secret_key_file (mode 0600), and that the S3 service runs",
            )
        ]
    if problems:
        return [_fail(name, "; ".join(problems), "run `holdfast store init`")]
    return [_ok(name, f"{cfg.store.endpoint}: bucket versioned, Object Lock enabled")]


def check_clock(cfg: HoldfastConfig, state: Callable[[], bool | None] = clock_state) -> Check:
    synced = state()
    if synced is True:
        return _ok("clock", "system clock is NTP-synchronised")
    if not cfg.purge.require_clock_sync:
        return _ok("clock", "not synchronised, and [purge] require_clock_sync = false (purges run anyway)")
    why = (
        "the kernel reports it is not synchronised"
        if synced is False
        else "cannot tell whether it is synchronised"
    )
    return _fail(
        "clock",
        f"{why}: the purger refuses to run (it fails closed)",
        "enable time sync: `apt-get install systemd-timesyncd` (or chrony) and `timedatectl set-ntp true`; "
        "a site without NTP sets [purge] require_clock_sync = false knowingly",
    )


def check_database(cfg: HoldfastConfig) -> Check:
    from vault.index.db import current_revision, head_revision, make_engine

    try:
        engine = make_engine(cfg.database.url)
    except Exception as e:  # noqa: BLE001 - any driver error is the operator's to see
        return _fail("database", f"{cfg.database.url}: {e}", "check [database] url")
    try:
        current = current_revision(engine)
        head = head_revision(engine)
    except Exception as e:  # noqa: BLE001
        return _fail(
            "database",
            f"cannot query {engine.url.render_as_string(hide_password=True)}: {type(e).__name__}: {e}",
            "check [database] url, that the server runs, and that the holdfast user may read it",
        )
    finally:
        engine.dispose()
    if current != head:
        return _fail(
            "database",
            f"schema at revision {current or 'none'}, code expects {head}",
            "run `holdfast ingest --once` (every daemon migrates to head at start) or restart holdfast-ingest",
        )
    return _ok("database", f"reachable, migrated to head ({head})")


def check_index(cfg: HoldfastConfig) -> Check:
    """`holdfast check`'s quick form: index, store, logs and spool agree (read-only)."""
    from vault.ops.check import run_check
    from vault.vault import Vault

    try:
        with Vault(cfg) as v:
            report = run_check(v)
    except Exception as e:  # noqa: BLE001 - any failure is the operator's to see
        return _fail("check", f"could not run: {type(e).__name__}: {e}", "run `holdfast check` for details")
    if report.ok:
        return _ok("check", f"index, store, logs and spool agree ({report.summary()})")
    kinds = sorted({p.kind for p in report.problems})
    return _fail(
        "check",
        f"{len(report.problems)} problem(s): {', '.join(kinds)}",
        "run `holdfast check` for each problem and what to do",
    )


def check_cameras(cfg: HoldfastConfig, timeout: float = 3.0) -> list[Check]:
    out = []
    for cam in cfg.cameras:
        if not cam.enabled:
            out.append(Check(f"camera {cam.id}", "SKIP", "disabled in the config"))
            continue
        p = rtsp_probe.describe(cam.url, timeout=timeout)
        if p.ok:
            out.append(_ok(f"camera {cam.id}", p.detail))
            continue
        fix = {
            "unreachable": "check the camera's power and network, and the host and port in its url",
            "credentials": "put the camera's user and password in its url (rtsp://user:pass@host/...)",
            "not-found": "check the stream path in the camera's url against the camera's settings",
        }.get(p.verdict, "check the camera's url")
        out.append(_fail(f"camera {cam.id}", f"{p.verdict}: {p.detail}", fix))
    return out


def unit_names(cfg: HoldfastConfig) -> list[str]:
    names = ["holdfast-ingest.service", "holdfast-api.service", "holdfast-purge.timer"]
    names += recorder_units(cfg)[0]
    names += [f"holdfast-calls@{ln.id}.service" for ln in cfg.lines]
    return names


def check_units(cfg: HoldfastConfig) -> list[Check]:
    if not systemd_running():
        return [Check("units", "SKIP", "systemd not running (not PID 1 here): unit states not checked")]
    out = []
    for name in unit_names(cfg):
        p = subprocess.run(["systemctl", "is-active", name], capture_output=True, text=True, timeout=10)
        state = p.stdout.strip() or "unknown"
        out.append(
            _ok(f"unit {name}", state)
            if state == "active"
            else _fail(f"unit {name}", state, f"systemctl enable --now {name}; journalctl -u {name} -n 50")
        )
    return out


def run_checks(config_path: str | None, camera_timeout: float = 3.0) -> list[Check]:
    c, cfg = check_config(config_path)
    checks = [c, *check_tools()]
    if cfg is None:
        checks.append(Check("rest", "SKIP", "config invalid: keys, disk, database, cameras not checked"))
        return checks
    checks += check_keys(cfg)
    checks += check_disk(cfg)
    checks += check_store(cfg)
    checks.append(check_clock(cfg))
    db = check_database(cfg)
    checks.append(db)
    if db.status == "OK":
        checks.append(check_index(cfg))
    else:
        checks.append(Check("check", "SKIP", "the database check failed: index and store not compared"))
    checks += check_cameras(cfg, timeout=camera_timeout)
    checks += check_units(cfg)
    return checks


def render(checks: list[Check]) -> str:
    w = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<{w}}  {c.detail}")
        if c.fix:
            lines.append(f"{'':<4}  {'':<{w}}  fix: {c.fix}")
    failed = sum(c.status == "FAIL" for c in checks)
    lines.append(f"{failed} failed, {sum(c.status == 'OK' for c in checks)} ok")
    return "\n".join(lines)


def as_json(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
