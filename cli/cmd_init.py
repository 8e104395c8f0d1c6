"""`holdfast init DIR`: a working appliance directory for a new site, a demo or a test."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import config as config_pkg
from cli import progress
from cli.common import CommandError
from config.load import render_example
from vault.sealed import keys
from vault.store.spool import ensure_spool
from vault.vault import Vault


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "init",
        help="make DIR/holdfast.toml (the example config, every path under DIR), keys, database, spool and store",
    )
    p.add_argument("dir", metavar="DIR", type=Path)
    p.set_defaults(func=run)


def render_config(directory: Path) -> str:
    """The example config with every path made absolute under `directory` (scratch on tmpfs)."""
    d = directory.resolve()
    scratch = Path("/dev/shm") / f"holdfast-{hashlib.sha256(str(d).encode()).hexdigest()[:12]}"
    return render_example(
        spool=d / "spool",
        store=d / "store",
        scratch=scratch,
        keys=d / "keys",
        pbx=d / "pbx",
        database=d / "db" / "holdfast.db",
    )


def private_database(db: Path) -> None:
    """The index holds password hashes, key envelopes and the logs: its directory 0700, the file
    0600 before SQLite first opens it (SQLite gives -wal and -shm the database file's mode)."""
    db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(db.parent, 0o700)  # mkdir's mode is filtered by the umask
    fd = os.open(db, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def run(args: argparse.Namespace) -> int:
    d: Path = args.dir
    cfg_path = d / "holdfast.toml"
    if cfg_path.exists():
        raise CommandError(f"{cfg_path} already exists; refusing to overwrite an appliance directory")
    d.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(render_config(d), "utf-8")
    cfg = config_pkg.load(cfg_path)
    keys.init_keys(cfg.keys.dir)
    ensure_spool(cfg.paths.spool)
    cfg.paths.store.mkdir(parents=True, exist_ok=True, mode=0o750)
    if cfg.pbx.dir is not None:
        cfg.pbx.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    private_database(d / "db" / "holdfast.db")
    with Vault(cfg) as v, progress.bar("migrate the index", None, "revisions") as update:
        v.migrate(update)
    print(f"initialised {d.resolve()}")
    print(f"  config: {cfg_path.resolve()}")
    print(f"  keys:   {cfg.keys.dir}")
    print(f"  use:    export HOLDFAST_CONFIG={cfg_path.resolve()}")
    return 0
