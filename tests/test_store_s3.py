"""The S3 store on a real Ceph RGW: Object Lock legal holds, versioned deletes, credentials, init."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from tests.support.appliance import Appliance, make_appliance
from tests.support.retention import Clock, make_segments, place_hold, release_hold, set_purge
from tests.support.rgw import RgwCluster, plain_client, use_s3_store
from vault.errors import StoreError
from vault.index.schema import Segment
from vault.retention.purge import Purger
from vault.store import legalholds, s3
from vault.vault import Vault

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def s3app(tmp_path: Path, rgw_cluster: RgwCluster) -> Appliance:
    app = use_s3_store(make_appliance(tmp_path / "site"), rgw_cluster)
    set_purge(app, require_clock_sync=False)
    return app


@pytest.fixture
def at_t0(s3app: Appliance) -> Iterator[tuple[Vault, Clock, str]]:
    """The S3 appliance's vault on a clock at T0, and its bucket."""
    bucket = s3app.cfg.store.bucket
    assert bucket is not None
    clock = Clock(T0)
    with Vault(s3app.cfg, clock=clock) as v:
        yield v, clock, bucket


def _rows(v: Vault) -> dict[str, Segment]:
    with v.sessions() as s:
        return {x.id: x for x in s.scalars(select(Segment))}


def _versions(client, bucket: str, key: str) -> list[str]:  # type: ignore[no-untyped-def]
    r = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [x["VersionId"] for x in r.get("Versions", []) + r.get("DeleteMarkers", []) if x["Key"] == key]


def _legal_hold(client, bucket: str, key: str, version: str) -> str:  # type: ignore[no-untyped-def]
    try:
        r = client.get_object_legal_hold(Bucket=bucket, Key=key, VersionId=version)
    except ClientError as e:
        if e.response["Error"]["Code"] in (
            "NoSuchObjectLockConfiguration",
            "ObjectLockConfigurationNotFoundError",
        ):
            return "OFF"
        raise
    return str(r["LegalHold"]["Status"])


def _curl_delete(cluster: RgwCluster, bucket: str, key: str, version: str) -> tuple[int, str]:
    """DELETE one version with curl's own SigV4: a client that shares no code with Holdfast."""
    assert cluster.user is not None
    p = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "DELETE",
            "--aws-sigv4",
            f"aws:amz:{cluster.region}:s3",
            "--user",
            f"{cluster.user.access_key}:{cluster.user.secret_key}",
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            f"{cluster.endpoint}/{bucket}/{key}?versionId={version}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body, _, code = p.stdout.rpartition("\n")
    return int(code), body


def test_held_version_cannot_be_deleted_in_the_bucket_and_purge_leaves_no_version(
    at_t0: tuple[Vault, Clock, str], rgw_cluster: RgwCluster
) -> None:
    v, clock, bucket = at_t0
    a, b = make_segments(v, "office-1", T0 - timedelta(minutes=5), 2)
    rows = _rows(v)
    client = plain_client(rgw_cluster)
    assert rows[a].storage_version and _versions(client, bucket, rows[a].storage_key) == [
        rows[a].storage_version
    ]
    assert _legal_hold(client, bucket, rows[a].storage_key, rows[a].storage_version) == "OFF"
    hid = place_hold(v, "fight", actor="guard", segment_ids=[a])
    # placing the hold set the object's legal hold; the other segment's stays off
    assert _legal_hold(client, bucket, rows[a].storage_key, rows[a].storage_version) == "ON"
    assert _legal_hold(client, bucket, rows[b].storage_key, rows[b].storage_version) == "OFF"
    # anyone with the bucket's keys: curl (403 AccessDenied), boto3 even with governance bypass
    code, body = _curl_delete(rgw_cluster, bucket, rows[a].storage_key, rows[a].storage_version)
    assert code == 403 and "AccessDenied" in body, (code, body)
    with pytest.raises(ClientError) as e:
        client.delete_object(
            Bucket=bucket,
            Key=rows[a].storage_key,
            VersionId=rows[a].storage_version,
            BypassGovernanceRetention=True,
        )
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert _versions(client, bucket, rows[a].storage_key) == [rows[a].storage_version]
    # a segment ingested later into a held range is written with its legal hold already on
    place_hold(v, "vandalism", actor="guard", sources=["garage-1"], start=T0, end=T0 + timedelta(hours=1))
    [c] = make_segments(v, "garage-1", T0 + timedelta(minutes=10), 1)
    rc = _rows(v)[c]
    assert rc.storage_version is not None
    assert _legal_hold(client, bucket, rc.storage_key, rc.storage_version) == "ON"
    # the deadline passes: the unheld one goes with every version; the held ones stay
    clock.advance(days=60)
    Purger(v).run()
    left = _rows(v)
    assert set(left) == {a, c}
    assert _versions(client, bucket, rows[b].storage_key) == []
    # release: legal hold off, then the purge removes every version of it too
    release_hold(v, hid, "case closed")
    assert _legal_hold(client, bucket, rows[a].storage_key, rows[a].storage_version) == "OFF"
    Purger(v).run()
    assert set(_rows(v)) == {c}
    assert _versions(client, bucket, rows[a].storage_key) == []


