"""The page under test: `holdfast serve` on 127.0.0.1 for an ApiSite, and Chromium helpers."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
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


def open_page(browser, zone: str, *, timeout_ms: int = 30_000, height: int = 900, **options):  # type: ignore[no-untyped-def]
    """A page in a new context (`page.context`) with the browser in time zone `zone`, 1280 wide;
    `options` go to `new_context` as they are."""
    ctx = browser.new_context(timezone_id=zone, viewport={"width": 1280, "height": height}, **options)
    ctx.set_default_timeout(timeout_ms)
    return ctx.new_page()


def login(page, base: str, user: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + "/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")
