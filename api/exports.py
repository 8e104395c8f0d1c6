"""Exports over HTTP: a slot per export, the size limit, and the zip streamed as it is assembled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import HTTPException
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from api.state import AppState
from vault import evidence


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
