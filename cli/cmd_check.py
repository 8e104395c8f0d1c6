"""`holdfast check [--deep] [--json]`: index, store, logs, holds and spool against each other.

Read-only; exit 0 when clean, 1 when problems were found (each named with what to do).
"""

from __future__ import annotations

import argparse

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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vault.check import run_check

    with open_vault(args) as v:
        report = run_check(v, deep=args.deep)
    if args.json:
        print_json(report.as_json())
    else:
        print(report.render())
    return 0 if report.ok else 1
