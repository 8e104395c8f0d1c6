"""Exports over HTTP: a slot per export, the size limit, the access log, and the zip streamed as
it is assembled. Incident and subject-request exports both go through `stream_export`; each
supplies its parts, its builder (vault.exports.evidence.build_signed underneath) and its log details."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from api import accesslog
from api.deps import Principal
from api.state import AppState
from vault.exports import evidence


def export_slot(st: AppState) -> evidence.ExportSlot:
    """One of `[api] max_concurrent_exports` slots, or 429; the export's scratch must be usable."""
    try:
        return evidence.ExportSlot(evidence.export_scratch(st.cfg), st.cfg.api.max_concurrent_exports)
    except evidence.ExportBusy as e:
        raise HTTPException(429, str(e), headers={"Retry-After": "30"}) from None
    except evidence.ExportError as e:
        raise HTTPException(503, str(e)) from None


def check_size(st: AppState, segments: list[Any]) -> None:
    try:
        evidence.check_export_size(segments, st.cfg.api.max_export_bytes)
    except evidence.ExportTooLarge as e:
        raise HTTPException(413, str(e)) from None


def zip_response(built: evidence.Built, slot: evidence.ExportSlot, name: str) -> StreamingResponse:
    """Stream the zip as it is assembled; the slot is held until the last byte (or a disconnect)."""

    def body() -> Iterator[bytes]:
        try:
            yield from built.stream()
        finally:
            slot.release()

    def cleanup() -> None:
        built.discard()
        slot.release()

    return StreamingResponse(
        body(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        background=BackgroundTask(cleanup),
    )


def stream_export(
    st: AppState,
    request: Request,
    who: Principal,
    purpose: str,
    parts: Sequence[evidence.ExportPart],
    start: datetime,
    end: datetime,
    build: Callable[[], evidence.Built],
    detail: Callable[[evidence.ExportPart], dict[str, Any]],
    name: str,
    after_log: Callable[[], None] | None = None,
) -> StreamingResponse:
    """Check the size, take a slot, build, write one access-log entry per part for [start, end)
    (with `detail(part)`), run `after_log`, then stream the zip named `name-<local time>.zip`.
    A failure at any step releases the slot and the scratch; nothing is sent unless every
    entry was written."""
    check_size(st, [x for p in parts for x in p.segments])
    slot = export_slot(st)
    try:
        built = build()
    except BaseException:
        slot.release()
        raise
    try:
        for p in parts:
            accesslog.record(
                st,
                who,
                "export",
                purpose,
                source=p.source,
                start=start,
                end=end,
                request=request,
                **detail(p),
            )
        if after_log is not None:
            after_log()
    except BaseException:
        built.discard()
        slot.release()
        raise
    return zip_response(built, slot, f"{name}-{datetime.now().strftime('%Y%m%dT%H%M%S')}.zip")
