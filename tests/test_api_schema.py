# ruff: noqa: F811  (the api_site fixture is imported by name)
"""schemathesis against the app's own OpenAPI schema, authenticated: no 5xx, no response outside its schema.

Examples are bounded (a few per operation) so the run stays well under two minutes on two shared cores.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from tests.support.apisite import PASSWORD, ApiSite, api_site  # noqa: F401

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def app_and_tokens(api_site: ApiSite):  # type: ignore[no-untyped-def]
    app = create_app(api_site.app.cfg)
    with TestClient(app) as c:
        toks = {}
        for u in ("sec", "aud", "adm", "dpo"):
            r = c.post("/api/v1/auth/token", data={"username": u, "password": PASSWORD})
            toks[u] = r.json()["access_token"]
    return app, toks


def who_for(path: str) -> str:
    if path.startswith("/api/v1/audit"):
        return "aud"
    if path.startswith("/api/v1/users") or path == "/api/v1/health":
        return "adm"
    if path.startswith("/api/v1/subject-requests"):
        return "dpo"
    return "sec"


def test_api_conforms_to_its_schema(app_and_tokens) -> None:  # type: ignore[no-untyped-def]
    app, toks = app_and_tokens
    # Logging in and out are exercised by the route tests; fuzzing them would lock accounts or end sessions.
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app).exclude(
        path_regex="^/api/v1/auth/(token|login|logout|logout-all)$"
    )
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1

        @given(case=op.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(
                headers={"Authorization": f"Bearer {toks[who_for(case.path)]}"}, checks=CHECKS
            )

        try:
            run()
        except Exception as e:  # collect every operation's failure, not just the first
            failures.append(f"{op.label}: {type(e).__name__}: {str(e)[:1500]}")
    assert operations >= 22
    assert not failures, "\n\n".join(failures)
