"""One error shape for every 4xx/5xx: `{"detail": "what is wrong and what to do"}`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorOut(BaseModel):
    detail: str


_E = {"model": ErrorOut}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_E, "description": "malformed request (times, ids, ranges)"},
    401: {**_E, "description": "not logged in"},
    403: {**_E, "description": "logged in, but this role or site may not do this"},
    404: {**_E, "description": "no such object"},
    409: {**_E, "description": "the object is in a state that does not allow this"},
    413: {**_E, "description": "request body over the route's limit, or an export over `max_export_bytes`"},
}
#: Exports are also bounded in number and need a scratch space of their own.
EXPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    429: {**_E, "description": "`max_concurrent_exports` exports are running: retry later"},
    503: {**_E, "description": "the export scratch space is unusable (not tmpfs, or shared with the PBX)"},
}
