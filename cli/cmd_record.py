"""`holdfast record KIND ...`: the recorder daemons, one subcommand per kind of source.

Each kind lives in its own module with `register(record_subparsers)`; adding one (e.g. cameras)
is one line in RECORD_MODULES.
"""

from __future__ import annotations

import argparse
import importlib

RECORD_MODULES = [
    "cli.record_calls",
    "cli.record_camera",
]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("record", help="run a recorder daemon (capture, encode, seal into the spool)")
    rs = p.add_subparsers(dest="record_kind", metavar="KIND", required=True)
    for name in RECORD_MODULES:
        importlib.import_module(name).register(rs)
