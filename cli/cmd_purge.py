"""`holdfast purge`: one purger pass (run by holdfast-purge.timer), or an erasure-request delete."""

from __future__ import annotations

import argparse
import getpass
import sys

from cli.common import CommandError, open_vault, print_json
from vault.retention import holds
from vault.retention.purge import ClockUntrusted, PurgeBusy, PurgeError, Purger

EXIT_CLOCK = 3
EXIT_STORE_FULL = 4
EXIT_BUSY = 6


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "purge",
        help="delete expired, unheld segments (and the oldest unheld above the high-water mark); log each",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be purged; change nothing")
    p.add_argument("--json", action="store_true", help="print the pass's report as JSON")
    p.add_argument(
        "--erase", metavar="SEGMENT_ID", help="delete one segment now (erasure request); refused if held"
    )
    p.add_argument("--reason", help="with --erase: the request this answers")
    p.add_argument("--user", help="with --erase: who asks (default: the OS user)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_vault(args) as v:
        purger = Purger(v)
        try:
            if args.erase:
                purger.delete_segment(
                    args.erase,
                    actor=args.user or getpass.getuser(),
                    role="local-operator",
                    reason=args.reason or "",
                )
                print(f"erased {args.erase}")
                return 0
            report = purger.run(dry_run=args.dry_run)
        except ClockUntrusted as e:
            raise CommandError(str(e), EXIT_CLOCK) from None
        except holds.SegmentHeld as e:
            raise CommandError(f"refused: {e}", 5) from None
        except PurgeError as e:
            raise CommandError(str(e), 2) from None
        except PurgeBusy as e:
            raise CommandError(str(e), EXIT_BUSY) from None
    if args.json:
        print_json(report.as_dict())
    elif args.dry_run:
        for item in report.would_purge:
            print(f"{item['segment']}  {item['reason']}")
        print(f"would purge {len(report.would_purge)} segment(s)")
    else:
        counts = " ".join(f"{k}={n}" for k, n in report.purged.items())
        print(f"purged {counts} resumed={report.resumed} checkpoints={report.checkpoints}")
        for kid in report.keys_destroyed:
            print(f"destroyed seal-{kid}.key (no segment sealed to it keeps its envelope; logged)")
    if report.keys_error:
        print(f"WARNING: {report.keys_error}", file=sys.stderr)
    if report.store_full:
        print(
            "ALERT: the store is above its high-water mark and only held segments are left; "
            "new segments stay in the spool",
        )
        return EXIT_STORE_FULL
    return 0
