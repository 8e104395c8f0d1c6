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
}
