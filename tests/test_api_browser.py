# ruff: noqa: F811  (the api_site fixture is imported by name)
"""Acceptance in Debian's Chromium (Playwright): a security officer finds, plays, seeks, sees a gap,
opens an incident and downloads its export; an auditor sees the logs verified and no player."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apisite import ApiSite, api_site  # noqa: F401
from tests.support.browser import ARTIFACTS, chromium_browser, login, logout, open_page, serve, shot, submit

#: The browser runs in another zone than the site (Europe/Helsinki, UTC+2 in November): every
#: time on the page must still be the site's.
BROWSER_ZONE = "America/New_York"


@pytest.fixture(scope="module")
def server(api_site: ApiSite) -> Iterator[str]:
    yield from serve(api_site)


def assert_site_times(page) -> None:  # type: ignore[no-untyped-def]
    """The zone is named, no 12-hour clock, no UTC `Z` in what is shown (UTC only on hover)."""
    assert page.inner_text("#zone-note .zone-name") == "Europe/Helsinki"
    text = page.inner_text("main")
    assert not re.search(r"\b(AM|PM)\b", text), text
    assert not re.search(r"\d{2}:\d{2}(:\d{2})?(\.\d+)?Z", text), text


def test_security_officer_and_auditor_in_chromium(api_site: ApiSite, server: str, tmp_path: Path) -> None:
    with chromium_browser() as browser:
        page = open_page(browser, BROWSER_ZONE, accept_downloads=True)
        login(page, server, "sec")
        page.wait_for_selector("#footage:not([hidden])")
        page.select_option("#camera", "office-1")
        page.fill("#from", "2026-11-21 10:00:00")  # 08:00 UTC
        page.fill("#to", "2026-11-21 10:03:00")
        submit(page, "#search-form", ".gap-item")
        assert "camera offline: network" in page.inner_text("#gaps")
        # The gap recorded 08:01:00–08:01:30 UTC reads in Helsinki time, UTC on hover.
        gap = page.locator(".gap-item").first
        assert gap.inner_text().startswith("Gap 2026-11-21 10:01:00 – 10:01:30")
        assert gap.get_attribute("title").startswith("2026-11-21T08:01:00Z")
        assert_site_times(page)
        assert page.locator(".timeline .gap").count() >= 1
        shot(page, "1-timeline-gap")

        # Play: two minutes of footage (played fast), crossing segment boundaries and the gap.
        page.fill("#purpose", "checking the disturbance report")
        page.click("#play")
        page.wait_for_function("() => document.getElementById('video').currentTime > 1")
        page.evaluate("() => { document.getElementById('video').playbackRate = 8; }")
        page.wait_for_function(
            "() => document.getElementById('video').currentTime >= 120 || document.getElementById('video').ended",
            timeout=60_000,
        )
        dur = page.evaluate("() => document.getElementById('video').duration")
        assert dur >= 120
        shot(page, "2-played")

        # Seek to media time 65 s = the 7th segment, after the gap: the wall clock shows 08:01:35.
        page.evaluate(
            "() => { const v = document.getElementById('video'); v.playbackRate = 1; v.currentTime = 65; v.play(); }"
        )
        page.wait_for_function(
            "() => (document.getElementById('clock').textContent || '').startsWith('2026-11-21 10:01:3')"
        )
        t0 = page.evaluate("() => document.getElementById('video').currentTime")
        page.wait_for_function(f"() => document.getElementById('video').currentTime > {t0} + 0.5")
        shot(page, "3-seeked")

        page.fill("#description", "Customer assaulted at the counter")
        page.click("#incident-form button[type=submit]")
        page.wait_for_function(
            "() => /Incident \\d+ opened/.test(document.getElementById('msg').textContent)"
        )
        assert page.input_value("#purpose").startswith("incident:")

        page.click("a[data-tab=incidents]")
        page.wait_for_selector("button.export")
        assert "2026-11-21 10:00:00 – 2026-11-21 10:03:00" in page.inner_text("#incident-rows")
        assert_site_times(page)
        shot(page, "4-incidents")
        with page.expect_download(timeout=120_000) as dl:
            page.locator("button.export").first.click()
        zpath = tmp_path / "export.zip"
        dl.value.save_as(zpath)
        (ARTIFACTS / "api-export.zip").write_bytes(zpath.read_bytes())
        assert b"export OK" in api_site.app.verify_export(zpath).stdout
        logout(page)

        # The auditor: purge log with verification, and a 403 where the player would be.
        page2 = page.context.new_page()
        login(page2, server, "aud")
        page2.wait_for_selector("#audit:not([hidden])")
        page2.wait_for_selector("#verify-result.verified")
        assert "Verified" in page2.inner_text("#verify-result")
        assert page2.locator("#access-rows tr").count() >= 3
        assert_site_times(page2)
        shot(page2, "5-auditor-verified")
        page2.goto(server + "/#footage")
        page2.wait_for_function(
            "() => document.getElementById('msg').textContent.includes('not a view the auditor role can use')"
        )
        assert page2.locator("#footage").is_hidden()
        r = page2.request.get(
            server
            + "/api/v1/cameras/office-1/playlist.m3u8?start=2026-11-21T08:00:00Z&end=2026-11-21T08:03:00Z&purpose=curious"
        )
        assert r.status == 403
        shot(page2, "6-auditor-403")


def test_security_officer_plays_a_call_in_chromium(api_site: ApiSite, server: str) -> None:
    """The Calls view: pick a line, list calls, play one in an <audio> element; one logged view."""
    with chromium_browser(autoplay=True) as browser:
        page = open_page(browser, BROWSER_ZONE)
        login(page, server, "sec")
        page.click("a[data-tab=calls]")
        page.wait_for_selector("#line option[value=cs-1]", state="attached")
        page.select_option("#line", "cs-1")
        page.fill("#call-from", "2026-11-21 10:00:00")
        page.fill("#call-to", "2026-11-21 10:10:00")
        page.select_option("#call-direction", "in")
        submit(page, "#call-search", "tr.call-row")
        assert page.locator("tr.call-row").count() == 1
        row = page.inner_text("tr.call-row")
        assert "anna" in row and "+358 40 123 4567" in row and "6 s" in row
        assert "2026-11-21 10:01:00" in row  # call-1 started 08:01 UTC
        assert_site_times(page)
        page.fill("#call-purpose", "customer complaint about the agreed repair")
        page.click("button.play-call")
        page.wait_for_function("() => document.getElementById('call-audio').currentTime > 1")
        mime = page.evaluate("() => document.querySelector('#call-audio source').type")
        assert mime == "audio/ogg; codecs=opus"
        shot(page, "7-call-playing")
    entries = [
        e
        for e in api_site.app.access_entries()
        if e.get("purpose") == "customer complaint about the agreed repair"
    ]
    assert len(entries) == 1 and entries[0]["source"] == "cs-1"


def test_timeline_thumbnails_keyboard_and_watermark(api_site: ApiSite, server: str) -> None:
    """The footage page opens on the recordings; axis ticks in the site's zone; zoom and pan;
    thumbnails (each a logged view, no-store); click/keys seek; the watermark names the viewer."""
    purpose = "timeline walk-through"
    with chromium_browser() as browser:
        page = open_page(browser, BROWSER_ZONE)
        thumb_responses: list = []
        page.on("response", lambda r: "/thumbnail?" in r.url and thumb_responses.append(r))
        login(page, server, "sec")
        # Opens on the range that holds recordings (08:00:00–08:02:50 UTC), no gap before it.
        page.wait_for_selector(".gap-item")
        assert page.input_value("#from") == "2026-11-21 10:00:00"
        assert page.input_value("#to") == "2026-11-21 10:02:50"
        assert page.locator(".gap-item").count() == 1
        assert "camera offline: network" in page.inner_text("#tl-bar")  # drawn with its reason
        ticks = page.locator("#tl-axis .tick").all_inner_texts()
        assert len(ticks) >= 3 and "10:01:00" in ticks, ticks  # site time, 24-hour
        assert_site_times(page)

        # Zoom in twice (to under a minute's worth of detail) and pan.
        page.click("#tl-zoom-in")
        page.click("#tl-zoom-in")
        assert page.inner_text("#tl-window").endswith("(60 s)")  # 170 s, 85 s, then the 1-minute floor
        fine = page.locator("#tl-axis .tick").all_inner_texts()
        assert any(t.count(":") == 2 for t in fine), fine  # seconds shown at this zoom
        before = page.inner_text("#tl-window")
        page.click("#tl-right")
        assert page.inner_text("#tl-window") != before
        page.click("#tl-all")

        # Thumbnails once a purpose is given: one per segment where there is room.
        page.fill("#purpose", purpose)
        page.locator("#purpose").dispatch_event("change")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#tl-thumbs img.thumb')].length > 3 && "
            "[...document.querySelectorAll('#tl-thumbs img.thumb')].every(i => i.complete && i.naturalWidth > 0)"
        )
        shown = page.locator("#tl-thumbs img.thumb").count()
        assert thumb_responses and all(r.headers.get("cache-control") == "no-store" for r in thumb_responses)

        # Play; click on the bar seeks by wall clock: 3/4 of the range is 10:02:07.5.
        page.click("#play")
        page.wait_for_function("() => document.getElementById('video').currentTime > 0.5")
        box = page.locator("#tl-bar").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
        page.wait_for_function(
            "() => (document.getElementById('clock').textContent || '').startsWith('2026-11-21 10:02:0')"
        )
        # Keyboard: ] next segment (10:02:10), ← back 10 s, space pauses.
        page.focus("#timeline")
        page.keyboard.press("]")
        page.wait_for_function(
            "() => (document.getElementById('clock').textContent || '').startsWith('2026-11-21 10:02:1')"
        )
        page.keyboard.press("ArrowLeft")
        page.wait_for_function(
            "() => (document.getElementById('clock').textContent || '').startsWith('2026-11-21 10:02:0')"
        )
        page.keyboard.press("[")
        page.wait_for_function(
            "() => (document.getElementById('clock').textContent || '') <= '2026-11-21 10:02:00'"
        )
        page.keyboard.press(" ")
        page.wait_for_function("() => document.getElementById('video').paused")

        # The watermark: viewer, purpose and the time, over the player.
        mark = page.inner_text("#watermark")
        assert "sec" in mark and purpose in mark and "Europe/Helsinki" in mark
        assert re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d", mark)
        wm, video = page.locator("#watermark").bounding_box(), page.locator("#video").bounding_box()
        assert wm["x"] <= video["x"] + 1 and wm["width"] >= video["width"] - 2
        shot(page, "8-timeline-watermark")
        if readme_shot := os.environ.get("HOLDFAST_SCREENSHOT"):  # `make screenshot`
            page.screenshot(path=readme_shot)

    thumbs = [
        e
        for e in api_site.app.access_entries()
        if e.get("action") == "thumbnail" and e.get("purpose") == purpose
    ]
    assert len(thumbs) == len(thumb_responses) >= shown  # every fetch counted under the purpose


def test_auditor_verifies_the_logs_in_the_browser(api_site: ApiSite, server: str) -> None:
    """WebCrypto Ed25519 + Merkle roots in the page, against the key the auditor brings; another
    key is refused (the page does not take the server's word)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = (api_site.app.cfg.keys.dir / "sign.pub").read_text()
    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with chromium_browser() as browser:
        page = open_page(browser, BROWSER_ZONE, timeout_ms=60_000)
        login(page, server, "aud")
        page.wait_for_selector("#audit:not([hidden])")
        # The report reads as one: classes with limits, holds with reasons, the logs searchable.
        page.wait_for_selector("#class-rows tr")
        assert "No footage has outlived its deadline" in page.inner_text("#report-summary")
        assert "14 days" in page.inner_text("#class-rows")
        page.wait_for_selector("#access-rows tr")
        page.fill("#access-user", "sec")
        page.click("#access-search button[type=submit]")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#access-rows tr')].length > 0 && "
            "[...document.querySelectorAll('#access-rows tr td:nth-child(3)')].every(c => c.textContent === 'sec (security)')"
        )
        assert_site_times(page)
        page.fill("#pubkey", other)
        submit(page, "#browser-verify-form", "#browser-verify.failed")
        assert "not by the key you gave" in page.inner_text("#browser-verify")
        page.fill("#pubkey", pem)
        submit(page, "#browser-verify-form", "#browser-verify.verified")
        text = page.inner_text("#browser-verify")
        assert "Verified in this browser" in text and "access log:" in text
        assert page.evaluate("() => document.getElementById('browser-verify-progress').value") == 1
        shot(page, "9-auditor-browser-verified")


