# ruff: noqa: F811  (fixtures are passed by name)
"""Four eyes on a request (vault/people/approvals.py, api/approvals.py): who may approve, what an approval
covers, expiry, break glass, and that the database serialises concurrent decisions."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.support.apisite import PASSWORD, T0, ApiSite, build_site
from tests.support.appliance import Appliance
from vault.ops.metrics import exposition
from vault.people import approvals
from vault.people.approvals import AlreadyDecided, Approval, NotAllowed, Person
from vault.timeutil import iso
from vault.vault import Vault

#: Views of security staff need approval for footage older than 72 h; exports and call audio always.
RULES = """
[approvals]
expire_hours = 24
break_glass_minutes = 30
break_glass_min_reason = 20

[[approvals.rules]]
action = "view"
roles = ["security"]
older_than_hours = 72

[[approvals.rules]]
action = "call_audio"

[[approvals.rules]]
action = "export"
sites = ["demo"]
roles = ["security"]
"""


def with_rules(app: Appliance) -> Appliance:
    with open(app.config_path, "a", encoding="utf-8") as f:
        f.write(RULES)
    return app


class Clock:
    """The vault's clock, moved by the test (expiry, footage age) instead of waiting."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


SEC = Person("sec", "security", frozenset({"demo"}))
DPO = Person("dpo", "dpo")


# -- the vault, on SQLite and PostgreSQL -------------------------------------------------------


#: The range the tests ask to see: office-1's first ten minutes.
ASKED = (T0, T0 + timedelta(minutes=10))


@pytest.fixture
def ruled(db_appliance: Appliance) -> Iterator[tuple[Appliance, Vault, Clock]]:
    """The appliance with the approval rules, and its vault on a clock five days after the footage."""
    app = with_rules(db_appliance)
    clock = Clock(T0 + timedelta(days=5))
    with Vault(app.cfg, clock) as v:
        yield app, v, clock


def ask_to_view(v: Vault, a: datetime, b: datetime) -> Approval:
    """The security officer files a request to view office-1 over [a, b), at the vault's now."""
    with v.sessions.begin() as s:
        return approvals.request(s, v.access_log, v.cfg, SEC, "view", ["office-1"], a, b, "look", v.clock())


def log_entries(v: Vault) -> list[dict]:
    with v.sessions() as s:
        return [json.loads(text) for _seq, text in v.access_log.entries(s)]


def test_rules_default_to_nothing(db_appliance: Appliance) -> None:
    """Without [approvals] rules no access needs approval (the existing behaviour)."""
    cfg = db_appliance.cfg
    old = datetime(2020, 1, 1, tzinfo=UTC)
    for action in approvals.ACTIONS:
        assert approvals.needing_approval(cfg, "security", action, ["office-1", "cs-1"], old, T0) == []


def test_age_rule_triggers_only_for_old_footage(db_appliance: Appliance) -> None:
    cfg = with_rules(db_appliance).cfg
    now = T0 + timedelta(days=10)
    young, old = now - timedelta(hours=71), now - timedelta(hours=73)
    assert approvals.needing_approval(cfg, "security", "view", ["office-1"], young, now) == []
    assert approvals.needing_approval(cfg, "security", "view", ["office-1"], old, now) == ["office-1"]
    # the rule names the security role: a dpo's view of the same footage is free
    assert approvals.needing_approval(cfg, "dpo", "view", ["office-1"], old, now) == []
    # call audio needs approval at any age
    assert approvals.needing_approval(cfg, "dpo", "call_audio", ["cs-1"], young, now) == ["cs-1"]
    assert approvals.access_action(cfg, "view", "cs-1") == "call_audio"
    # footage of a source no longer configured: only rules for every site apply
    assert approvals.needing_approval(cfg, "dpo", "call_audio", ["gone-1"], young, now) == ["gone-1"]
    assert approvals.needing_approval(cfg, "security", "export", ["gone-1"], young, now) == []


