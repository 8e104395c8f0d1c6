"""`keys rotate`: old and new segments both open; once the old ones are purged the old private
key is destroyed and that is logged; a rotated log signing key verifies through its transition."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from tests.support.appliance import Appliance
from vault import keyrotation, keys, merkle, tlog
from vault.db import Segment


def clip(appliance: Appliance, ffmpeg: str, name: str) -> Path:
    p = appliance.dir / name
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=5", "-t", "1", str(p)],
        check=True,
    )
    return p


def test_rotate_then_prune_after_purge(appliance: Appliance, ffmpeg: str) -> None:
    kdir = appliance.cfg.keys.dir
    old_kid = keys.key_id(keys.load_seal_public(kdir / "seal.pub")).hex()
    appliance.cli(
        "seal",
        "--source",
        "office-1",
        "--start",
        "2026-01-01T08:00:00Z",
        str(clip(appliance, ffmpeg, "a.mp4")),
    )
    appliance.cli("ingest", "--once")
    out = appliance.cli("keys", "rotate").stdout.decode()
    assert f"seal-{old_kid}.key kept" in out
    new_kid = keys.key_id(keys.load_seal_public(kdir / "seal.pub")).hex()
    assert new_kid != old_kid and (kdir / f"seal-{old_kid}.key").exists()
    assert (kdir / f"seal-{old_kid}.key").stat().st_mode & 0o777 == 0o600
    appliance.cli(
        "seal",
        "--source",
        "office-1",
        "--start",
        "2026-01-01T08:01:00Z",
        str(clip(appliance, ffmpeg, "b.mp4")),
    )
    appliance.cli("ingest", "--once")

    with appliance.vault() as v, v.sessions() as s:
        segs = sorted(s.query(Segment).all(), key=lambda x: x.start)
        assert [x.key_id for x in segs] == [old_kid, new_kid]
        for seg in segs:  # both open and verify
            with v.open_segment(seg) as r:
                assert r.verify().chunks > 0

    # Old segment still stored: prune keeps the key.
    p = appliance.cli("keys", "prune")
    assert (kdir / f"seal-{old_kid}.key").exists() and "keys.kept" in p.stderr.decode()

    # Purge the old segment. The purger crypto-shreds it by NULLing its envelope; that is what
    # prune looks at (with the retention code merged, the real purger does this and calls prune).
    with appliance.vault() as v, v.sessions.begin() as s:
        s.execute(update(Segment).where(Segment.key_id == old_kid).values(envelope=None))
    p = appliance.cli("keys", "prune")
    assert f"destroyed seal-{old_kid}.key" in p.stdout.decode()
    err = p.stderr.decode()
    assert "keys.destroyed" in err and f"key={old_kid}" in err
    assert not (kdir / f"seal-{old_kid}.key").exists()
    with appliance.vault() as v, v.sessions() as s:  # the new segment still opens
        seg = s.query(Segment).filter(Segment.key_id == new_kid).one()
        with v.open_segment(seg) as r:
            assert r.read(0, 8)


def test_prune_keeps_a_key_a_spooled_segment_needs(appliance: Appliance, ffmpeg: str) -> None:
    kdir = appliance.cfg.keys.dir
    old_kid = keys.key_id(keys.load_seal_public(kdir / "seal.pub")).hex()
    appliance.cli(
        "seal",
        "--source",
        "office-1",
        "--start",
        "2026-01-01T08:00:00Z",
        str(clip(appliance, ffmpeg, "a.mp4")),
    )
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
    assert tlog.key_id(new.public_key()) == rec["new_key_id"] != tlog.key_id(old.public_key())
    assert (tmp_path / f"sign-{rec['old_key_id']}.pub").exists()
    cp2 = tlog.sign_checkpoint(
        new, "holdfast purge log", 4, merkle.root([merkle.leaf_hash(e) for e in entries]), t0.replace(hour=1)
    )
    chain = keyrotation.trusted_sign_keys(root_pub, keyrotation.read_transitions(tmp_path))
    assert len(chain) == 2
    assert tlog.verify_log(entries, [cp1, cp2], chain).ok
    assert not tlog.verify_log(entries, [cp1, cp2], root_pub).ok  # the old key alone cannot vouch for cp2
    # A forged transition (not signed by the trusted key) breaks the chain.
    rogue = Ed25519PrivateKey.generate()
    forged = dict(keyrotation.read_transitions(tmp_path)[0])
    forged["old_key_id"] = tlog.key_id(rogue.public_key())
    with pytest.raises(keyrotation.TransitionError):
        keyrotation.trusted_sign_keys(root_pub, [forged])


def test_recorders_pick_up_the_new_public_key(tmp_path: Path) -> None:
    keys.init_keys(tmp_path)
    watched = keys.SealPublicFile(tmp_path / "seal.pub")
    before = keys.key_id(watched.current())
    _old, new = keyrotation.rotate_seal(tmp_path)
    assert keys.key_id(watched.current()).hex() == new != before.hex()
