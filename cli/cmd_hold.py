"""`holdfast hold add|list|release`: legal holds from the appliance's console (the local operator).

The CLI acts as the local operator: whoever can run it on the box already holds the database.
The web API enforces its own roles (the `dpo` role releases) through the same `allowed` hook.
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from cli.common import CommandError, open_vault, print_json
from vault.retention import holds
from vault.timeutil import iso, parse_iso
from vault.vault import Vault

LOCAL_ROLE = "local-operator"
T = TypeVar("T")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    h = sub.add_parser("hold", help="place, list and release legal holds")
    hs = h.add_subparsers(dest="hold_cmd", metavar="ACTION", required=True)
    a = hs.add_parser("add", help="hold sources over a time range (also segments ingested there later)")
    a.add_argument(
        "--source", action="append", default=[], metavar="ID", help="camera or line id, repeatable"
    )
    a.add_argument(
        "--segment", action="append", default=[], metavar="ID", help="hold named segments, repeatable"
    )
    a.add_argument("--from", dest="frm", metavar="ISO", help="start of the held range (with offset)")
    a.add_argument("--to", metavar="ISO", help="end of the held range (with offset)")
    a.add_argument("--reason", required=True, help="why this footage must outlive its deadline")
    a.add_argument("--incident", help="incident or case reference")
    a.add_argument("--until", metavar="ISO", help="when the hold ends by itself (default: until released)")
    a.add_argument("--user", help="who places the hold (default: the OS user)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=add_cmd)
    ls = hs.add_parser("list", help="holds, active first")
    ls.add_argument("--active", action="store_true", help="only holds not released")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_cmd)
    r = hs.add_parser("release", help="release a hold (needs the release permission and a reason)")
    r.add_argument("hold_id", metavar="HOLD_ID")
    r.add_argument("--reason", required=True)
    r.add_argument("--user", help="who releases it (default: the OS user)")
    r.set_defaults(func=release_cmd)


def _time(value: str | None, what: str):  # type: ignore[no-untyped-def]
    if value is None:
        return None
    try:
        return parse_iso(value, what)
    except ValueError as e:
        raise CommandError(str(e), 2) from None


def local_operator_allowed(actor: str, permission: str) -> bool:
    """The console operator: root or the holdfast service account (who own the index anyway)."""
    return os.geteuid() == 0 or getpass.getuser() == "holdfast"


def _change(args: argparse.Namespace, change: Callable[[Vault, Session, datetime], T]) -> tuple[T, datetime]:
    """Run one change to the holds in a transaction at the vault's now; a refusal exits 2."""
    with open_vault(args) as v:
        v.migrate()
        now = v.clock()
        try:
            with v.sessions.begin() as s:
                return change(v, s, now), now
        except holds.HoldError as e:
            raise CommandError(str(e), 2) from None


def add_cmd(args: argparse.Namespace) -> int:
    start, end, until = _time(args.frm, "--from"), _time(args.to, "--to"), _time(args.until, "--until")

    def add(v: Vault, s: Session, now: datetime) -> dict[str, Any]:
        h = holds.add_hold(
            s,
            v.access_log,
            actor=args.user or getpass.getuser(),
            role=LOCAL_ROLE,
            reason=args.reason,
            now=now,
            sources=args.source,
            start=start,
            end=end,
            segment_ids=args.segment,
            incident=args.incident,
            until=until,
            known_sources={c.id for c in v.cfg.cameras} | {ln.id for ln in v.cfg.lines},
        )
        return holds.hold_dict(h, s)

    d, _now = _change(args, add)
    if args.json:
        print_json(d)
    else:
        print(d["id"])
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    with open_vault(args) as v:
        v.migrate()
        now = v.clock()
        with v.sessions() as s:
            rows = [holds.hold_dict(h, s) for h in holds.list_holds(s, include_released=not args.active)]
    for d in rows:
        d["active"] = d["released_at"] is None and (d["until"] is None or parse_iso(d["until"]) > now)
    if args.json:
        print_json(rows)
        return 0
    print(f"{'ID':16}  {'ACTIVE':6}  {'SOURCES':20} {'FROM':22} {'TO':22} {'BY':12} REASON")
    for d in rows:
        srcs = ",".join(d["sources"]) or f"{len(d['segments'])} segment(s)"
        print(
            f"{d['id']:16}  {'yes' if d['active'] else 'no':6}  {srcs:20} {d['from'] or '-':22} "
            f"{d['to'] or '-':22} {d['created_by']:12} {d['reason']}"
        )
    return 0


def release_cmd(args: argparse.Namespace) -> int:
    h, now = _change(
        args,
        lambda v, s, now: holds.release_hold(
            s,
            v.access_log,
            args.hold_id,
            actor=args.user or getpass.getuser(),
            role=LOCAL_ROLE,
            reason=args.reason,
            now=now,
            allowed=local_operator_allowed,
        ),
    )
    print(f"released {h.id} at {iso(now)}")
    return 0
