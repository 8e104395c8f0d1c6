"""`holdfast approvals list`: the four-eyes requests in the index, for an administrator's overview.

Deciding stays with the page and the API: a decision must name an account in an approver role,
and the console's operator is an OS user, not such an account.
"""

from __future__ import annotations

import argparse

from cli.common import open_vault, print_json
from vault.people import approvals


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("approvals", help="four-eyes approval requests (list)")
    s = p.add_subparsers(dest="approvals_cmd", required=True)
    ls = s.add_parser("list", help="requests, newest first")
    ls.add_argument(
        "--state", choices=(approvals.PENDING, approvals.APPROVED, approvals.REFUSED, approvals.BREAK_GLASS)
    )
    ls.add_argument("--requester", help="only this user's requests")
    ls.add_argument("--limit", type=int, default=200)
    ls.add_argument("--json", action="store_true", help="one JSON array")
    ls.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    with open_vault(args) as v:
        now = v.clock()
        with v.sessions() as s:
            rows = [a.as_dict(now) for a in approvals.listing(s, args.requester, args.state, args.limit)]
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(
            f"#{r['id']} {r['state']:<11} {r['action']:<10} {r['requester']:<12} {','.join(r['sources'])} "
            f"{r['start']}..{r['end']} by={r['decided_by'] or '-'} expires={r['expires_at']} purpose={r['purpose']!r}"
        )
    return 0
