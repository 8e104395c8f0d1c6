"""`keys rotate`: old and new segments both open; once the old ones are purged the old private
key is destroyed and that is logged; a rotated log signing key verifies through its transition."""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.appliance import Appliance
from vault.index.schema import Segment
from vault.ledger import entries as tlog
from vault.ledger import merkle, verify
from vault.retention.purge import Purger
from vault.sealed import keyrotation, keys
from vault.timeutil import iso, utcnow
from vault.vault import Vault


def clip(appliance: Appliance, ffmpeg: str, name: str) -> Path:
    p = appliance.dir / name
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=5", "-t", "1", str(p)],
        check=True,
    )
    return p


def seal_clip(appliance: Appliance, ffmpeg: str, name: str, start: str) -> None:
    """`holdfast seal` a fresh one-second clip from office-1 starting at `start` into the spool."""
    appliance.cli("seal", "--source", "office-1", "--start", start, str(clip(appliance, ffmpeg, name)))


def test_rotate_then_a_real_purge_destroys_the_old_key_and_logs_it(
    appliance: Appliance, ffmpeg: str, caplog: pytest.LogCaptureFixture
) -> None:
    kdir = appliance.cfg.keys.dir
    old_kid = keys.key_id(keys.load_seal_public(kdir / "seal.pub")).hex()
    t0 = utcnow().replace(microsecond=0)
    # Old footage (10 days ago: 14-day office class, deadline in 4 days), sealed to the first key.
    seal_clip(appliance, ffmpeg, "a.mp4", iso(t0 - timedelta(days=10)))
    appliance.cli("ingest", "--once")
    out = appliance.cli("keys", "rotate", "--only", "seal").stdout.decode()
    assert f"seal-{old_kid}.key kept" in out
    new_kid = keys.key_id(keys.load_seal_public(kdir / "seal.pub")).hex()
    assert new_kid != old_kid and (kdir / f"seal-{old_kid}.key").exists()
    assert (kdir / f"seal-{old_kid}.key").stat().st_mode & 0o777 == 0o600
    # New footage (a minute ago: deadline in 14 days), sealed to the new key.
    seal_clip(appliance, ffmpeg, "b.mp4", iso(t0 - timedelta(minutes=1)))
    appliance.cli("ingest", "--once")

    with appliance.vault() as v, v.sessions() as s:
        segs = sorted(s.query(Segment).all(), key=lambda x: x.start)
        assert [x.key_id for x in segs] == [old_kid, new_kid]
        old_id = segs[0].id
        for seg in segs:  # both open and verify
            with v.open_segment(seg) as r:
                assert r.verify().chunks > 0

    # Old segment still stored: prune keeps the key.
    p = appliance.cli("keys", "prune")
    assert (kdir / f"seal-{old_kid}.key").exists() and "keys.kept" in p.stderr.decode()

    # A real purger pass five days on (past the old deadline, before the new one), on a clock
    # the test declares synchronised: it purges the old segment and then prunes its key.
    later = t0 + timedelta(days=5)
    caplog.set_level(logging.INFO, logger="holdfast.keys")
    with Vault(appliance.cfg, clock=lambda: later) as v:
        report = Purger(v, sync_check=lambda: True).run()
        assert report.purged["expired"] == 1 and report.keys_destroyed == [old_kid], report.as_dict()
        with v.sessions() as s:
            assert [x.id for x in s.query(Segment).all()] != [old_id]
            assert v.purge_log.has_entry(s, old_id)
            entries = [json.loads(e) for _seq, e in v.access_log.entries(s)]
            assert v.access_log.latest_checkpoint(s).size == len(entries)  # the entry is signed
    assert not (kdir / f"seal-{old_kid}.key").exists()
    destroyed = [e for e in entries if e["action"] == "key.destroyed"]
    assert len(destroyed) == 1 and destroyed[0]["details"]["key_id"] == old_kid, entries
    assert destroyed[0]["user"] == "holdfast-purge" and destroyed[0]["time"] == iso(later)
    # ...and the structured journal line (vault.ops.logsetup.event: message = event name, fields in kv).
    lines = [r for r in caplog.records if r.getMessage() == "keys.destroyed"]
    assert len(lines) == 1 and lines[0].kv["key"] == old_kid, caplog.text  # type: ignore[attr-defined]

    with appliance.vault() as v, v.sessions() as s:  # the new segment still opens
        seg = s.query(Segment).filter(Segment.key_id == new_kid).one()
        with v.open_segment(seg) as r:
            assert r.read(0, 8)
    # The access log with the destruction verifies offline.
    appliance.cli("audit", "export", str(appliance.dir / "export"))
    appliance.cli("audit", "verify", str(appliance.dir / "export"), "--pubkey", str(kdir / "sign.pub"))


def test_sign_rotation_signs_over_the_purge_logs_latest_checkpoint(appliance: Appliance, ffmpeg: str) -> None:
    """`keys rotate --only sign` re-signs the retention code's real latest checkpoint
    (`PurgeLog.latest_checkpoint(session)`) with the new key."""
    t0 = utcnow().replace(microsecond=0)
    seal_clip(appliance, ffmpeg, "a.mp4", iso(t0 - timedelta(days=20)))
    appliance.cli("ingest", "--once")
    with Vault(appliance.cfg, clock=lambda: t0 + timedelta(minutes=1)) as v:
        assert Purger(v, sync_check=lambda: True).run().purged["expired"] == 1
        with v.sessions() as s:
            latest = v.purge_log.latest_checkpoint(s)
    assert latest is not None and latest.size == 1
    root_pub = keys.load_sign_public(appliance.cfg.keys.dir / "sign.pub")
    out = appliance.cli("keys", "rotate", "--only", "sign").stdout.decode()
    assert "latest checkpoint signed over" in out
    (t,) = keyrotation.read_transitions(appliance.cfg.keys.dir)
    cp = tlog.Checkpoint.from_dict(t["checkpoint"])
    assert (cp.origin, cp.size, cp.root) == (latest.origin, latest.size, latest.root)
    chain = keyrotation.trusted_sign_keys(root_pub, [t])
    assert keys.key_id(chain[-1]).hex() == cp.key_id == t["new_key_id"]