def test_approval_is_bound_to_its_request(ruled: tuple[Appliance, Vault, Clock]) -> None:
    _app, v, clock = ruled
    a, b = ASKED
    with v.sessions.begin() as s:
        req = approvals.request(
            s, v.access_log, v.cfg, SEC, "view", ["office-1"], a, b, "incident on stairs", clock()
        )
    with pytest.raises(NotAllowed, match="yourself"), v.sessions.begin() as s:
        approvals.decide(s, v.access_log, v.cfg, SEC, req.id, True, "", clock())
    other_sec = Person("sec2", "security", frozenset({"demo"}))
    with pytest.raises(NotAllowed, match="may not decide"), v.sessions.begin() as s:
        approvals.decide(s, v.access_log, v.cfg, other_sec, req.id, True, "", clock())
    with v.sessions() as s:  # pending: covers nothing
        assert approvals.covering(s, SEC, "view", ["office-1"], a, b, clock()) is None
    with v.sessions.begin() as s:
        approvals.decide(s, v.access_log, v.cfg, DPO, req.id, True, "ok", clock())

    def covers(who: Person, action: str, srcs: list[str], x: datetime, y: datetime) -> bool:
        with v.sessions() as s:
            return approvals.covering(s, who, action, srcs, x, y, clock()) is not None

    assert covers(SEC, "view", ["office-1"], a, b)
    assert covers(SEC, "view", ["office-1"], a + timedelta(minutes=2), a + timedelta(minutes=3))
    assert not covers(SEC, "view", ["garage-1"], a, b)  # another camera
    assert not covers(SEC, "view", ["office-1", "garage-1"], a, b)
    assert not covers(SEC, "view", ["office-1"], a, b + timedelta(seconds=1))  # outside the range
    assert not covers(SEC, "view", ["office-1"], a - timedelta(seconds=1), b)
    assert not covers(SEC, "export", ["office-1"], a, b)  # another action
    assert not covers(other_sec, "view", ["office-1"], a, b)  # another requester
    with v.sessions() as s:
        with pytest.raises(approvals.ApprovalRequired, match="needs approval"):
            approvals.check_access(s, v.cfg, SEC, "view", ["garage-1"], a, b, clock())
        found = approvals.check_access(s, v.cfg, SEC, "view", ["office-1"], a, b, clock())
        assert found is not None and found.id == req.id
    clock.now += timedelta(hours=24, seconds=1)  # expired
    assert not covers(SEC, "view", ["office-1"], a, b)
    with v.sessions() as s:
        assert approvals.get(s, req.id).status(clock()) == "expired"


def test_refused_request_covers_nothing_and_is_decided_once(ruled: tuple[Appliance, Vault, Clock]) -> None:
    app, v, clock = ruled
    a, b = ASKED
    req = ask_to_view(v, a, b)
    with v.sessions.begin() as s:
        approvals.decide(s, v.access_log, v.cfg, DPO, req.id, False, "no incident named", clock())
    with v.sessions() as s:
        assert approvals.covering(s, SEC, "view", ["office-1"], a, b, clock()) is None
    with pytest.raises(AlreadyDecided, match="refused"), v.sessions.begin() as s:
        approvals.decide(s, v.access_log, v.cfg, Person("dpo2", "dpo"), req.id, True, "", clock())
    # a pending request lapses after expire_hours
    late = ask_to_view(v, a, b)
    clock.now += timedelta(hours=25)
    with pytest.raises(AlreadyDecided, match="lapsed"), v.sessions.begin() as s:
        approvals.decide(s, v.access_log, v.cfg, DPO, late.id, True, "", clock())
    # an administrator's overview on the console
    out = json.loads(app.cli("approvals", "list", "--state", "refused", "--json").stdout)
    assert [(r["id"], r["decided_by"], r["reason"]) for r in out] == [(req.id, "dpo", "no incident named")]
    assert len(json.loads(app.cli("approvals", "list", "--json").stdout)) == 2


def test_concurrent_decisions_are_serialised(ruled: tuple[Appliance, Vault, Clock]) -> None:
    """Eight approvers approve and refuse one request at once: exactly one decision wins and is logged."""
    _app, v, clock = ruled
    a, b = ASKED
    req = ask_to_view(v, a, b)
    n = 8
    barrier = threading.Barrier(n)
    won: list[str] = []
    lost: list[str] = []
    errors: list[BaseException] = []

    def decide(i: int) -> None:
        who = Person(f"dpo{i}", "dpo")
        barrier.wait(60)
        try:
            with v.sessions.begin() as s:
                approvals.decide(s, v.access_log, v.cfg, who, req.id, i % 2 == 0, f"by {i}", clock())
            won.append(who.name)
        except AlreadyDecided:
            lost.append(who.name)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(won) == 1 and len(lost) == n - 1, (won, lost)
    with v.sessions() as s:
        final = approvals.get(s, req.id)
    assert final.decided_by == won[0]
    entries = [e for e in log_entries(v) if e["action"].startswith("approval.")]
    decisions = [e for e in entries if e["action"] in ("approval.approve", "approval.refuse")]
    assert len(decisions) == 1 and decisions[0]["user"] == won[0]
    assert decisions[0]["details"]["request"] == req.id
    assert [e["details"]["request"] for e in entries if e["action"] == "approval.request"] == [req.id]


