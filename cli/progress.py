"""Progress bars for long work: on a terminal only, never in logs or pipes.

Why a helper: `audit verify`, `audit export` and migrations run for minutes on large sites. A
person at a terminal wants to see they advance; a systemd journal, a cron mail or a pipe into
another tool must get only the results. So a bar is drawn (rich, on stderr) only when stderr is
a terminal and $TERM is not "dumb"; otherwise every call is a no-op.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

__all__ = ["AbstractContextManager", "Callable", "bar", "enabled"]


def enabled() -> bool:
    """True when stderr is an interactive terminal (not a pipe, file or journal)."""
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"


@contextmanager
def bar(description: str, total: int | None, unit: str = "") -> Iterator[Callable[..., None]]:
    """Yield `update(done, total=None)`: sets the amount done (and the total once known);
    draws nothing off a terminal."""
    if not enabled():
        yield lambda _done, _total=None: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    count: Any = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        count,
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as p:
        task = p.add_task(description, total=total)
        last = [0.0]

        size = [total]

        def update(done: int, new_total: int | None = None) -> None:
            if new_total is not None:
                size[0] = new_total
                p.update(task, total=new_total)
            # Redraw at most every 0.5 % of the total: the callback runs per entry or block.
            n = size[0]
            if n and done - last[0] < n / 200 and done < n:
                return
            last[0] = done
            p.update(task, completed=done)

        yield update
