"""`holdfast check [--deep] [--json]`: index, store, logs, holds and spool against each other.

Read-only (but `--repair-holds`, which mends S3 legal holds first); exit 0 when clean, 1 when problems were found (each named with what to do).
"""

from __future__ import annotations

import argparse
import sys

from cli.common import open_vault, print_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "check",
        help="check index, store, logs and spool against each other (read-only); list problems and fixes",
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="also read every blob: SHA-256, authentication and a plaintext scan (reads the whole store)",
    )
    p.add_argument("--json", action="store_true", help='print {"ok": ..., "problems": [...]}')
    p.add_argument(
        "--repair-holds",
        action="store_true",
        help="first set each object's S3 legal hold to what the index's holds say (the only repair it makes)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vault.ops.check import run_check

    with open_vault(args) as v:
        if args.repair_holds:
            from vault.store import legalholds

            for d in legalholds.repair_drift(v):
                print(f"repaired: {d.describe()}", file=sys.stderr)
        report = run_check(v, deep=args.deep)
    if args.json:
        print_json(report.as_json())
    else:
        print(report.render())
    return 0 if report.ok else 1
