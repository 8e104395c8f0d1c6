"""The page under test: `holdfast serve` on 127.0.0.1 for an ApiSite, and Chromium helpers."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.apisite import PASSWORD, ApiSite
from tests.support.appliance import REPO
from tests.support.wait import wait_for

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
        return True
    except OSError:
        return False


def serve(site: ApiSite) -> Iterator[str]:
    """`holdfast serve` on a free port; yields its base URL, stops it after."""
    port = free_port()
    proc = site.app.popen("serve", "--port", str(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        if not wait_for(lambda: _answers(base + "/healthz"), 120):  # start-up on a busy machine
            pytest.fail("holdfast serve did not answer /healthz in 120 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def bearer(base: str, user: str) -> str:
    """A bearer token for `user` (the API's script login)."""
    data = f"username={user}&password={PASSWORD.replace(' ', '+')}".encode()
    with urllib.request.urlopen(base + "/api/v1/auth/token", data=data, timeout=30) as r:
        return str(json.load(r)["access_token"])


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed (`make test` installs it: apt-get install chromium)")


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"api-{name}.png"), full_page=True)


def chromium(p, *, autoplay: bool = False):  # type: ignore[no-untyped-def]
    """Debian's Chromium, headless; `autoplay` lets media play without a click."""
    args = [*FLAGS, "--autoplay-policy=no-user-gesture-required"] if autoplay else FLAGS
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


@contextmanager
def chromium_browser(*, autoplay: bool = False) -> Iterator:  # type: ignore[type-arg]
    """Debian's Chromium under Playwright for the block (see `chromium`), closed after it."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = chromium(p, autoplay=autoplay)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def first_answer_held(page, pattern: str) -> Iterator[Callable[[], None]]:  # type: ignore[no-untyped-def]
    """The first request for `pattern` must be made inside the block; its answer is held back
    (later ones pass) until the yielded function lets it through, which returns once the page has
    read it: for the races where an answer comes after the person has moved on."""
    held: list = []

    def hold(route) -> None:  # type: ignore[no-untyped-def]
        if held:
            route.continue_()
        else:
            held.append(route)

    def release() -> None:
        with page.expect_response(lambda r: r.request == first.value) as late:
            held[0].continue_()
        late.value.finished()
        # The page reads a second answer from the same place: by then it has read the first.
        page.evaluate("async (u) => { await (await fetch(u)).json(); }", first.value.url)

    page.route(pattern, hold)
    with page.expect_request(pattern) as first:
        yield release


def open_page(browser, zone: str, *, timeout_ms: int = 30_000, height: int = 900, **options):  # type: ignore[no-untyped-def]
    """A page in a new context (`page.context`) with the browser in time zone `zone`, 1280 wide;
    `options` go to `new_context` as they are."""
    ctx = browser.new_context(timezone_id=zone, viewport={"width": 1280, "height": height}, **options)
    ctx.set_default_timeout(timeout_ms)
    return ctx.new_page()


def submit(page, form: str, then: str) -> None:  # type: ignore[no-untyped-def]
    """Submit `form` with its submit button, as a person does, and wait for `then` to appear."""
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector(then)


def logout(page) -> None:  # type: ignore[no-untyped-def]
    """Log out with the page's button and wait until the page shows the login form again: the
    page reloads only after the server has ended the session, so a page opened next in the same
    context no longer carries it."""
    page.click("#logout")
    page.wait_for_selector("#login-form input[name=username]", state="visible")


def login(page, base: str, user: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + "/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")
