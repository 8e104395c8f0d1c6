# ruff: noqa: F811  (the site fixture is imported by name)
"""Four eyes in Debian's Chromium (Playwright): a security officer is told the footage needs approval
and requests it, the data protection officer approves it on the Approvals tab, and the officer plays
it; the view's access-log entry names the request."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.apisite import ApiSite
from tests.support.browser import bearer, chromium_browser, login, logout, serve, shot
from tests.test_approvals import site  # noqa: F401 - the fixture, imported by name


@pytest.fixture(scope="module")
def server(site: ApiSite) -> Iterator[str]:
    yield from serve(site)


def find(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#footage:not([hidden])")
    page.select_option("#camera", "office-1")
    page.fill("#from", "2026-11-21 10:00:00")  # 08:00 UTC (the site is Europe/Helsinki)
    page.fill("#to", "2026-11-21 10:01:00")
    page.click("#search-form button[type=submit]")
    page.wait_for_function("() => /segments/.test(document.getElementById('msg').textContent)")
    page.fill("#purpose", "bicycle stolen from the lobby")


def test_request_approve_view_in_chromium(site: ApiSite, server: str) -> None:
    with chromium_browser() as browser:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(30_000)
        page = ctx.new_page()
        login(page, server, "sec")
        find(page)
        page.click("#play")
        page.wait_for_selector("#needs-approval:not([hidden])")
        assert page.inner_text("#needs-text").startswith("Needs approval: view of office-1")
        shot(page, "approvals-1-needs-approval")
        page.click("#request-approval")
        page.wait_for_function(
            "() => /Requested approval #\\d+/.test(document.getElementById('msg').textContent)"
        )
        rid = int(page.inner_text("#msg").split("#")[1].split(":")[0])
        logout(page)

        page = ctx.new_page()
        login(page, server, "dpo")
        page.goto(server + "/#approvals")
        row = page.locator(f"#approval-rows tr[data-id='{rid}']")
        row.locator("button.approve").click()
        page.wait_for_function(
            f"() => document.getElementById('msg').textContent.includes('#{rid}: approved')"
        )
        assert "\tapproved\t" in row.inner_text()
        shot(page, "approvals-2-approved")
        logout(page)

        page = ctx.new_page()
        login(page, server, "sec")
        find(page)
        page.click("#play")
        page.wait_for_function("() => document.getElementById('video').currentTime > 1")
        assert page.locator("#needs-approval").is_hidden()
        shot(page, "approvals-3-playing")
    req = urllib.request.Request(
        server + "/api/v1/audit/access-log?limit=1000",
        headers={"Authorization": f"Bearer {bearer(server, 'aud')}"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        entries = json.load(r)["entries"]
    views = [e for e in entries if e["action"] == "view" and e["user"] == "sec"]
    assert views and views[-1]["details"]["approval_request"] == rid
    linked = [e["action"] for e in entries if (e.get("details") or {}).get("request") == rid]
    assert linked == ["approval.request", "approval.approve"]