AXE = Path(__file__).with_name("vendor") / "axe.min.js"


def axe_violations(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Serious and critical axe-core findings on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map(n => n.target.join(' ')).slice(0, 5).join(', ')}`)"
    )
    return list(found)


def test_every_page_passes_axe(api_site: ApiSite, server: str) -> None:
    """axe-core (vendored) finds no serious or critical violation on any role's page."""
    found: dict[str, list[str]] = {}
    with chromium_browser() as browser:
        for user, tabs in (
            ("sec", ["footage", "calls", "incidents"]),
            ("aud", ["audit"]),
            ("dpo", ["subjects", "incidents"]),
            ("adm", ["admin"]),
        ):
            # bypass_csp: the page's CSP (script-src 'self') would refuse the injected axe script.
            page = open_page(browser, BROWSER_ZONE, bypass_csp=True)
            page.goto(server + "/")
            found["login"] = axe_violations(page)
            login(page, server, user)
            for tab in tabs:
                page.goto(f"{server}/#{tab}")
                page.wait_for_selector(f"#{tab}:not([hidden])")
                if tab == "footage":
                    page.wait_for_selector(".gap-item")
                    page.fill("#purpose", "accessibility check")
                    page.locator("#purpose").dispatch_event("change")
                    page.wait_for_selector("#tl-thumbs img.thumb")
                page.wait_for_load_state("networkidle")
                found[f"{user}:{tab}"] = axe_violations(page)
            page.context.close()
    bad = {k: v for k, v in found.items() if v}
    assert not bad, "\n".join(f"{k}: {x}" for k, v in bad.items() for x in v)
