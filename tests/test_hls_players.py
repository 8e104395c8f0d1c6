# ruff: noqa: F811  (the api_site fixture is imported by name)
"""HLS beyond native players: ffmpeg as an HLS client, and hls.js in Chromium without native HLS.

office-1 holds 14 segments of 10 s (250 frames each, each clip's timestamps starting at 0) in
two recording runs with a 30 s gap between them; the playlist must play as one timeline.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.apisite import ApiSite, api_site  # noqa: F401
from tests.support.browser import bearer, chromium_browser, login, serve, shot, submit

RANGE = "start=2026-11-21T08:00:00Z&end=2026-11-21T08:03:00Z"
FRAMES_PER_SEGMENT = 250


@pytest.fixture(scope="module")
def server(api_site: ApiSite) -> Iterator[str]:
    yield from serve(api_site)


def playlist_text(base: str, token: str) -> str:
    req = urllib.request.Request(
        f"{base}/api/v1/cameras/office-1/playlist.m3u8?{RANGE}&purpose=player+check",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()


def test_playlist_is_one_timeline_with_one_discontinuity(api_site: ApiSite, server: str) -> None:
    text = playlist_text(server, bearer(server, "sec"))
    uris = [x for x in text.splitlines() if x.startswith("/api/v1/play/")]
    assert len(uris) == len(api_site.segments) and all(u.endswith(".mp4") for u in uris)
    assert text.count("#EXT-X-DISCONTINUITY") == 1  # the gap, not every segment
    assert text.count("#EXT-X-MAP:") == 2  # one per recording run
    assert "#EXT-X-PROGRAM-DATE-TIME:2026-11-21T08:01:30.000Z" in text


def test_ffmpeg_decodes_every_frame_across_the_gap(api_site: ApiSite, server: str) -> None:
    token = bearer(server, "sec")
    url = f"{server}/api/v1/cameras/office-1/playlist.m3u8?{RANGE}&purpose=ffmpeg+as+a+client"
    out = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-v",
            "error",
            "-headers",
            f"Authorization: Bearer {token}\r\n",
        ]
        + ["-i", url, "-map", "0:v:0", "-f", "framecrc", "-"],
        capture_output=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode(errors="replace")[-2000:]
    frames = [x for x in out.stdout.decode().splitlines() if x and not x.startswith("#")]
    assert len(frames) == FRAMES_PER_SEGMENT * len(api_site.segments)
    pts = [int(x.split(",")[2]) for x in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts), "timestamps must rise across segments"


NO_NATIVE_HLS = """
(() => {
  const own = HTMLMediaElement.prototype.canPlayType;
  HTMLMediaElement.prototype.canPlayType = function (type) {
    return /mpegurl/i.test(type) ? "" : own.call(this, type);
  };
})();
"""


def test_page_plays_through_hls_js_without_native_hls(api_site: ApiSite, server: str) -> None:
    """Chromium told it has no native HLS: the page plays with hls.js, across the gap."""
    with chromium_browser() as browser:
        ctx = browser.new_context(timezone_id="UTC", viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(30_000)
        ctx.add_init_script(NO_NATIVE_HLS)
        page = ctx.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        login(page, server, "sec")
        page.wait_for_selector("#footage:not([hidden])")
        page.select_option("#camera", "office-1")
        page.fill("#from", "2026-11-21 10:00:00")  # Europe/Helsinki
        page.fill("#to", "2026-11-21 10:03:00")
        submit(page, "#search-form", ".gap-item")
        page.fill("#purpose", "hls.js check")
        page.click("#play")
        page.wait_for_function("() => document.getElementById('video').currentTime > 1")
        assert page.evaluate("() => document.getElementById('video').dataset.player") == "hls.js"
        # Past the gap: media time 65 s is the 7th segment, recorded from 08:01:30.
        page.evaluate("() => { const v = document.getElementById('video'); v.currentTime = 65; v.play(); }")
        page.wait_for_function(
            "() => document.getElementById('video').currentTime > 66.5",
            timeout=60_000,
        )
        shot(page, "hlsjs-played")
        assert page.evaluate("() => document.getElementById('video').error") is None
        # Only its own origin (thumbnails are shown from in-page blob: URLs): no CDN.
        assert all(u.startswith((server, "blob:", "data:")) for u in requests), requests
        assert any("/static/vendor/hls.min.js" in u for u in requests)
