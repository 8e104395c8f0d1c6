# ruff: noqa: F811  (the api_site fixture is imported by name)
"""Subject access requests: DPO only, legal hold until answered, redacted export that verifies offline."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.accounts import h
from tests.support.apisite import USERS, ApiSite, api_site, client, tokens  # noqa: F401
from vault.media import redact
from vault.retention.holds import is_held
from vault.timeutil import parse_iso

BODY = {
    "subject": "Tenant of flat B12, dark coat, at the counter around 08:00",
    "identity_verified": False,
    "identity_note": "",
    "sources": ["office-1", "cs-1"],
    "start": "2026-11-21T08:00:00Z",
    "end": "2026-11-21T08:02:00Z",
}
RECT = {"x": 0.25, "y": 0.25, "w": 0.5, "h": 0.5}
W, H = 320, 240


def first_frame(mp4: bytes) -> np.ndarray:
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            "pipe:0",
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "pipe:1",
        ],
        input=mp4,
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw[: W * H * 3], np.uint8).reshape(H, W, 3).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def held(api_site: ApiSite, segment_id: str) -> bool:
    v = api_site.app.vault()
    try:
        with v.sessions() as s:
            return is_held(s, segment_id, v.clock())
    finally:
        v.close()


def test_only_the_dpo_opens_lists_and_exports(client: TestClient, tokens: dict[str, str]) -> None:
    for user in (None, "sec", "north", "aud", "adm"):
        want = 401 if user is None else 403
        assert client.post("/api/v1/subject-requests", json=BODY, headers=h(tokens, user)).status_code == want
        assert client.get("/api/v1/subject-requests", headers=h(tokens, user)).status_code == want
        assert (
            client.post("/api/v1/subject-requests/1/export", json={}, headers=h(tokens, user)).status_code
            == want
        )
        assert (
            client.post(
                "/api/v1/subject-requests/1/close", json={"reason": "x" * 5}, headers=h(tokens, user)
            ).status_code
            == want
        )
    bad = {**BODY, "sources": ["office-1", "nope"]}
    r = client.post("/api/v1/subject-requests", json=bad, headers=h(tokens, "dpo"))
    assert r.status_code == 400 and "nope" in r.json()["detail"]


def test_request_holds_exports_redacted_and_releases(
    api_site: ApiSite,
    client: TestClient,
    tokens: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dpo = h(tokens, "dpo")
    seg0, call = api_site.segments[0], api_site.calls["call-1"]
    assert not held(api_site, seg0)
    r = client.post("/api/v1/subject-requests", json=BODY, headers=dpo)
    assert r.status_code == 201, r.text
    req = r.json()
    rid = req["id"]
    received = parse_iso(req["received_at"], "received")
    assert parse_iso(req["deadline"], "deadline") - received == timedelta(days=30)  # api.subject_request_days
    assert held(api_site, seg0) and held(api_site, call)

    # Identity first (Heka verifies identity before answering).
    r = client.post(
        f"/api/v1/subject-requests/{rid}/export", json={"blur": "all", "subject_rect": RECT}, headers=dpo
    )
    assert r.status_code == 409 and "identity" in r.json()["detail"]
    r = client.post(
        f"/api/v1/subject-requests/{rid}/identity",
        json={"note": "passport checked at the office"},
        headers=dpo,
    )
    assert r.status_code == 200 and r.json()["identity_verified"] is True
    # blur=all needs the subject's rectangle.
    r = client.post(f"/api/v1/subject-requests/{rid}/export", json={"blur": "all"}, headers=dpo)
    assert r.status_code == 400 and "rectangle" in r.json()["detail"]

    before = client.get("/api/v1/audit/access-log?limit=1000", headers=h(tokens, "aud")).json()["total"]
    # blur=all: one camera segment and the call.
    r = client.post(
        f"/api/v1/subject-requests/{rid}/export",
        json={
            "blur": "all",
            "subject_rect": RECT,
            "start": "2026-11-21T08:00:00Z",
            "end": "2026-11-21T08:01:10Z",
            "sources": ["office-1", "cs-1"],
        },
        headers=dpo,
    )
    assert r.status_code == 200, r.text
    zpath = tmp_path / "sar.zip"
    zpath.write_bytes(r.content)
    assert b"export OK" in api_site.app.verify_export(zpath).stdout
    with zipfile.ZipFile(zpath) as z:
        m = json.loads(z.read("manifest.json"))
        video = z.read("office-1-redacted.mp4")
        audio_name = f"cs-1-{call}.ogg"
        audio = z.read(audio_name)
    assert m["format"] == "holdfast-subject-access/1" and m["subject_request"]["id"] == rid
    cam = next(s for s in m["sources"] if s["source"] == "office-1")
    assert cam["redaction"]["mode"] == "all" and cam["redaction"]["frames"] == 6 * 250
    assert [s["id"] for s in cam["segments"]] == api_site.segments[:6]
    # Call audio is exported exactly as recorded.
    assert audio == api_site.app.cli("segments", "cat", call).stdout
    # Inside the subject's rectangle the picture is kept; outside it is destroyed.
    orig = first_frame(api_site.app.cli("segments", "cat", seg0).stdout)
    got = first_frame(video)
    x0, y0, x1, y1 = redact.Rect(**RECT).pixels(W, H)
    inside = (slice(y0 + 4, y1 - 4), slice(x0 + 4, x1 - 4))
    mask = np.ones((H, W), bool)
    mask[y0:y1, x0:x1] = False
    assert psnr(orig[inside], got[inside]) > 30
    assert psnr(orig[mask], got[mask]) < 20
    # Detail (horizontal gradient energy) in the band above the rectangle is mostly gone.
    band = (slice(0, y0 - 2), slice(0, W))
    detail = lambda f: float((np.diff(f[band], axis=1) ** 2).mean())  # noqa: E731
    assert detail(got) < 0.35 * detail(orig), (detail(got), detail(orig))
    # One export entry per source, with the request as purpose.
    entries = client.get(
        f"/api/v1/audit/access-log?limit=1000&offset={before}", headers=h(tokens, "aud")
    ).json()["entries"]
    assert [(e["action"], e["source"], e["purpose"], e["user"]) for e in entries] == [
        ("export", "office-1", f"subject access request {rid}", "dpo"),
        ("export", "cs-1", f"subject access request {rid}", "dpo"),
    ]
    # One changed byte in the redacted video fails verification.
    with zipfile.ZipFile(zpath) as z:
        items = {n: z.read(n) for n in z.namelist()}
    data = bytearray(items["office-1-redacted.mp4"])
    data[len(data) // 2] ^= 1
    items["office-1-redacted.mp4"] = bytes(data)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, d in items.items():
            z.writestr(n, d)
    (tmp_path / "bad.zip").write_bytes(buf.getvalue())
    assert api_site.app.verify_export(tmp_path / "bad.zip", check=False).returncode != 0

    # blur=faces: the detector sees every frame; with no face, frames are unchanged but for re-encoding.
    calls = {"n": 0}
    real = redact.FaceDetector.__call__

    def counting(self, frame):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(self, frame)

    monkeypatch.setattr(redact.FaceDetector, "__call__", counting)
    r = client.post(
        f"/api/v1/subject-requests/{rid}/export",
        json={
            "blur": "faces",
            "sources": ["office-1"],
            "start": "2026-11-21T08:00:00Z",
            "end": "2026-11-21T08:00:10Z",
        },
        headers=dpo,
    )
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        m2 = json.loads(z.read("manifest.json"))
        faces_video = z.read("office-1-redacted.mp4")
    red = m2["sources"][0]["redaction"]
    assert red["mode"] == "faces" and "haarcascade_frontalface_default.xml" in red["detector"]
    assert calls["n"] == red["frames"] == 250 and red["faces"] == 0
    assert psnr(orig, first_frame(faces_video)) > 35

    # Answering releases the hold, with a reason; a second close is refused; no export after.
    r = client.post(
        f"/api/v1/subject-requests/{rid}/close", json={"reason": "export handed over"}, headers=dpo
    )
    assert r.status_code == 200 and r.json()["state"] == "answered"
    assert len(r.json()["exports"]) == 2
    assert not held(api_site, seg0) and not held(api_site, call)
    assert (
        client.post(
            f"/api/v1/subject-requests/{rid}/close", json={"reason": "again"}, headers=dpo
        ).status_code
        == 409
    )
    assert client.post(f"/api/v1/subject-requests/{rid}/export", json={}, headers=dpo).status_code == 409
    logged = client.get("/api/v1/audit/access-log?limit=1000", headers=h(tokens, "aud")).json()["entries"]
    # The refused second close and export are entries with result "failed" (status 409).
    assert [(e["action"], e["result"], e["details"]["status"]) for e in logged[-2:]] == [
        ("hold.release", "failed", 409),
        ("export", "failed", 409),
    ]
    last = [e for e in logged if e["result"] == "ok"][-1]
    assert last["action"] == "hold.release" and f"subject access request {rid} answered" in last["purpose"]


def test_faces_are_obliterated_where_the_detector_finds_them() -> None:
    """The face path with a stub detector: the box (plus margin) is destroyed, the rest untouched."""
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    red = redact.Redactor("faces", detector=lambda f: [(100, 80, 40, 40)])
    out = red(frame)
    assert red.faces == 1 and red.frames == 1
    box = (slice(80, 120), slice(100, 140))
    assert psnr(frame[box].astype(float), out[box].astype(float)) < 15
    untouched = np.ones((240, 320), bool)
    untouched[70:130, 90:150] = False
    assert np.array_equal(frame[untouched], out[untouched])
    # A face inside the subject's rectangle is the subject's: kept.
    keep = redact.Redactor(
        "faces", subject=redact.Rect(0.25, 0.25, 0.3, 0.3), detector=lambda f: [(100, 80, 40, 40)]
    )
    assert np.array_equal(keep(frame), frame) and keep.faces == 0
    # The box stays covered for a few frames after the detector loses it.
    flicker = iter([[(100, 80, 40, 40)], [], []])
    red2 = redact.Redactor("faces", detector=lambda f: next(flicker))
    red2(frame)
    assert not np.array_equal(red2(frame)[box], frame[box])
    with pytest.raises(redact.RedactError):
        redact.Rect(0.8, 0.1, 0.5, 0.5)
    assert isinstance(datetime.now(), datetime)
