"""`holdfast metrics`: the Prometheus exposition the API serves at /metrics, printed (cron, node exporter textfile)."""

from __future__ import annotations

import argparse
import sys

from cli.common import open_vault
from vault.ops.metrics import exposition


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "metrics", help="print Prometheus metrics computed from the index (same as GET /metrics)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_vault(args) as v:
        sys.stdout.write(exposition(v).decode())
    return 0