def test_prune_keeps_a_key_a_spooled_segment_needs(appliance: Appliance, ffmpeg: str) -> None:
    kdir = appliance.cfg.keys.dir
    old_kid = keys.key_id(keys.load_seal_public(kdir / "seal.pub")).hex()
    seal_clip(appliance, ffmpeg, "a.mp4", "2026-01-01T08:00:00Z")
    appliance.cli("keys", "rotate", "--only", "seal")
    appliance.cli("keys", "prune")
    assert (kdir / f"seal-{old_kid}.key").exists()  # the spooled segment is sealed to it
    appliance.cli("ingest", "--once")  # and ingest can still verify it
    with appliance.vault() as v, v.sessions() as s:
        assert s.query(Segment).one().key_id == old_kid


def test_sign_rotation_signs_over_and_verifies_as_a_chain(tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    root_pub = keys.load_sign_public(tmp_path / "sign.pub")
    old = keys.load_sign_private(tmp_path / "sign.key")
    entries = [tlog.make_entry(0, None, {"n": 0})]
    for i in range(1, 4):
        entries.append(tlog.make_entry(i, merkle.leaf_hash(entries[-1]), {"n": i}))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    cp1 = tlog.sign_checkpoint(
        old, "holdfast purge log", 2, merkle.root([merkle.leaf_hash(e) for e in entries[:2]]), t0
    )
    rec = keyrotation.rotate_sign(tmp_path, cp1)
    new = keys.load_sign_private(tmp_path / "sign.key")
    assert keys.key_id(new.public_key()).hex() == rec["new_key_id"] != keys.key_id(old.public_key()).hex()
    assert (tmp_path / f"sign-{rec['old_key_id']}.pub").exists()
    cp2 = tlog.sign_checkpoint(
        new, "holdfast purge log", 4, merkle.root([merkle.leaf_hash(e) for e in entries]), t0.replace(hour=1)
    )
    chain = keyrotation.trusted_sign_keys(root_pub, keyrotation.read_transitions(tmp_path))
    assert len(chain) == 2
    assert verify.verify_log(entries, [cp1, cp2], chain).ok
    # The old key alone cannot vouch for cp2.
    assert not verify.verify_log(entries, [cp1, cp2], root_pub).ok
    # A forged transition (not signed by the trusted key) breaks the chain.
    rogue = Ed25519PrivateKey.generate()
    forged = dict(keyrotation.read_transitions(tmp_path)[0])
    forged["old_key_id"] = keys.key_id(rogue.public_key()).hex()
    with pytest.raises(keyrotation.TransitionError):
        keyrotation.trusted_sign_keys(root_pub, [forged])


def test_recorders_pick_up_the_new_public_key(tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    watched = keys.SealPublicFile(tmp_path / "seal.pub")
    before = keys.key_id(watched.current())
    _old, new = keyrotation.rotate_seal(tmp_path)
    assert keys.key_id(watched.current()).hex() == new != before.hex()


def test_audit_verify_across_a_sign_key_rotation(appliance: Appliance, tmp_path: Path) -> None:
    """An auditor holding the old or the new sign.pub verifies a log signed by both keys in turn;
    a forged hand-over fails the verify."""
    old_pub = tmp_path / "old-sign.pub"
    old_pub.write_bytes((appliance.cfg.keys.dir / "sign.pub").read_bytes())
    hold = (
        "hold",
        "add",
        "--source",
        "office-1",
        "--from",
        "2026-11-21T08:00:00Z",
        "--to",
        "2026-11-21T09:00:00Z",
        "--reason",
        "incident in the office",
    )
    appliance.cli(*hold, "--incident", "INC-1")
    appliance.cli("audit", "export", str(tmp_path / "before"))  # signs the head with the old key
    appliance.cli("keys", "rotate", "--only", "sign")
    appliance.cli(*hold, "--incident", "INC-2")  # signed with the new key from here on
    export = tmp_path / "after"
    appliance.cli("audit", "export", str(export))
    for anchor in (old_pub, appliance.cfg.keys.dir / "sign.pub"):
        out = appliance.cli("audit", "verify", str(export), "--pubkey", str(anchor)).stdout.decode()
        assert "hand-over" in out and "access-log: OK" in out, out
    # without the hand-overs, the old key alone cannot vouch for the new checkpoints
    (export / keyrotation.TRANSITIONS).rename(tmp_path / "moved.jsonl")
    r = appliance.cli("audit", "verify", str(export), "--pubkey", str(old_pub), check=False)
    assert r.returncode == 1
    # a hand-over not signed by the trusted key is refused, not skipped
    lines = (tmp_path / "moved.jsonl").read_text().splitlines()
    forged = json.loads(lines[0])
    forged["at"] = "2020-01-01T00:00:00Z"
    (export / keyrotation.TRANSITIONS).write_text(json.dumps(forged) + "\n")
    r = appliance.cli("audit", "verify", str(export), "--pubkey", str(old_pub), check=False)
    assert r.returncode == 1 and b"does not verify" in r.stdout
