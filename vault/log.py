"""Structured logs: one event per line, key=value, so journald and grep both read them."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any


def _fmt(v: Any) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' "=\n\t'):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields.update(getattr(record, "kv", {}))
        if record.exc_info and record.exc_info[1] is not None:
            fields["exc"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())


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


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **kv: Any) -> None:
    """Log one event with fields: `event(log, "ingest.indexed", segment=id, source=src)`."""
    logger.log(level, name, extra={"kv": kv})