def test_drift_found_and_mended_and_purge_unlocks_a_stale_legal_hold(
    at_t0: tuple[Vault, Clock, str], rgw_cluster: RgwCluster
) -> None:
    v, clock, bucket = at_t0
    held, free, stale = make_segments(v, "office-1", T0 - timedelta(minutes=5), 3)
    place_hold(v, "x", actor="g", segment_ids=[held])
    rows = _rows(v)
    client = plain_client(rgw_cluster)
    assert legalholds.find_drift(v) == []
    # someone with the bucket's keys turns the held one's legal hold off and locks an unheld one
    client.put_object_legal_hold(
        Bucket=bucket,
        Key=rows[held].storage_key,
        VersionId=rows[held].storage_version,
        LegalHold={"Status": "OFF"},
    )
    client.put_object_legal_hold(
        Bucket=bucket,
        Key=rows[stale].storage_key,
        VersionId=rows[stale].storage_version,
        LegalHold={"Status": "ON"},
    )
    drift = {d.segment: d for d in legalholds.find_drift(v)}
    assert set(drift) == {held, stale}
    assert drift[held].held and not drift[held].legal_hold
    assert not drift[stale].held and drift[stale].legal_hold
    # the purger deletes only rows the index says are unheld: a stale legal hold is turned off first
    clock.advance(days=60)
    Purger(v).run()
    assert set(_rows(v)) == {held}
    assert _versions(client, bucket, rows[stale].storage_key) == []
    assert _versions(client, bucket, rows[free].storage_key) == []
    # the remaining drift (held, no legal hold) is mended
    [d] = legalholds.repair_drift(v)
    assert d.segment == held
    assert _legal_hold(client, bucket, rows[held].storage_key, rows[held].storage_version) == "ON"
    assert legalholds.find_drift(v) == []


def test_check_reports_legal_hold_drift_and_repair_holds_mends_it(
    s3app: Appliance, rgw_cluster: RgwCluster
) -> None:
    """`holdfast check` names a held segment whose object lost its legal hold; --repair-holds sets it."""
    v = Vault(s3app.cfg)
    bucket = s3app.cfg.store.bucket
    now = datetime.now(UTC)
    (held,) = make_segments(v, "office-1", now - timedelta(minutes=5), 1)
    place_hold(v, "x", actor="g", now=now, segment_ids=[held])
    row = _rows(v)[held]
    v.close()
    p = s3app.cli("check", "--json", check=False)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    plain_client(rgw_cluster).put_object_legal_hold(
        Bucket=bucket, Key=row.storage_key, VersionId=row.storage_version, LegalHold={"Status": "OFF"}
    )
    p = s3app.cli("check", "--json", check=False)
    assert p.returncode == 1, p.stderr.decode()
    assert p.stdout, p.stderr.decode()
    problems = json.loads(p.stdout)["problems"]
    assert [(x["kind"], x["segment"], x["path"]) for x in problems] == [
        ("legal_hold_drift", held, row.storage_key)
    ]
    assert held in s3app.cli("check", check=False).stdout.decode()
    p = s3app.cli("check", "--repair-holds", check=False)
    assert p.returncode == 0, p.stdout
    client = plain_client(rgw_cluster)
    assert _legal_hold(client, bucket, row.storage_key, row.storage_version) == "ON"


