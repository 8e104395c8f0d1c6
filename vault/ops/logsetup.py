"""Structured logs: one event per line, key=value, so journald and grep both read them.

The format lives in vault.ops.events, shared with the lean daemons that write lines without logging.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from vault.ops.events import event, format_line, timestamp

__all__ = ["KeyValueFormatter", "event", "setup_logging"]


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields.update(getattr(record, "kv", {}))
        if record.exc_info and record.exc_info[1] is not None:
            fields["exc"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return format_line(fields)


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, KeyValueFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Migration chatter is not an event an operator acts on.
    logging.getLogger("alembic").setLevel(logging.WARNING)
