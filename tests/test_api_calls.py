# ruff: noqa: F811  (the api_site fixture is imported by name)
"""Calls in the API: lines, search by agent/direction/call id/remote party (hashed), play, access log."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.accounts import h
from tests.support.apisite import CALLS, ApiSite, api_site, client, tokens  # noqa: F401

START, END = "2026-11-21T08:00:00Z", "2026-11-21T08:10:00Z"


def search(client: TestClient, tokens: dict[str, str], line: str, user: str = "sec", **filters: str):  # type: ignore[no-untyped-def]
    params = {"source": line, "start": START, "end": END, **filters}
    return client.get("/api/v1/segments", params=params, headers=h(tokens, user))


def test_lines_by_role(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get("/api/v1/lines", headers=h(tokens, "sec"))
    assert r.status_code == 200
    assert {x["id"] for x in r.json()} == {"cs-1", "cs-2"}
    assert next(x for x in r.json() if x["id"] == "cs-2")["hash_remote"] is True
    assert client.get("/api/v1/lines", headers=h(tokens, "north")).json() == []
    assert client.get("/api/v1/lines?site=north", headers=h(tokens, "sec")).json() == []
    assert client.get("/api/v1/lines", headers=h(tokens, "aud")).status_code == 403
    assert client.get("/api/v1/lines", headers=h(tokens, "dpo")).status_code == 403
    assert client.get("/api/v1/lines").status_code == 401


def test_search_calls_by_agent_direction_call_id(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:
    r = search(client, tokens, "cs-1")
    assert r.status_code == 200, r.text
    rows = r.json()
    assert [x["call"]["call_id"] for x in rows] == ["call-1", "call-2"]
    first = rows[0]
    assert first["kind"] == "audio" and first["mime"] == "audio/ogg; codecs=opus"
    assert first["call"]["agent"] == "anna" and first["call"]["direction"] == "in"
    assert first["call"]["remote"] == "+358 40 123 4567" and first["duration"] == 6.0
    assert [x["id"] for x in search(client, tokens, "cs-1", agent="bert").json()] == [
        api_site.calls["call-2"]
    ]
    assert [x["id"] for x in search(client, tokens, "cs-1", direction="in").json()] == [
        api_site.calls["call-1"]
    ]
    assert [x["id"] for x in search(client, tokens, "cs-1", call_id="call-2", direction="out").json()] == [
        api_site.calls["call-2"]
    ]
    assert search(client, tokens, "cs-1", agent="bert", direction="in").json() == []
    assert [x["id"] for x in search(client, tokens, "cs-1", remote="+358 40 123 4567").json()] == [
        api_site.calls["call-1"]
    ]
    # Filters are for call lines; directions are in|out.
    r = search(client, tokens, "office-1", agent="anna")
    assert r.status_code == 400 and "camera" in r.json()["detail"]
    assert search(client, tokens, "cs-1", direction="sideways").status_code == 422
    # Another site's security user and the auditor see no calls.
    assert search(client, tokens, "cs-1", user="north").status_code == 403
    assert search(client, tokens, "cs-1", user="aud").status_code == 403


def test_search_by_number_on_a_hashing_line_uses_the_keyed_hash(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:
    from vault.media.callmeta import hash_remote, load_remote_hash_key

    rows = search(client, tokens, "cs-2").json()
    assert len(rows) == 1 and rows[0]["call"]["remote"] is None
    key = load_remote_hash_key(api_site.app.cfg.keys.dir)
    assert rows[0]["call"]["remote_hash"] == hash_remote(key, "+358 40 123 4567")
    # Formatting of the number does not matter (callmeta normalises before hashing).
    for asked in ("+358 40 123 4567", "+358-40-1234567", "+358401234567"):
        got = search(client, tokens, "cs-2", remote=asked).json()
        assert [x["id"] for x in got] == [api_site.calls["call-3"]], asked
    assert search(client, tokens, "cs-2", remote="+358 50 765 4321").json() == []


def test_call_plays_exact_bytes_with_one_access_entry_per_view(
    api_site: ApiSite, client: TestClient, tokens: dict[str, str]
) -> None:
    seg = api_site.calls["call-1"]
    want = api_site.app.cli("segments", "cat", seg).stdout
    assert want[:4] == b"OggS"

    def entries() -> list[dict]:
        return client.get("/api/v1/audit/access-log?limit=1000", headers=h(tokens, "aud")).json()["entries"]

    before = len(entries())
    r = client.get(f"/api/v1/segments/{seg}/media?purpose=call review", headers=h(tokens, "sec"))
    assert r.status_code == 200 and r.content == want
    assert r.headers["content-type"] == "audio/ogg; codecs=opus"
    # A view for the page's <audio>: one entry, however many Range requests the element makes.
    assert (
        client.post(
            f"/api/v1/segments/{seg}/views", json={"purpose": "x"}, headers=h(tokens, "sec")
        ).status_code
        == 422
    )
    r = client.post(
        f"/api/v1/segments/{seg}/views", json={"purpose": "complaint 17"}, headers=h(tokens, "sec")
    )
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["mime"] == "audio/ogg; codecs=opus"
    got = b""
    for a in range(0, len(want), 4000):
        part = client.get(view["url"], headers={**h(tokens, "sec"), "Range": f"bytes={a}-{a + 3999}"})
        assert part.status_code == 206
        got += part.content
    assert got == want
    assert client.get(view["url"], headers=h(tokens, "north")).status_code == 403
    new = entries()[before:]
    assert [(e["action"], e["purpose"], e["source"], e["details"].get("segment")) for e in new] == [
        ("view", "call review", "cs-1", seg),
        ("view", "complaint 17", "cs-1", seg),
        ("play", "(none given)", None, None),  # the other site's user, refused the ticket: denied
    ]
    assert new[0]["user"] == "sec" and new[0]["role"] == "security"
    assert (new[2]["user"], new[2]["result"], new[2]["details"]["status"]) == ("north", "denied", 403)
    # The auditor and the other site are refused: "denied" entries, no "ok" entry.
    assert (
        client.get(f"/api/v1/segments/{seg}/media?purpose=curious", headers=h(tokens, "aud")).status_code
        == 403
    )
    assert (
        client.get(f"/api/v1/segments/{seg}/media?purpose=curious", headers=h(tokens, "north")).status_code
        == 403
    )
    assert [(e["user"], e["result"]) for e in entries()[before + 3 :]] == [
        ("aud", "denied"),
        ("north", "denied"),
    ]
    assert len(CALLS) == 3
