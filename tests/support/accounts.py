"""Users for tests that go through the API: added with the CLI, logged in through the token route."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.testclient import TestClient

from tests.support.appliance import Appliance

PASSWORD = "correct horse battery"


def add_user(app: Appliance, name: str, role: str, *sites: str) -> None:
    """`holdfast users add` with the shared test password on stdin."""
    args = ["users", "add", name, "--role", role, "--password-stdin"]
    for s in sites:
        args += ["--site", s]
    app.cli(*args, input=(PASSWORD + "\n").encode())


def log_in(client: TestClient, names: Iterable[str]) -> dict[str, str]:
    """A bearer token for each user, from the token route (each login must succeed)."""
    out = {}
    for name in names:
        r = client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "bearer"
        out[name] = body["access_token"]
    return out


def h(tokens: dict[str, str], user: str | None) -> dict[str, str]:
    """The Authorization header of ``user`` (none for None: an anonymous request)."""
    return {} if user is None else {"Authorization": f"Bearer {tokens[user]}"}
