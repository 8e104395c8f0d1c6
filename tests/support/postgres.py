"""A private PostgreSQL cluster on 127.0.0.1 for tests (Debian's postgresql-15)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

from tests.support.rtsp import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def available() -> tuple[bool, str]:
    if not (PG_BIN / "initdb").exists():
        return False, "PostgreSQL 15 is not installed (make test installs postgresql-15)"
    return True, ""


class PostgresCluster:
    """initdb + pg_ctl in a temp dir, owned by the `postgres` user when we are root."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hf-pg-", dir="/var/tmp"))
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.port = free_port()
        self._as_root = os.geteuid() == 0

    def _run(self, *cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if self._as_root else list(cmd)
        subprocess.run(full, check=True, capture_output=True, timeout=60)

    def start(self) -> PostgresCluster:
        self.sock.mkdir()
        if self._as_root:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.sock, "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "app", "--auth=trust", "-E", "UTF8")
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.dir / "log"),
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off",
            "start",
        )
        return self

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=app dbname=postgres", autocommit=True
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://app@127.0.0.1:{self.port}/{name}"