def test_break_glass_is_logged_alerted_and_counted(
    ruled: tuple[Appliance, Vault, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    _app, v, clock = ruled
    a, b = ASKED
    assert "holdfast_break_glass_total 0.0" in exposition(v).decode()
    with pytest.raises(approvals.ApprovalError, match="at least 20"), v.sessions.begin() as s:
        approvals.break_glass(s, v.access_log, v.cfg, SEC, "view", ["office-1"], a, b, "urgent", clock())
    reason = "fire alarm on floor 2: checking who is still inside"
    with caplog.at_level(logging.WARNING, logger="holdfast.approvals"), v.sessions.begin() as s:
        bg = approvals.break_glass(s, v.access_log, v.cfg, SEC, "view", ["office-1"], a, b, reason, clock())
    alerts = [r for r in caplog.records if r.getMessage() == "approvals.break_glass"]
    assert len(alerts) == 1 and alerts[0].levelno == logging.WARNING
    assert alerts[0].kv["alert"] is True and alerts[0].kv["request"] == bg.id  # type: ignore[attr-defined]
    assert "holdfast_break_glass_total 1.0" in exposition(v).decode()
    [entry] = [e for e in log_entries(v) if e["action"] == "break_glass"]
    assert entry["user"] == "sec" and entry["purpose"] == reason
    assert entry["details"]["request"] == bg.id and entry["source"] == "office-1"
    with v.sessions() as s:
        assert approvals.check_access(s, v.cfg, SEC, "view", ["office-1"], a, b, clock()).id == bg.id  # type: ignore[union-attr]
        with pytest.raises(approvals.ApprovalRequired):
            approvals.check_access(s, v.cfg, SEC, "view", ["garage-1"], a, b, clock())
    clock.now += timedelta(minutes=31)  # short-lived
    with v.sessions() as s, pytest.raises(approvals.ApprovalRequired):
        approvals.check_access(s, v.cfg, SEC, "view", ["office-1"], a, b, clock())


# -- the API -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> ApiSite:
    """The footage is from 2026-11-21, more than 72 hours before any run: the view rule applies."""
    s = build_site(tmp_path_factory.mktemp("approvals") / "site")
    with_rules(s.app)
    return s


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0 + timedelta(hours=1))


@pytest.fixture(scope="module")
def client(site: ApiSite, clock: Clock) -> Iterator[TestClient]:
    cfg = site.app.cfg
    with TestClient(create_app(cfg, Vault(cfg, clock))) as c:
        yield c


def login(client: TestClient, name: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def entries(client: TestClient) -> list[dict]:
    r = client.get("/api/v1/audit/access-log?limit=1000", headers=login(client, "aud"))
    assert r.status_code == 200, r.text
    return r.json()["entries"]


def from_t0(seconds: float) -> dict[str, str]:
    """A request body's range: from T0 (08:00 UTC, where the site's recordings begin) `seconds` on."""
    return {"start": iso(T0), "end": iso(T0 + timedelta(seconds=seconds))}


def media(client: TestClient, who: dict[str, str], seg: str) -> int:
    return client.get(f"/api/v1/segments/{seg}/media?purpose=incident+review", headers=who).status_code


def test_api_request_approve_view(site: ApiSite, client: TestClient, clock: Clock) -> None:
    seg0, late = site.segments[0], site.segments[10]
    clock.now = T0 + timedelta(hours=1)
    sec, dpo = login(client, "sec"), login(client, "dpo")
    # young footage: the 72-hour rule does not apply; call audio always needs approval
    assert media(client, sec, seg0) == 200
    r = client.post(
        f"/api/v1/segments/{site.calls['call-1']}/views", json={"purpose": "complaint"}, headers=sec
    )
    assert r.status_code == 403 and r.json()["detail"].startswith("needs approval: call_audio of cs-1")

    clock.now = T0 + timedelta(days=4)
    sec, dpo, aud = login(client, "sec"), login(client, "dpo"), login(client, "aud")
    r = client.get(f"/api/v1/segments/{seg0}/media?purpose=incident+review", headers=sec)
    assert r.status_code == 403 and "needs approval" in r.json()["detail"]
    assert entries(client)[-1]["result"] == "denied"

    body = {"action": "view", "sources": ["office-1"], **from_t0(60), "purpose": "bicycle theft on 20 Nov"}
    r = client.post("/api/v1/approvals", json=body, headers=sec)
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["state"] == "pending" and req["requester"] == "sec"
    rid = req["id"]
    # the requester cannot approve their own request; an auditor is no approver here
    r = client.post(f"/api/v1/approvals/{rid}/approve", json={}, headers=sec)
    assert r.status_code == 403 and "yourself" in r.json()["detail"], r.text
    r = client.post(f"/api/v1/approvals/{rid}/approve", json={}, headers=aud)
    assert r.status_code == 403 and "may not decide" in r.json()["detail"]
    assert client.get("/api/v1/approvals?state=pending", headers=dpo).json()[0]["id"] == rid
    assert media(client, sec, seg0) == 403  # pending covers nothing
    r = client.post(f"/api/v1/approvals/{rid}/approve", json={"reason": "named case"}, headers=dpo)
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    assert client.post(f"/api/v1/approvals/{rid}/refuse", json={}, headers=dpo).status_code == 409

    assert media(client, sec, seg0) == 200
    log = entries(client)
    view = log[-1]
    assert view["action"] == "view" and view["details"]["approval_request"] == rid
    assert view["details"]["segment"] == seg0
    assert [e["action"] for e in log if (e.get("details") or {}).get("request") == rid] == [
        "approval.request",
        "approval.approve",
    ]
    # outside the approved range, another camera, another person: refused
    assert media(client, sec, late) == 403
    r = client.get(
        "/api/v1/cameras/garage-1/playlist.m3u8?start=2026-11-21T08:00:00Z&end=2026-11-21T08:01:00Z"
        "&purpose=bicycle+theft",
        headers=sec,
    )
    assert r.status_code == 403 and "garage-1" in r.json()["detail"]
    r = client.get(
        "/api/v1/cameras/office-1/playlist.m3u8?start=2026-11-21T08:00:00Z&end=2026-11-21T08:00:30Z"
        "&purpose=bicycle+theft",
        headers=sec,
    )
    assert r.status_code == 200 and entries(client)[-1]["details"]["approval_request"] == rid

    # expired: a day later the same view is refused again
    clock.now += timedelta(hours=24, minutes=1)
    sec = login(client, "sec")
    assert media(client, sec, seg0) == 403
    assert client.get(f"/api/v1/approvals/{rid}", headers=sec).json()["state"] == "expired"


def test_api_refusal_and_export_rule(site: ApiSite, client: TestClient, clock: Clock) -> None:
    clock.now = T0 + timedelta(days=6)  # after any earlier test's approval expired
    sec, dpo = login(client, "sec"), login(client, "dpo")
    body = {"action": "view", "sources": ["office-1"], **from_t0(20), "purpose": "just curious"}
    rid = client.post("/api/v1/approvals", json=body, headers=sec).json()["id"]
    r = client.post(f"/api/v1/approvals/{rid}/refuse", json={"reason": "no case named"}, headers=dpo)
    assert r.status_code == 200 and r.json()["state"] == "refused"
    assert media(client, sec, site.segments[0]) == 403
    assert entries(client)[-2]["action"] == "approval.refuse"
    # another site's user cannot ask about this site's cameras
    r = client.post("/api/v1/approvals", json=body, headers=login(client, "north"))
    assert r.status_code == 403

    inc = {"site": "demo", "cameras": ["office-1"], **from_t0(60), "description": "bicycle theft"}
    r = client.post("/api/v1/incidents", json=inc, headers=sec)
    assert r.status_code == 201, r.text
    r = client.post(f"/api/v1/incidents/{r.json()['id']}/export", headers=sec)
    assert r.status_code == 403 and r.json()["detail"].startswith("needs approval: export of office-1")


def test_api_break_glass(site: ApiSite, client: TestClient, clock: Clock) -> None:
    clock.now = T0 + timedelta(days=8)  # after any earlier test's approval expired
    sec = login(client, "sec")
    call = site.calls["call-2"]
    glass = {"action": "call_audio", "sources": ["cs-1"], **from_t0(600), "reason": "short"}
    r = client.post("/api/v1/approvals/break-glass", json=glass, headers=sec)
    assert r.status_code == 400 and "at least 20 characters" in r.json()["detail"]
    glass["reason"] = "caller threatened staff: police asked for the call now"
    r = client.post("/api/v1/approvals/break-glass", json=glass, headers=sec)
    assert r.status_code == 201 and r.json()["state"] == "break_glass", r.text
    rid = r.json()["id"]
    r = client.post(f"/api/v1/segments/{call}/views", json={"purpose": "threat to staff"}, headers=sec)
    assert r.status_code == 201, r.text
    log = entries(client)
    assert log[-1]["action"] == "view" and log[-1]["details"]["approval_request"] == rid
    assert log[-2]["action"] == "break_glass" and log[-2]["details"]["request"] == rid
    assert "holdfast_break_glass_total 1.0" in exposition(client.app.state.holdfast.vault).decode()  # type: ignore[attr-defined]