def test_cli_cat_show_and_multipart_and_ranged_reads(
    s3app: Appliance, rgw_cluster: RgwCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a lower multipart threshold (read at each upload) sends an 11 MB segment in three parts
    # (5 MiB is S3's smallest part)
    monkeypatch.setattr(s3, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(s3, "PART_SIZE", 5 * 1024 * 1024)
    payload = os.urandom(11 * 1024 * 1024 + 12345)
    v = Vault(s3app.cfg)
    [big] = make_segments(v, "office-1", T0, 1, payload=payload)
    [small] = make_segments(v, "office-1", T0 + timedelta(seconds=10), 1)
    shown = json.loads(s3app.cli("segments", "show", big, "--json").stdout)
    assert shown["storage_key"] == f"office-1/{T0:%Y/%m/%d}/{big}"
    head = plain_client(rgw_cluster).head_object(
        Bucket=s3app.cfg.store.bucket, Key=shown["storage_key"], VersionId=shown["storage_version"]
    )
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # three parts
    assert s3app.cli("segments", "cat", big).stdout == payload
    assert s3app.cli("segments", "cat", small).stdout == b"holdfast-test-media" * 8
    # a range in the middle costs three GETs (header, footer with trailer, its chunks), not 11 MB
    fetched: list[int] = []
    real = v.store.read_range

    def counting(key: str, offset: int, length: int, version_id: str | None = None) -> bytes:
        fetched.append(length)
        return real(key, offset, length, version_id)

    v.store.read_range = counting  # type: ignore[method-assign]
    with v.sessions() as s, v.open_segment(v.get_segment(s, big)) as r:
        assert r.read(2_000_000, 1000) == payload[2_000_000:2_001_000]
    assert len(fetched) == 3 and sum(fetched) <= 3 * s3.READ_AHEAD, fetched  # header, tail, chunks
    v.close()


def test_secret_key_file_refused_when_others_can_read_it_or_from_credentials_dir(
    s3app: Appliance, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = s3app.dir / "s3.secret"
    secret.chmod(0o644)
    p = s3app.cli("store", "init", check=False)
    assert p.returncode != 0 and b"readable by group or others" in p.stderr and b"chmod 600" in p.stderr
    doctor = json.loads(s3app.cli("doctor", "--json", check=False).stdout)
    [chk] = [c for c in doctor if c["name"].startswith("store s3")]
    assert chk["status"] == "FAIL" and "readable by group or others" in chk["detail"]
    # systemd's LoadCredential=: a private copy under $CREDENTIALS_DIRECTORY with the same name
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "s3.secret").write_text(secret.read_text())
    (creds / "s3.secret").chmod(0o400)
    secret.write_text("wrong\n")
    proc = s3app.popen(
        "store",
        "init",
        env={**s3app.env(), "CREDENTIALS_DIRECTORY": str(creds)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Object Lock" in out, err
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(StoreError, match="readable by group or others"):
        s3.read_secret(secret)


def test_store_init_creates_then_checks_and_refuses_a_bucket_without_object_lock(
    s3app: Appliance, rgw_cluster: RgwCluster
) -> None:
    out = s3app.cli("store", "init").stdout.decode()
    assert "exists with Object Lock and versioning Enabled" in out
    doctor = json.loads(s3app.cli("doctor", "--json", check=False).stdout)
    [chk] = [c for c in doctor if c["name"].startswith("store s3")]
    assert chk["status"] == "OK", chk
    # a plain bucket someone made by hand: no Object Lock, no versioning
    plain_client(rgw_cluster).create_bucket(Bucket="hf-plain-" + os.urandom(4).hex())
    name = plain_client(rgw_cluster).list_buckets()["Buckets"]
    plain = next(b["Name"] for b in name if b["Name"].startswith("hf-plain-"))
    text = s3app.config_path.read_text().replace(
        f'bucket = "{s3app.cfg.store.bucket}"', f'bucket = "{plain}"'
    )
    s3app.config_path.write_text(text)
    p = s3app.cli("store", "init", check=False)
    assert p.returncode == 2 and b"no Object Lock" in p.stderr and b"versioning off" in p.stderr
    doctor = json.loads(s3app.cli("doctor", "--json", check=False).stdout)
    [chk] = [c for c in doctor if c["name"].startswith("store s3")]
    assert chk["status"] == "FAIL" and "store init" in chk["fix"]


def test_store_config_keys_are_exactly_the_contract(tmp_path: Path) -> None:
    app = make_appliance(tmp_path / "site")
    base = app.config_path.read_text()
    app.config_path.write_text(base + '\n[store]\nkind = "s3"\nendpoint = "http://127.0.0.1:1"\n')
    p = app.cli("config", "check", check=False)
    assert p.returncode != 0 and b"needs bucket, access_key, secret_key_file" in p.stdout + p.stderr
    app.config_path.write_text(base + '\n[store]\nkind = "s3"\nbuckets = "x"\n')
    p = app.cli("config", "check", check=False)
    assert p.returncode != 0 and b"buckets" in p.stdout + p.stderr


def test_ingest_defers_while_the_store_is_unreachable(s3app: Appliance) -> None:
    from tests.support.rtsp import free_port

    v = Vault(s3app.cfg)
    endpoint = s3app.cfg.store.endpoint
    assert endpoint is not None
    text = s3app.config_path.read_text()
    s3app.config_path.write_text(text.replace(endpoint, f"http://127.0.0.1:{free_port()}"))
    from vault.store.spool import SpoolSegment

    seg = SpoolSegment(
        v.cfg.paths.spool,
        v.seal_public,
        {"source": "office-1", "kind": "video", "start": "2026-03-02T08:00:00Z"},
    )
    seg.write(b"x" * 1000)
    seg.close({"end": "2026-03-02T08:00:10Z"})
    out = s3app.cli("ingest", "--once").stdout
    assert b"indexed=0" in out and b"deferred=1" in out, out
    assert len(list(v.cfg.paths.spool.glob("*.seg"))) == 1
    s3app.config_path.write_text(text)
    assert b"indexed=1" in s3app.cli("ingest", "--once").stdout
    v.close()
