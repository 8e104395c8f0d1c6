"""A private single-node Ceph (one mon, one memstore OSD, one radosgw) on 127.0.0.1: real S3.

Debian's ceph-mon, ceph-osd and radosgw, every file of the cluster under one temporary
directory, auth off (the daemons listen on 127.0.0.1 only), pools of size 1. Started once per
test session (about 3 s) and stopped by pid: rgw, then the OSD, then the mon.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.appliance import Appliance
from tests.support.rtsp import free_port
from tests.support.wait import wait_for

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")


def available() -> tuple[bool, str]:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return False, (
            f"Ceph is not installed (missing {', '.join(missing)}); `make test` installs "
            "ceph-mon ceph-osd radosgw ceph-common"
        )
    return True, ""


@dataclass(frozen=True)
class S3User:
    access_key: str
    secret_key: str


class RgwCluster:
    """mon + OSD + rgw in `self.dir`; `endpoint` answers S3 once `start()` returns."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hf-rgw-", dir="/var/tmp"))
        self.conf = self.dir / "ceph.conf"
        self.mon_port = free_port()
        self.rgw_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.rgw_port}"
        self.region = "us-east-1"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.user: S3User | None = None

    def _write_conf(self, fsid: str) -> None:
        d = self.dir
        self.conf.write_text(
            f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{self.mon_port}]
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.asok
pid file = {d}/run/$cluster-$name.pid
log file = {d}/log/$cluster-$name.log
mon data = {d}/mon/$cluster-$id
osd data = {d}/osd/$cluster-$id
keyring = /dev/null
osd objectstore = memstore
memstore device bytes = 8589934592
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
paxos propose interval = 0.1
mon data avail warn = 1
mon data avail crit = 0

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{self.rgw_port}
rgw data = {d}/rgw
rgw thread pool size = 64
"""
        )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CEPH_CONF"] = str(self.conf)
        return env

    def _run(self, *cmd: str, timeout: float = 120) -> str:
        p = subprocess.run(
            [*cmd, "-c", str(self.conf)] if cmd[0] != "monmaptool" else list(cmd),
            env=self._env(),
            capture_output=True,
            timeout=timeout,
            text=True,
        )
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
        return p.stdout

    def _spawn(self, name: str, *cmd: str, env: dict[str, str] | None = None) -> None:
        log = open(self.dir / "log" / f"{name}.out", "wb")  # noqa: SIM115 - the process owns it
        self._procs[name] = subprocess.Popen(
            [*cmd, "-c", str(self.conf), "-f"],
            env=env or self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def _alive(self, name: str) -> None:
        p = self._procs[name]
        if p.poll() is not None:
            out = (self.dir / "log" / f"{name}.out").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with {p.returncode}: {out}")

    def start(self) -> RgwCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        d = self.dir
        for sub in ("run", "log", "mon", "osd", "rgw"):
            (d / sub).mkdir()
        fsid = str(uuid.uuid4())
        self._write_conf(fsid)
        monmap = d / "monmap"
        self._run(
            "monmaptool",
            "--create",
            "--fsid",
            fsid,
            "--addv",
            "a",
            f"[v2:127.0.0.1:{self.mon_port}]",
            str(monmap),
        )
        self._run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap))
        self._spawn("mon", "ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        osd_id = self._run("ceph", "osd", "new", osd_uuid, timeout=60).strip()
        (d / "osd" / f"ceph-{osd_id}").mkdir(exist_ok=True)
        self._run("ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        osd_env = self._env()
        # Debian's Ceph uses glibc malloc: without this the memstore OSD never returns memory.
        osd_env["MALLOC_MMAP_THRESHOLD_"] = "131072"
        self._spawn("osd", "ceph-osd", "-i", osd_id, env=osd_env)
        self._spawn("rgw", "radosgw", "-n", "client.rgw.a")

        def rgw_up() -> bool:
            for name in self._procs:
                self._alive(name)
            try:
                with socket.create_connection(("127.0.0.1", self.rgw_port), timeout=1):
                    return True
            except OSError:
                return False

        if not wait_for(rgw_up, 180, step=0.05):
            raise RuntimeError(f"radosgw did not listen on 127.0.0.1:{self.rgw_port} within 180 s")
        self.user = self.create_user("holdfast")

    def create_user(self, uid: str) -> S3User:
        ak = uuid.uuid4().hex[:20].upper()
        sk = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        self._run(
            "radosgw-admin",
            "user",
            "create",
            "--uid",
            uid,
            "--display-name",
            uid,
            "--access-key",
            ak,
            "--secret",
            sk,
        )
        return S3User(ak, sk)

    def stop(self) -> None:
        """TERM rgw, then the OSD, then the mon, each waited for (KILL after 20 s)."""
        for name in ("rgw", "osd", "mon"):
            p = self._procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def use_s3_store(app: Appliance, cluster: RgwCluster, bucket: str | None = None) -> Appliance:
    """Point an appliance at a fresh bucket (or `bucket`) on the RGW and run `holdfast store init`."""
    assert cluster.user is not None
    secret = app.dir / "s3.secret"
    if not secret.exists():
        secret.touch(mode=0o600)
        secret.write_text(cluster.user.secret_key + "\n")
    bucket = bucket or "hf-" + uuid.uuid4().hex[:16]
    text = app.config_path.read_text()
    text += (
        f'\n[store]\nkind = "s3"\nendpoint = "{cluster.endpoint}"\nbucket = "{bucket}"\n'
        f'region = "{cluster.region}"\naccess_key = "{cluster.user.access_key}"\n'
        f'secret_key_file = "{secret}"\n'
    )
    app.config_path.write_text(text)
    app.cli("store", "init")
    return app


def plain_client(cluster: RgwCluster) -> Any:
    """A boto3 client outside Holdfast's code: what anyone holding the bucket's keys could do."""
    import boto3
    from botocore.config import Config

    assert cluster.user is not None
    return boto3.client(
        "s3",
        endpoint_url=cluster.endpoint,
        region_name=cluster.region,
        aws_access_key_id=cluster.user.access_key,
        aws_secret_access_key=cluster.user.secret_key,
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


if __name__ == "__main__":
    t0 = time.monotonic()
    c = RgwCluster().start()
    print(f"rgw at {c.endpoint} in {time.monotonic() - t0:.1f} s; user {c.user}")
    c.stop()
