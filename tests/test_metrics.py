"""/metrics content from the index: a camera's last-segment age grows while nothing new arrives."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.support.appliance import Appliance
from vault.index.schema import Segment
from vault.ops.metrics import exposition
from vault.retention import holds
from vault.store.spool import write_gap
from vault.vault import Vault


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_last_segment_age_grows_and_overdue_counts(appliance: Appliance, ffmpeg: str) -> None:
    clip = appliance.dir / "clip.mp4"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=5", "-t", "2", str(clip)],
        check=True,
    )
    start = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    appliance.cli(
        "seal", "--source", "office-1", "--start", start.isoformat().replace("+00:00", "Z"), str(clip)
    )
    write_gap(
        appliance.cfg.paths.spool, "office-1", start - timedelta(minutes=5), start, "camera unreachable"
    )
    appliance.cli("ingest", "--once")

    now = [start + timedelta(seconds=60)]
    v = Vault(appliance.cfg, clock=lambda: now[0])
    try:
        m1 = samples(exposition(v).decode())
        now[0] += timedelta(seconds=45)  # the camera's server is down: nothing new is indexed
        m2 = samples(exposition(v).decode())
        now[0] += timedelta(days=15)  # past the office class's 14 days; no purger ran
        m3 = samples(exposition(v).decode())
        # A legal hold (vault.retention.holds, the purger's own query) moves it from overdue to held.
        with v.sessions.begin() as s:
            seg_id = s.scalars(select(Segment.id)).one()
            holds.add_hold(
                s,
                v.access_log,
                actor="dpo",
                role="dpo",
                reason="incident 7",
                now=now[0],
                segment_ids=[seg_id],
            )
        m4 = samples(exposition(v).decode())
    finally:
        v.close()
    key = ("holdfast_camera_last_segment_age_seconds", (("camera", "office-1"),))
    assert m2[key] - m1[key] == 45.0 and m1[key] > 0
    assert ("holdfast_camera_last_segment_age_seconds", (("camera", "garage-1"),)) not in m1  # never recorded
    assert m1[("holdfast_camera_segments", (("camera", "office-1"),))] == 1
    assert m1[("holdfast_camera_stored_bytes", (("camera", "office-1"),))] > 0
    assert m1[("holdfast_camera_gaps_total", (("camera", "office-1"),))] == 1
    assert m1[("holdfast_camera_reconnects_total", (("camera", "office-1"),))] == 1
    assert m1[("holdfast_class_segments", (("class", "office-camera"),))] == 1
    assert m1[("holdfast_class_overdue", (("class", "office-camera"),))] == 0
    assert m3[("holdfast_class_overdue", (("class", "office-camera"),))] == 1
    assert m3[("holdfast_class_held", (("class", "office-camera"),))] == 0
    assert m4[("holdfast_class_held", (("class", "office-camera"),))] == 1
    assert m4[("holdfast_class_overdue", (("class", "office-camera"),))] == 0
    assert 0 < m1[("holdfast_store_used_ratio", ())] <= 1

    # The CLI prints the same exposition (real clock: the age is now large).
    out = appliance.cli("metrics").stdout.decode()
    assert samples(out)[key] > m3[key] - 10**9
    assert all(line.startswith(("#", "holdfast_")) for line in out.splitlines() if line)
