# ruff: noqa: F811  (the api_site fixtures are imported by name)
"""A worker runs requests on `[api] threads` threads; password checks and long requests wait for
pools of their own on the event loop, so a burst of them never takes the few request threads
(api/pools.py)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from anyio import CapacityLimiter, to_thread
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import _api_routes as api_routes
from api.pools import Pools
from tests.support.accounts import PASSWORD, h
from tests.support.apisite import ApiSite, api_site, client, tokens, with_api  # noqa: F401
from tests.support.wait import wait_for

START, END = "2026-11-21T08:00:00Z", "2026-11-21T08:02:00Z"
SEARCH = f"/api/v1/segments?source=office-1&start={START}&end={END}"


def pools(c: TestClient) -> Pools:
    p = c.app.state.holdfast.pools  # type: ignore[attr-defined]
    assert p is not None, "the app's lifespan made no pools"
    return p  # type: ignore[no-any-return]


@contextmanager
def all_taken(c: TestClient, limiter: CapacityLimiter) -> Iterator[None]:
    """Hold every token of `limiter` (as busy work would) until the block ends."""
    borrowers = [object() for _ in range(int(limiter.total_tokens))]
    for b in borrowers:
        c.portal.call(limiter.acquire_on_behalf_of, b)  # type: ignore[union-attr]
    try:
        yield
    finally:
        for b in borrowers:
            c.portal.call(limiter.release_on_behalf_of, b)  # type: ignore[union-attr]


def waiting(c: TestClient, limiter: CapacityLimiter) -> Callable[[], int]:
    return lambda: c.portal.call(limiter.statistics).tasks_waiting  # type: ignore[union-attr]


def test_request_threads_are_sized_by_config(api_site: ApiSite) -> None:
    with TestClient(create_app(with_api(api_site.app.cfg, threads=3, long_requests=5))) as c:
        assert c.portal.call(lambda: to_thread.current_default_thread_limiter().total_tokens) == 3  # type: ignore[union-attr]
        assert pools(c).long.total_tokens == 5
        assert pools(c).passwords.total_tokens == api_site.app.cfg.api.max_password_checks


def test_logins_waiting_for_a_password_check_hold_no_request_thread(
    api_site: ApiSite, tokens: dict[str, str]
) -> None:
    """One request thread, one password check at a time and it busy: three logins queue without a
    thread, and a search is still answered at once."""
    cfg = with_api(api_site.app.cfg, threads=1, max_password_checks=1)
    with TestClient(create_app(cfg)) as c, ThreadPoolExecutor(3) as pool:
        gate = pools(c).passwords
        with all_taken(c, gate):
            logins: list[Future[Any]] = [
                pool.submit(c.post, "/api/v1/auth/token", data={"username": "sec", "password": PASSWORD})
                for _ in range(3)
            ]
            assert wait_for(lambda: waiting(c, gate)() == 3, 60), "the logins did not queue for the pool"
            r = c.get(SEARCH, headers=h(tokens, "sec"))
            assert r.status_code == 200 and len(r.json()) > 0
            assert not any(f.done() for f in logins)
        assert [f.result(timeout=120).status_code for f in logins] == [200, 200, 200]


def test_an_export_waiting_for_the_long_pool_holds_no_request_thread(
    api_site: ApiSite, tokens: dict[str, str]
) -> None:
    cfg = with_api(api_site.app.cfg, threads=1, long_requests=1)
    body = {"site": "demo", "cameras": ["office-1"], "start": START, "end": END, "description": "pools"}
    with TestClient(create_app(cfg)) as c, ThreadPoolExecutor(1) as pool:
        inc = c.post("/api/v1/incidents", json=body, headers=h(tokens, "sec")).json()["id"]
        long = pools(c).long
        with all_taken(c, long):
            export = pool.submit(c.post, f"/api/v1/incidents/{inc}/export", headers=h(tokens, "sec"))
            assert wait_for(lambda: waiting(c, long)() == 1, 60), "the export did not queue for the pool"
            assert c.get(SEARCH, headers=h(tokens, "sec")).status_code == 200
            assert not export.done()
        r = export.result(timeout=300)
        assert r.status_code == 200, r.text
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            assert z.testzip() is None and any(n.endswith(".mp4") for n in z.namelist())


#: Routes that hash a password or can hold a thread for seconds, and the pool each runs in.
POOLED = {
    ("POST", "/api/v1/auth/token"): "passwords",
    ("POST", "/api/v1/auth/login"): "passwords",
    ("POST", "/api/v1/users"): "passwords",
    ("POST", "/api/v1/incidents"): "long",
    ("POST", "/api/v1/incidents/{incident_id}/close"): "long",
    ("POST", "/api/v1/incidents/{incident_id}/export"): "long",
    ("POST", "/api/v1/subject-requests"): "long",
    ("POST", "/api/v1/subject-requests/{request_id}/close"): "long",
    ("POST", "/api/v1/subject-requests/{request_id}/export"): "long",
    ("GET", "/api/v1/segments/{segment_id}/thumbnail"): "long",
    ("GET", "/api/v1/audit/verify"): "long",
    ("GET", "/api/v1/audit/logs/{name}"): "long",
    ("GET", "/api/v1/audit/compliance"): "long",
}


@pytest.mark.parametrize(("method", "path"), sorted(POOLED))
def test_slow_routes_run_in_their_pool(client: TestClient, method: str, path: str) -> None:
    found = {
        (m, r.path): getattr(r.endpoint, "pool", None)
        for r in api_routes(client.app.routes)  # type: ignore[attr-defined]
        for m in r.methods
    }
    assert found[(method, path)] == POOLED[(method, path)]
