"""Structured events, one per line (key=value), with or without the stdlib ``logging`` tree.

Why a second back end: most Holdfast processes log through ``logging`` (see vault.ops.logsetup), but the
camera recorder runs once per camera and its Python footprint is budgeted per camera
(docs/benchmarks.md), where ``import logging`` alone costs 0.7 MB. A process that calls
:func:`write_directly` writes lines itself; every other process routes them to ``logging``.
Both go through :func:`format_line`, so journald and grep see one format.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

# The same numbers as logging's levels, so either back end takes them.
DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50
LEVEL_NAMES = {DEBUG: "debug", INFO: "info", WARNING: "warning", ERROR: "error", CRITICAL: "critical"}

#: Threshold of the direct writer, or None while events go to ``logging``.
_direct_level: int | None = None
#: One line at a time from the recorder's camera threads (logging has its own handler lock).
_write_lock = threading.Lock()


#: Characters that would end, split or disguise a line: C0 controls, DEL, C1 controls, and the
#: Unicode line and paragraph separators. Each is written as an escape, never raw. (No `re`:
#: the camera recorder's per-process budget counts every module it imports.)
_CONTROL = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029))
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c not in _CONTROL:
        return c
    return _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def fmt_value(v: Any) -> str:
    """One value of a key=value line: quoted when it holds spaces, quotes or `=`; control
    characters (NUL, CR, LF, ESC, ...) are always escaped, so attacker text cannot forge a line."""
    s = str(v)
    control = not s.isprintable() and any(c in _CONTROL for c in s)
    if s == "" or control or any(c in s for c in ' "='):
        s = s.replace("\\", "\\\\").replace('"', '\\"')
        if control:
            s = "".join(_escape(c) for c in s)
        s = '"' + s + '"'
    return s


def format_line(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in fields.items())


def timestamp(created: float) -> str:
    """UTC with milliseconds, as ``datetime.isoformat(timespec="milliseconds")`` writes it."""
    frac, whole = math.modf(created)  # rounded to the µs first, as datetime does
    seconds, micros = int(whole), round(frac * 1_000_000)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros // 1000:03d}+00:00"


def level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    for number, name in LEVEL_NAMES.items():
        if name == level.lower():
            return number
    raise ValueError(f"unknown log level {level!r} (use debug, info, warning, error or critical)")


def write_directly(level: str | int = INFO) -> None:
    """Write events straight to stderr from now on (lean daemons only; never imports logging)."""
    global _direct_level
    _direct_level = level_number(level)


class EventLog:
    """A named source of events; quacks like the part of ``logging.Logger`` that ``event`` uses."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def log(self, level: int, msg: str, extra: dict[str, Any] | None = None) -> None:
        if _direct_level is None:
            # Every process that has not chosen direct output has configured logging already.
            import logging

            logging.getLogger(self.name).log(level, msg, extra=extra)
            return
        if level < _direct_level:
            return
        fields: dict[str, Any] = {
            "ts": timestamp(time.time()),
            "level": LEVEL_NAMES.get(level, str(level)),
            "logger": self.name,
            "event": msg,
        }
        fields.update((extra or {}).get("kv", {}))
        line = format_line(fields) + "\n"
        with _write_lock:
            sys.stderr.write(line)
            sys.stderr.flush()


def event(logger: Any, name: str, level: int = INFO, **kv: Any) -> None:
    """Log one event with fields: ``event(log, "ingest.indexed", segment=id, source=src)``.

    ``logger`` is a ``logging.Logger`` or an :class:`EventLog`.
    """
    logger.log(level, name, extra={"kv": kv})
