# ruff: noqa: F811  (fixtures are passed by name)
"""The HTTP API through FastAPI's TestClient: contract, role matrix, bytes, bad input, access log, export."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from tests.support.accounts import PASSWORD, h
from tests.support.apisite import USERS, ApiSite, build_site, client, tokens  # noqa: F401
from vault.people.users import LOCK_AFTER

START, END = "2026-11-21T08:00:00Z", "2026-11-21T08:03:00Z"


@pytest.fixture(scope="module", params=["local", "s3"])
def api_site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ApiSite:
    """The API contract holds with the local store and with the S3 store (Ceph RGW) alike."""
    rgw = request.getfixturevalue("rgw_cluster") if request.param == "s3" else None
    return build_site(tmp_path_factory.mktemp("api-site"), rgw=rgw)


def access_entries(client: TestClient, tokens: dict[str, str]) -> list[dict]:
    r = client.get("/api/v1/audit/access-log?limit=1000", headers=h(tokens, "aud"))
    assert r.status_code == 200
    return r.json()["entries"]


# -- contract ---------------------------------------------------------------------------------


def test_healthz_and_bad_login(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    r = client.post("/api/v1/auth/token", data={"username": "sec", "password": "wrong password!"})
    assert r.status_code == 401
    assert "wrong user name or password" in r.json()["detail"]
    assert (
        client.post("/api/v1/auth/token", data={"username": "nobody", "password": "x" * 12}).status_code
        == 401
    )


def test_cookie_login_flags(client: TestClient) -> None:
    r = client.post(
        "/api/v1/auth/login",
        data={"username": "sec", "password": PASSWORD},
        headers={"Origin": "http://testserver"},  # the page's own origin (api.guard)
    )
    assert r.status_code == 200
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    client.cookies.clear()


def test_segments_search_and_media_exact_bytes(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:  # noqa: F811
    r = client.get(f"/api/v1/segments?source=office-1&start={START}&end={END}", headers=h(tokens, "sec"))
    assert r.status_code == 200
    rows = r.json()
    assert [x["id"] for x in rows] == api_site.segments
    assert {"id", "start", "end"} <= set(rows[0])
    seg = rows[0]["id"]
    want = api_site.app.cli("segments", "cat", seg).stdout
    r = client.get(f"/api/v1/segments/{seg}/media?purpose=checking", headers=h(tokens, "sec"))
    assert r.status_code == 200 and r.content == want
    assert r.headers["accept-ranges"] == "bytes"
    # A range across a 64 KiB chunk boundary, a suffix range, an open-ended range.
    for rng, (a, b) in {
        "bytes=65000-70000": (65000, 70001),
        f"bytes=-{100}": (len(want) - 100, len(want)),
        "bytes=200000-": (200000, len(want)),
    }.items():
        r = client.get(
            f"/api/v1/segments/{seg}/media?purpose=checking", headers={**h(tokens, "sec"), "Range": rng}
        )
        assert r.status_code == 206, rng
        assert r.content == want[a:b]
        assert r.headers["content-range"] == f"bytes {a}-{b - 1}/{len(want)}"
    for missing in ("", "?purpose=", "?purpose=a"):
        r = client.get(f"/api/v1/segments/{seg}/media{missing}", headers=h(tokens, "sec"))
        assert r.status_code in (400, 422), missing
        assert "purpose" in r.json()["detail"]


def test_playlist_has_discontinuity_program_date_time_and_gap(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:  # noqa: F811
    r = client.get(
        f"/api/v1/cameras/office-1/playlist.m3u8?start={START}&end={END}&purpose=incident review",
        headers=h(tokens, "sec"),
    )
    assert r.status_code == 200
    text = r.text
    assert text.startswith("#EXTM3U") and text.rstrip().endswith("#EXT-X-ENDLIST")
    assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == len(api_site.segments)
    assert text.count("#EXT-X-DISCONTINUITY") == 1  # the gap; one run's segments share a timeline
    assert "#HOLDFAST-GAP:2026-11-21T08:01:00Z/2026-11-21T08:01:30Z" in text
    uri = [x for x in text.splitlines() if x.startswith("/api/v1/play/")][0]
    seg = uri.rsplit("/", 1)[1]
    assert seg.endswith(".mp4")
    r2 = client.get(uri, headers=h(tokens, "sec"))
    # The first segment starts the timeline at 0, as recorded: its bytes are unchanged.
    assert r2.status_code == 200 and r2.content == api_site.app.cli("segments", "cat", seg[:-4]).stdout
    # The ticket belongs to its user: another user (even at the same site) is refused.
    assert client.get(uri, headers=h(tokens, "north")).status_code == 403


def test_timeline_gaps_with_reasons(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get(f"/api/v1/timeline?source=office-1&start={START}&end={END}", headers=h(tokens, "sec"))
    gaps = r.json()["gaps"]
    assert gaps[0]["reason"] == "camera offline: network" and gaps[0]["start"] == "2026-11-21T08:01:00Z"
    assert gaps[-1]["reason"].startswith("no recording")


def test_timeline_opens_on_recordings_and_no_gap_before_the_first(
    client: TestClient, tokens: dict[str, str]
) -> None:
    r = client.get("/api/v1/extent?source=office-1", headers=h(tokens, "sec"))
    assert r.json() == {"source": "office-1", "first": "2026-11-21T08:00:00Z", "last": "2026-11-21T08:02:50Z"}
    r = client.get(
        "/api/v1/timeline?source=office-1&start=2026-11-21T07:00:00Z&end=2026-11-21T08:02:50Z",
        headers=h(tokens, "sec"),
    )
    gaps = r.json()["gaps"]
    assert [(g["start"], g["reason"]) for g in gaps] == [("2026-11-21T08:01:00Z", "camera offline: network")]
    r = client.get("/api/v1/extent?source=north-1", headers=h(tokens, "sec"))
    assert r.status_code == 403


def test_thumbnail_is_jpeg(api_site: ApiSite, client: TestClient, tokens: dict[str, str]) -> None:  # noqa: F811
    r = client.get(
        f"/api/v1/segments/{api_site.segments[0]}/thumbnail?purpose=checking", headers=h(tokens, "sec")
    )
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"


# -- roles ------------------------------------------------------------------------------------


def routes(site: ApiSite) -> list[tuple[str, str, dict | None, set[str]]]:
    seg = site.segments[0]
    call = site.calls["call-1"]
    q = f"start={START}&end={END}"
    return [
        ("GET", "/api/v1/auth/me", None, set(USERS)),
        ("GET", "/api/v1/cameras", None, {"sec", "north", "adm"}),
        ("GET", "/api/v1/sites", None, set(USERS)),
        ("GET", f"/api/v1/segments?source=office-1&{q}", None, {"sec"}),
        ("GET", f"/api/v1/timeline?source=office-1&{q}", None, {"sec"}),
        ("GET", "/api/v1/extent?source=office-1", None, {"sec"}),
        ("GET", f"/api/v1/segments/{seg}/media?purpose=matrix", None, {"sec"}),
        ("GET", f"/api/v1/segments/{seg}/thumbnail?purpose=matrix", None, {"sec"}),
        ("GET", f"/api/v1/cameras/office-1/playlist.m3u8?{q}&purpose=matrix", None, {"sec"}),
        ("GET", f"/api/v1/segments/{site.north_segments[0]}/media?purpose=matrix", None, {"north"}),
        ("GET", "/api/v1/lines", None, {"sec", "north", "adm"}),
        ("GET", f"/api/v1/segments?source=cs-1&{q}&agent=anna&direction=in", None, {"sec"}),
        ("GET", f"/api/v1/segments/{call}/media?purpose=matrix", None, {"sec"}),
        ("POST", f"/api/v1/segments/{call}/views", {"purpose": "matrix"}, {"sec"}),
        ("GET", "/api/v1/subject-requests", None, {"dpo"}),
        (
            "POST",
            "/api/v1/subject-requests",
            {
                "subject": "matrix",
                "identity_verified": True,
                "sources": ["office-1"],
                "start": START,
                "end": END,
            },
            {"dpo"},
        ),
        ("GET", "/api/v1/incidents", None, {"sec", "north", "dpo"}),
        (
            "POST",
            "/api/v1/incidents",
            {"site": "demo", "cameras": ["office-1"], "start": START, "end": END, "description": "matrix"},
            {"sec"},
        ),
        ("GET", "/api/v1/audit/access-log", None, {"aud", "dpo"}),
        ("GET", "/api/v1/audit/purge-log", None, {"aud", "dpo"}),
        ("GET", "/api/v1/audit/verify", None, {"aud", "dpo"}),
        ("GET", "/api/v1/audit/compliance", None, {"aud", "dpo"}),
        ("GET", "/api/v1/users", None, {"adm"}),
        ("GET", "/api/v1/health", None, {"adm"}),
    ]


def test_every_route_every_role(api_site: ApiSite, client: TestClient, tokens: dict[str, str]) -> None:  # noqa: F811
    failures = []
    for method, path, body, allowed in routes(api_site):
        for user in [None, *USERS]:
            r = client.request(method, path, headers=h(tokens, user), json=body)
            want = 401 if user is None else None
            ok = (
                (r.status_code == 401)
                if user is None
                else (r.status_code < 300 if user in allowed else r.status_code == 403)
            )
            if not ok:
                failures.append(
                    f"{method} {path} as {user}: {r.status_code} {r.text[:120]} (want {want or ('2xx' if user in allowed else 403)})"
                )
    assert not failures, "\n".join(failures)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,status,words",
    [
        ("/api/v1/segments/..%2F..%2Fetc%2Fpasswd/media?purpose=test", 404, "no such route"),
        ("/api/v1/segments/%2e%2e/media?purpose=test", 400, "malformed segment id"),
        ("/api/v1/segments/a%00b/media?purpose=test", 400, "malformed segment id"),
        ("/api/v1/segments/ffffffffffffffffffffffffffffffff/media?purpose=test", 404, "no segment"),
        ("/api/v1/segments?source=../etc&start=2026-11-21T08:00:00Z&end=2026-11-21T09:00:00Z", 422, "source"),
        (
            "/api/v1/segments?source=nope&start=2026-11-21T08:00:00Z&end=2026-11-21T09:00:00Z",
            404,
            "no camera",
        ),
        ("/api/v1/segments?source=office-1&start=yesterday&end=2026-11-21T09:00:00Z", 400, "not an ISO 8601"),
        (
            "/api/v1/segments?source=office-1&start=2026-11-21T08:00:00&end=2026-11-21T09:00:00Z",
            400,
            "no UTC offset",
        ),
        (
            "/api/v1/segments?source=office-1&start=2026-11-21T09:00:00Z&end=2026-11-21T08:00:00Z",
            400,
            "must be after",
        ),
        (
            "/api/v1/cameras/..%2F..%2Fx/playlist.m3u8?start=2026-11-21T08:00:00Z&end=2026-11-21T09:00:00Z&purpose=abc",
            404,
            "no such route",
        ),
        ("/api/v1/incidents/999999", 404, "no incident"),
        ("/api/v1/play/AAAAAAAAAAAAAAAAAAAAAAAAAAAA/x", 403, "ticket"),
        ("/static/../vault/sealed/keys.py", 404, ""),
    ],
)
def test_bad_input_is_4xx_with_message(
    client: TestClient, tokens: dict[str, str], path: str, status: int, words: str
) -> None:
    r = client.get(path, headers=h(tokens, "sec"))
    assert r.status_code == status, r.text
    if words:
        assert words in r.json()["detail"]


def test_bad_ranges(api_site: ApiSite, client: TestClient, tokens: dict[str, str]) -> None:  # noqa: F811
    seg = api_site.segments[0]
    url = f"/api/v1/segments/{seg}/media?purpose=range tests"
    r = client.get(url, headers={**h(tokens, "sec"), "Range": "bytes=999999999-"})
    assert r.status_code == 416 and "past the end" in r.json()["detail"]
    assert r.headers["content-range"].startswith("bytes */")
    for bad in ("bytes=abc", "bytes=5-2", "items=0-1", "bytes=0-1,5-6"):
        r = client.get(url, headers={**h(tokens, "sec"), "Range": bad})
        assert r.status_code == 400, bad
        assert "Range" in r.json()["detail"]


def test_lockout_after_repeated_failures(client: TestClient) -> None:
    from tests.support.apisite import PASSWORD as PW

    for _ in range(LOCK_AFTER):
        assert (
            client.post(
                "/api/v1/auth/token", data={"username": "dpo", "password": "not the password"}
            ).status_code
            == 401
        )
    r = client.post("/api/v1/auth/token", data={"username": "dpo", "password": PW})
    assert r.status_code == 401 and "locked" in r.json()["detail"]


# -- access log, incidents, export -----------------------------------------------------------------


def open_incident(
    client: TestClient, tokens: dict[str, str], start: str, end: str, description: str
) -> Response:
    """The security officer opens an incident on office-1 (site demo) over [start, end)."""
    body = {"site": "demo", "cameras": ["office-1"], "start": start, "end": end, "description": description}
    return client.post("/api/v1/incidents", json=body, headers=h(tokens, "sec"))


def test_one_access_entry_per_view_export_and_hold_change(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:  # noqa: F811
    before = len(access_entries(client, tokens))
    seg = api_site.segments[1]
    client.get(f"/api/v1/segments/{seg}/media?purpose=counting", headers=h(tokens, "sec"))
    client.get(
        f"/api/v1/cameras/office-1/playlist.m3u8?start={START}&end={END}&purpose=counting",
        headers=h(tokens, "sec"),
    )
    r = open_incident(client, tokens, "2026-11-21T08:00:30Z", "2026-11-21T08:01:45Z", "fight at the counter")
    assert r.status_code == 201
    inc = r.json()["id"]
    entries = access_entries(client, tokens)[before:]
    assert [e["action"] for e in entries] == ["view", "view", "hold.add"]
    for e in entries:
        assert (
            e["user"] == "sec"
            and e["role"] == "security"
            and e["purpose"]
            and e["time"]
            and e["source"] == "office-1"
        )
    assert entries[2]["purpose"].startswith(f"incident:{inc}: ")
    assert entries[2]["details"]["incident"] == str(inc)
    # Refused requests leave no footage trail but also no "ok" entry.
    assert client.get(f"/api/v1/segments/{seg}/media", headers=h(tokens, "sec")).status_code == 422
    assert len(access_entries(client, tokens)) == before + 3
    v = client.get("/api/v1/audit/verify", headers=h(tokens, "aud")).json()
    assert all(x["ok"] for x in v), v
    # The same log verifies offline with the public key alone.
    out = api_site.app.dir / "audit-export"
    api_site.app.cli("audit", "export", str(out))
    p = api_site.app.cli("audit", "verify", str(out), "--pubkey", str(api_site.app.cfg.keys.dir / "sign.pub"))
    assert b"OK" in p.stdout


def test_export_verifies_and_one_flipped_byte_fails(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str], tmp_path: Path
) -> None:  # noqa: F811
    r = open_incident(client, tokens, "2026-11-21T08:00:35Z", "2026-11-21T08:01:45Z", "export test")
    inc = r.json()["id"]
    before = len(access_entries(client, tokens))
    r = client.post(f"/api/v1/incidents/{inc}/export", headers=h(tokens, "sec"))
    assert r.status_code == 200, r.text
    assert [e["action"] for e in access_entries(client, tokens)[before:]] == ["export"]
    zpath = tmp_path / "export.zip"
    zpath.write_bytes(r.content)
    assert b"export OK" in api_site.app.verify_export(zpath).stdout
    with zipfile.ZipFile(zpath) as z:
        m = json.loads(z.read("manifest.json"))
        names = z.namelist()
        cam = m["cameras"][0]
        mp4s = {r["file"]: z.read(r["file"]) for r in cam["runs"]}
    assert [g["reason"] for g in cam["gaps"]] == ["camera offline: network"]
    assert m["incident"]["id"] == inc and m["exporter"]["user"] == "sec"
    # One MP4 per continuous run, named by its start in the site's zone (Helsinki, UTC+2): the
    # 30 s gap splits the range; no file joins footage across it.
    assert list(mp4s) == ["office-1_2026-11-21T10-00-30+0200.mp4", "office-1_2026-11-21T10-01-30+0200.mp4"]
    assert [r["segments"] for r in cam["runs"]] == [3, 2] and len(cam["segments"]) == 5
    for run in cam["runs"]:
        mp4 = mp4s[run["file"]]
        assert mp4[4:8] == b"ftyp" and mp4.find(b"moov") < mp4.find(b"mdat")  # faststart
        probe = json.loads(
            subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "format=duration:format_tags=creation_time",
                 "-of", "json", "pipe:0"],
                input=mp4,
                capture_output=True,
                check=True,
            ).stdout
        )["format"]  # fmt: skip
        assert abs(float(probe["duration"]) - 10.0 * run["segments"]) < 1.0
        # The wall-clock start is in the media's own metadata.
        assert probe["tags"]["creation_time"].startswith(run["start"].removesuffix("Z"))
    # Standard tools verify the unzipped export: sha256sum, openssl, and the key's fingerprint.
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(zpath) as z:
        z.extractall(unzipped)
    assert {"SHA256SUMS", "public-key.pem", "manifest.sig.bin", "VERIFY.txt"} <= set(names)
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=unzipped, capture_output=True)
    assert sums.returncode == 0 and b"manifest.json: OK" in sums.stdout
    assert all(f"{name}: OK".encode() in sums.stdout for name in mp4s)
    verify_cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "public-key.pem", "-rawin",
                  "-in", "manifest.json", "-sigfile", "manifest.sig.bin"]  # fmt: skip
    assert b"Verified Successfully" in subprocess.run(verify_cmd, cwd=unzipped, capture_output=True).stdout
    assert "openssl pkeyutl -verify" in (unzipped / "VERIFY.txt").read_text()
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", "public-key.pem", "-outform", "DER"],
        cwd=unzipped,
        capture_output=True,
    ).stdout
    assert hashlib.sha256(der[-32:]).hexdigest()[:16] == m["signing_key_id"]
    pub = api_site.app.cfg.keys.dir / "sign.pub"
    assert (unzipped / "public-key.pem").read_bytes() == pub.read_bytes()
    # One changed byte in any file of the zip fails verification.
    for name in names:
        with zipfile.ZipFile(zpath) as z:
            items = {n: z.read(n) for n in z.namelist()}
        data = bytearray(items[name])
        data[len(data) // 2] ^= 0x01
        items[name] = bytes(data)
        bad = tmp_path / f"bad-{name}.zip"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for n, d in items.items():
                z.writestr(n, d)
        bad.write_bytes(buf.getvalue())
        p = api_site.app.verify_export(bad, check=False)
        assert p.returncode != 0, name
        assert b"INVALID" in p.stderr
    # And a byte flipped in the raw zip (the stored MP4) fails too.
    raw = bytearray(zpath.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (tmp_path / "raw.zip").write_bytes(raw)
    assert api_site.app.verify_export(tmp_path / "raw.zip", check=False).returncode != 0


def test_close_incident_needs_dpo_and_reason(client: TestClient, tokens: dict[str, str]) -> None:
    r = open_incident(client, tokens, START, END, "to close")
    inc = r.json()["id"]
    assert (
        client.post(
            f"/api/v1/incidents/{inc}/close", json={"reason": "done"}, headers=h(tokens, "sec")
        ).status_code
        == 403
    )
    assert client.post(f"/api/v1/incidents/{inc}/close", json={}, headers=h(tokens, "adm")).status_code in (
        403,
        422,
    )
    # The north security user cannot see demo's incidents.
    assert client.get(f"/api/v1/incidents/{inc}", headers=h(tokens, "north")).status_code == 404


def test_log_search_by_segment_user_and_time(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:  # noqa: F811
    seg = api_site.segments[2]
    client.get(f"/api/v1/segments/{seg}/media?purpose=searching the log", headers=h(tokens, "sec"))
    r = client.get(f"/api/v1/audit/access-log?segment={seg}", headers=h(tokens, "aud")).json()
    assert r["total"] >= 1 and all(e["details"]["segment"] == seg for e in r["entries"])
    r = client.get("/api/v1/audit/access-log?user=sec&limit=1000", headers=h(tokens, "aud")).json()
    assert r["total"] == len(r["entries"]) >= 1 and {e["user"] for e in r["entries"]} == {"sec"}
    r = client.get(
        "/api/v1/audit/access-log?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z",
        headers=h(tokens, "aud"),
    )
    assert r.json()["total"] == 0
    r = client.get("/api/v1/audit/access-log?since=yesterday", headers=h(tokens, "aud"))
    assert r.status_code == 400
    r = client.get(f"/api/v1/audit/purge-log?segment={seg}", headers=h(tokens, "aud")).json()
    assert r["total"] == 0  # nothing of it was purged
