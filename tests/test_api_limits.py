# ruff: noqa: F811  (the api_site fixture is imported by name)
"""A pentest's findings against the API, each reproduced: request limits before reading, what the
access log records of refused and failed requests, exact incident purposes, subject-access
rectangles, browser safety headers and cross-site checks, trusted proxies, bounded exports and
view tickets in the index."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import free_port
from tests.support.accounts import PASSWORD, h
from tests.support.apisite import USERS, ApiSite, api_site, client, tokens, with_api  # noqa: F401
from tests.support.appliance import Appliance
from tests.support.wait import wait_for
from vault.ops.events import format_line
from vault.vault import Vault

START, END = "2026-11-21T08:00:00Z", "2026-11-21T08:03:00Z"


def log_size(client: TestClient, tokens: dict[str, str]) -> int:
    return int(client.get("/api/v1/audit/access-log?limit=1", headers=h(tokens, "aud")).json()["total"])


def entries_since(client: TestClient, tokens: dict[str, str], before: int) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/audit/access-log?limit=1000&offset={before}", headers=h(tokens, "aud"))
    return list(r.json()["entries"])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def serve(app: Appliance) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = app.popen("serve", "--port", str(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_for(up, 60), "holdfast serve did not answer /healthz"
    return proc, base


# -- 3. request limits before reading ----------------------------------------------------------


def test_body_over_the_route_limit_is_413_before_authentication(client: TestClient) -> None:
    body = json.dumps({"description": "x" * (1 << 20)})
    r = client.post("/api/v1/incidents", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "at most" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(64):
            yield b" " * 4096

    r = client.post("/api/v1/incidents", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_anonymous_200_mib_body_is_not_read_into_memory(api_site: ApiSite) -> None:
    proc, base = serve(api_site.app)
    try:
        before = rss_kib(proc.pid)
        total = 200 << 20
        head = b'{"description": "'
        piece = b"x" * (1 << 20)

        def body() -> Iterator[bytes]:
            yield head
            for _ in range(total // len(piece) - 1):
                yield piece
            yield b"x" * (len(piece) - len(head) - 2) + b'"}'

        status: int | str
        try:
            r = httpx.post(
                base + "/api/v1/incidents",
                content=body(),
                headers={"Content-Type": "application/json", "Content-Length": str(total)},
                timeout=120,
            )
            status = r.status_code
        except httpx.HTTPError:
            status = "closed"  # the server answered 413 and stopped reading mid-upload
        after = rss_kib(proc.pid)
        assert after - before < 50 * 1024, f"server RSS grew {before} -> {after} KiB (answer {status})"
        assert status in (413, "closed"), status
    finally:
        proc.terminate()
        proc.wait(10)


def test_huge_range_numbers_and_headers_are_400_and_logged_bounded(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:
    seg = api_site.segments[2]
    url = f"/api/v1/segments/{seg}/media?purpose=range limits"
    before = log_size(client, tokens)
    for rng in ("bytes=" + "9" * 4300 + "-", "bytes=0-" + "1" * 60000):
        r = client.get(url, headers={**h(tokens, "sec"), "Range": rng})
        assert r.status_code == 400, r.text
        assert "Range" in r.json()["detail"] and len(r.text) < 500
    got = entries_since(client, tokens, before)
    assert [(e["result"], e["details"]["status"]) for e in got] == [("failed", 400), ("failed", 400)]
    assert all(len(json.dumps(e)) < 2000 for e in got)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_out_of_range_times_are_400(client: TestClient, tokens: dict[str, str], when: str) -> None:
    r = client.get(
        "/api/v1/segments", params={"source": "office-1", "start": when, "end": END}, headers=h(tokens, "sec")
    )
    assert r.status_code == 400, r.text
    assert "start" in r.json()["detail"]


def test_control_characters_are_escaped_in_log_lines(client: TestClient, tokens: dict[str, str]) -> None:
    line = format_line({"event": "access.view", "purpose": "a\x00b\rc\nd\x1b[31m\u2028e", "user": "sec"})
    assert not any(c in line for c in "\x00\r\n\x1b\u2028")
    assert 'purpose="a\\x00b\\rc\\nd\\x1b[31m\\u2028e"' in line
    # A purpose with control characters is refused before anything is logged.
    r = client.get(
        "/api/v1/cameras/office-1/playlist.m3u8",
        params={"start": START, "end": END, "purpose": "review\r\nuser=admin"},
        headers=h(tokens, "sec"),
    )
    assert r.status_code == 400 and "control" in r.json()["detail"]


# -- 4. what the access log records -------------------------------------------------------------


def test_every_audited_route_exists_and_every_footage_route_is_audited(client: TestClient) -> None:
    """A renamed route must not silently stop leaving `denied` entries."""
    from api.accesslog import AUDITED

    paths = client.get("/api/v1/openapi.json").json()["paths"]
    routes = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert set(AUDITED) <= routes, set(AUDITED) - routes
    footage = {
        (m, p)
        for m, p in routes
        if p.startswith(("/api/v1/segments", "/api/v1/play", "/api/v1/cameras/", "/api/v1/extent"))
        or p.endswith("/export")
    }
    assert footage <= set(AUDITED), footage - set(AUDITED)


def test_refused_and_failed_requests_are_access_log_entries(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:
    seg, north = api_site.segments[3], api_site.north_segments[0]
    before = log_size(client, tokens)
    assert client.get(f"/api/v1/segments/{seg}/media?purpose=probe").status_code == 401
    assert (
        client.get(f"/api/v1/segments/{north}/media?purpose=probe", headers=h(tokens, "sec")).status_code
        == 403
    )
    assert (
        client.get("/api/v1/segments/nosuchsegment/media?purpose=probe", headers=h(tokens, "sec")).status_code
        == 404
    )
    assert client.post("/api/v1/incidents/1/export", headers=h(tokens, "aud")).status_code == 403
    assert client.get("/api/v1/users", headers=h(tokens, "sec")).status_code == 403
    r = client.get(
        f"/api/v1/segments/{seg}/media?purpose=probe",
        headers={**h(tokens, "sec"), "Range": "bytes=999999999-"},
    )
    assert r.status_code == 416
    r = client.get(
        f"/api/v1/segments/{seg}/media?purpose=probe", headers={**h(tokens, "sec"), "Range": "bytes=0-9"}
    )
    assert r.status_code == 206
    got = [
        (
            e["user"],
            e["action"],
            e["result"],
            (e.get("details") or {}).get("route"),
            (e.get("details") or {}).get("status"),
        )
        for e in entries_since(client, tokens, before)
    ]
    media = "GET /api/v1/segments/{segment_id}/media"
    assert got == [
        ("anonymous", "view", "denied", media, 401),
        ("sec", "view", "denied", media, 403),
        ("sec", "view", "denied", media, 404),
        ("aud", "export", "denied", "POST /api/v1/incidents/{incident_id}/export", 403),
        ("sec", "account", "denied", "GET /api/v1/users", 403),
        ("sec", "view", "failed", media, 416),
        ("sec", "view", "ok", None, None),
    ]
    last = entries_since(client, tokens, before)[-1]
    assert last["details"]["range"] == "bytes=0-9" and last["details"]["segment"] == seg


# -- 5. purposes naming an incident ---------------------------------------------------------------


def test_a_purpose_naming_an_incident_must_name_a_visible_one_exactly(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:
    body = {"cameras": ["office-1"], "start": START, "end": END, "description": "purpose test"}
    mine = client.post("/api/v1/incidents", json={**body, "site": "demo"}, headers=h(tokens, "sec")).json()[
        "id"
    ]
    theirs = client.post(
        "/api/v1/incidents",
        json={**body, "site": "north", "cameras": ["north-1"]},
        headers=h(tokens, "north"),
    ).json()["id"]
    url = f"/api/v1/segments/{api_site.segments[4]}/media"
    hdr = {**h(tokens, "sec"), "Range": "bytes=0-0"}
    assert client.get(url, params={"purpose": f"incident:{mine}"}, headers=hdr).status_code == 206
    for bad in (
        f"incident:{theirs}",
        f"Incident:{theirs}",
        f"INCIDENT:{theirs}",
        f"incident:\u200b{theirs}",
        f"\uff49ncident:{theirs}",  # full-width i
        f"\u0456ncident:{theirs}",  # Cyrillic i
        f"incident: {theirs}",
        f"incident:0{theirs}",
        f"incident:{theirs} follow-up",
        "incident:" + "".join(chr(0xFF10 + int(d)) for d in str(theirs)),  # full-width digits
    ):
        r = client.get(url, params={"purpose": bad}, headers=hdr)
        assert r.status_code == 400, (bad, r.status_code)
    assert client.get(url, params={"purpose": "x" * 501}, headers=hdr).status_code in (400, 422)
    assert client.get(url, params={"purpose": "routine check of the lobby"}, headers=hdr).status_code == 206


# -- 6. subject-access exports -----------------------------------------------------------------------


def test_subject_rectangle_is_bounded_and_the_export_names_verifier_and_exporter(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:
    dpo = h(tokens, "dpo")
    r = client.post(
        "/api/v1/subject-requests",
        json={
            "subject": "rectangle test",
            "identity_verified": False,
            "sources": ["office-1"],
            "start": START,
            "end": END,
        },
        headers=dpo,
    )
    rid = r.json()["id"]
    r = client.post(f"/api/v1/subject-requests/{rid}/identity", json={"note": "passport seen"}, headers=dpo)
    assert r.json()["identity_verified_by"] == "dpo"
    window = {"start": START, "end": "2026-11-21T08:00:10Z", "sources": ["office-1"]}
    for rect, blur in (
        ({"x": 0, "y": 0, "w": 1, "h": 1}, "all"),
        ({"x": 0, "y": 0, "w": 0.6, "h": 0.6}, "faces"),
    ):
        r = client.post(
            f"/api/v1/subject-requests/{rid}/export",
            json={"blur": blur, "subject_rect": rect, **window},
            headers=dpo,
        )
        assert r.status_code == 400 and "subject_rect_max_share" in r.json()["detail"], r.text
    r = client.post(
        f"/api/v1/subject-requests/{rid}/export",
        json={"blur": "all", "subject_rect": {"x": 0.3, "y": 0.3, "w": 0.4, "h": 0.4}, **window},
        headers=dpo,
    )
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        m = json.loads(z.read("manifest.json"))
    assert m["subject_request"]["identity_verified_by"] == "dpo"
    assert m["exporter"]["user"] == "dpo"
    assert m["sources"][0]["redaction"]["max_unblurred_share"] == 0.25
    got = client.get(f"/api/v1/subject-requests/{rid}", headers=dpo).json()["exports"][-1]
    assert got["by"] == "dpo" and got["identity_verified_by"] == "dpo"


# -- 7. browser safety -----------------------------------------------------------------------------


def test_every_response_has_nosniff_and_personal_data_no_store(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:
    for path, user in (
        ("/api/v1/auth/me", "sec"),
        ("/api/v1/cameras", "sec"),
        (f"/api/v1/segments?source=cs-1&start={START}&end={END}", "sec"),
        ("/api/v1/incidents", "dpo"),
        ("/api/v1/users", "adm"),
        ("/api/v1/audit/access-log", "aud"),
        ("/api/v1/nope", "sec"),
        ("/healthz", None),
        ("/", None),
    ):
        r = client.get(path, headers=h(tokens, user))
        assert r.headers.get("x-content-type-options") == "nosniff", path
        assert r.headers.get("cache-control") == "no-store", path
    assert client.get("/static/app.js").headers.get("x-content-type-options") == "nosniff"
    assert "strict-transport-security" not in client.get("/healthz").headers
    with TestClient(create_app(api_site.app.cfg, tls=True), base_url="https://testserver") as tc:
        assert tc.get("/healthz").headers["strict-transport-security"].startswith("max-age=")


def test_cookie_requests_need_a_same_origin_page(api_site: ApiSite) -> None:
    with TestClient(create_app(api_site.app.cfg)) as c:
        form = {"username": "sec", "password": PASSWORD}
        for hdr in (
            {},
            {"Origin": "https://evil.example"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "null"},
        ):
            r = c.post("/api/v1/auth/login", data=form, headers=hdr)
            assert r.status_code == 403 and "cross-site" in r.json()["detail"], hdr
        assert (
            c.post("/api/v1/auth/login", data=form, headers={"Sec-Fetch-Site": "same-origin"}).status_code
            == 200
        )
        body = {
            "site": "demo",
            "cameras": ["office-1"],
            "start": START,
            "end": END,
            "description": "csrf test",
        }
        assert (
            c.post("/api/v1/incidents", json=body, headers={"Origin": "https://evil.example"}).status_code
            == 403
        )
        assert c.post("/api/v1/incidents", json=body).status_code == 403
        assert (
            c.post("/api/v1/incidents", json=body, headers={"Origin": "http://testserver"}).status_code == 201
        )
        # Reading is not state-changing: the page's GETs need no header.
        assert c.get("/api/v1/auth/me").status_code == 200


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(api_site: ApiSite, tmp_path: Path) -> None:
    spoof = {"X-Forwarded-For": "203.0.113.7"}
    proc, base = serve(api_site.app)
    try:  # loopback peer, no trusted proxies: the header is ignored, /metrics stays on-box
        assert httpx.get(base + "/metrics", headers=spoof, timeout=30).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
    text = api_site.app.config_path.read_text()
    try:
        api_site.app.config_path.write_text(
            text.replace("[api]\n", '[api]\ntrusted_proxies = ["127.0.0.1"]\n', 1)
        )
        proc, base = serve(api_site.app)
        try:  # a trusted proxy on loopback forwards an off-box client
            assert httpx.get(base + "/metrics", headers=spoof, timeout=30).status_code == 401
            assert httpx.get(base + "/metrics", timeout=30).status_code == 200
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        api_site.app.config_path.write_text(text)


# -- 8. exports and tickets bounded ------------------------------------------------------------------


def test_exports_are_limited_in_number_and_size_and_kept_off_the_pbx_filesystem(
    api_site: ApiSite, tokens: dict[str, str], tmp_path: Path
) -> None:
    from vault.exports import evidence

    cfg = api_site.app.cfg
    body = {"site": "demo", "cameras": ["office-1"], "start": START, "end": END, "description": "limits"}
    with TestClient(create_app(with_api(cfg, max_concurrent_exports=1))) as c:
        inc = c.post("/api/v1/incidents", json=body, headers=h(tokens, "sec")).json()["id"]
        busy = evidence.ExportSlot(evidence.export_scratch(cfg), 1)  # another worker's export
        try:
            r = c.post(f"/api/v1/incidents/{inc}/export", headers=h(tokens, "sec"))
            assert r.status_code == 429 and "max_concurrent_exports" in r.json()["detail"]
        finally:
            busy.release()
        assert c.post(f"/api/v1/incidents/{inc}/export", headers=h(tokens, "sec")).status_code == 200
    with TestClient(create_app(with_api(cfg, max_export_bytes=1000))) as c:
        r = c.post(f"/api/v1/incidents/{inc}/export", headers=h(tokens, "sec"))
        assert r.status_code == 413 and "max_export_bytes" in r.json()["detail"]
    shared = cfg.model_copy(update={"pbx": cfg.pbx.model_copy(update={"dir": cfg.paths.scratch / "pbx"})})
    (cfg.paths.scratch / "pbx").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(shared)) as c:
        r = c.post(f"/api/v1/incidents/{inc}/export", headers=h(tokens, "sec"))
        assert r.status_code == 503 and "PBX" in r.json()["detail"]
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with TestClient(create_app(with_api(cfg, export_scratch=str(blocker / "exports")))) as c:
        r = c.post(f"/api/v1/incidents/{inc}/export", headers=h(tokens, "sec"))
        assert r.status_code == 503 and f"export scratch {blocker / 'exports'}" in r.json()["detail"]


def test_export_zip_is_streamed_not_built_whole_in_scratch(api_site: ApiSite, tmp_path: Path) -> None:
    from vault.exports import evidence
    from vault.index.queries import exportable_segments
    from vault.sealed import keys

    t0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    with Vault(api_site.app.cfg) as v:
        with v.sessions() as s:
            segs = exportable_segments(s, "office-1", t0, t0 + timedelta(seconds=30))
        built = evidence.build_export(
            v,
            [evidence.ExportPart("office-1", segs)],
            {"id": 0},
            {"user": "t"},
            t0,
            t0 + timedelta(seconds=30),
        )
        files = sorted(p.name for p in built.work.iterdir())
        # The export's own files only: no zip, no decrypted segment copies, no pipes left.
        assert [f for f in files if not f.startswith("office-1_")] == [
            "VERIFY.txt",
            "gaps.txt",
            "public-key.pem",
        ]
        assert all(f.endswith(".mp4") for f in files if f.startswith("office-1_")), files
        out = io.BytesIO()
        for chunk in built.stream():
            out.write(chunk)
        assert not built.work.exists()
    zpath = tmp_path / "streamed.zip"
    zpath.write_bytes(out.getvalue())
    m = evidence.verify_export(zpath, keys.load_sign_public(api_site.app.cfg.keys.dir / keys.SIGN_PUB))
    assert m["cameras"][0]["camera"] == "office-1" and len(m["cameras"][0]["segments"]) == 3


def test_view_tickets_live_in_the_index_capped_and_expiring(
    api_site: ApiSite, tokens: dict[str, str]
) -> None:
    now = [datetime.now(UTC)]
    cfg = with_api(api_site.app.cfg, view_tickets_per_user=2)
    a = TestClient(create_app(cfg, vault=Vault(cfg, clock=lambda: now[0])))
    b = TestClient(create_app(cfg, vault=Vault(cfg, clock=lambda: now[0])))  # a second worker process
    params = {"start": START, "end": END, "purpose": "ticket test"}
    with a, b:

        def playlist() -> str:
            now[0] += timedelta(seconds=1)  # the oldest ticket is the one dropped
            r = a.get("/api/v1/cameras/office-1/playlist.m3u8", params=params, headers=h(tokens, "sec"))
            assert r.status_code == 200, r.text
            return next(x for x in r.text.splitlines() if x.startswith("/api/v1/play/"))

        first = playlist()
        assert b.get(first, headers={**h(tokens, "sec"), "Range": "bytes=0-0"}).status_code == 206
        assert b.get(first, headers=h(tokens, "north")).status_code == 403  # still bound to its user
        second, third = playlist(), playlist()
        assert b.get(first, headers={**h(tokens, "sec"), "Range": "bytes=0-0"}).status_code == 403  # capped
        assert b.get(third, headers={**h(tokens, "sec"), "Range": "bytes=0-0"}).status_code == 206
        now[0] += timedelta(minutes=61)
        assert b.get(second, headers={**h(tokens, "sec"), "Range": "bytes=0-0"}).status_code == 403  # expired
    from vault.index import tickets
    from vault.index.schema import ViewTicketRow

    with Vault(cfg) as v, v.sessions() as s:
        assert tickets.count(s) <= 2
        stored = [r.token_sha256 for r in s.query(ViewTicketRow)]
    assert third.split("/")[4] not in stored  # only hashes are kept
