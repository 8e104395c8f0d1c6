"""`holdfast users add|list|set-role|set-sites|disable|enable|remove|unlock|logout`: accounts.

The console's operator acts as the OS user (role `local-operator`, as `holdfast hold` does);
every change is an access-log entry naming them (vault.people.users). Running sessions see a change
at their next request.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import Any

from cli.common import CommandError, load_config, print_json
from vault.index.schema import User
from vault.people.users import ROLES, Actor, UnknownUser, UserError

LOCAL_ROLE = "local-operator"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    u = sub.add_parser("users", help="accounts for the web page and API")
    us = u.add_subparsers(dest="users_cmd", metavar="ACTION", required=True)
    a = us.add_parser("add", help="create an account (password read from stdin)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--site", action="append", default=[], help="site id (security role; repeatable)")
    a.add_argument(
        "--password-stdin", action="store_true", required=True, help="read the password from stdin"
    )
    a.set_defaults(func=users_add)
    ls = us.add_parser("list", help="accounts as JSON (no hashes)")
    ls.set_defaults(func=users_list)
    r = us.add_parser("set-role", help="change an account's role (security needs --site)")
    r.add_argument("name")
    r.add_argument("role", choices=ROLES)
    r.add_argument("--site", action="append", default=[], help="site id (security role; repeatable)")
    r.set_defaults(func=set_role)
    ss = us.add_parser("set-sites", help="change a security account's sites")
    ss.add_argument("name")
    ss.add_argument("sites", nargs="+", metavar="SITE")
    ss.set_defaults(func=set_sites)
    for action, text in (
        ("disable", "refuse logins and end every session of the account"),
        ("enable", "allow a disabled account to log in again"),
        ("remove", "delete the account and its sessions"),
        ("unlock", "clear the failed-login lock"),
        ("logout", "log the account out everywhere (end every session and token)"),
    ):
        p = us.add_parser(action, help=text)
        p.add_argument("name")
        p.set_defaults(func=simple, action=action)


def _check_sites(cfg: Any, sites: list[str]) -> None:
    known = {s.id for s in cfg.sites}
    for site in sites:
        if site not in known:
            raise CommandError(f"unknown site {site!r} (configured: {', '.join(sorted(known))})")


def _change(args: argparse.Namespace, change: Callable[..., Any]) -> Any:
    """Run one vault.people.users change as the OS user, in one transaction."""
    from vault.vault import Vault

    with Vault(load_config(args)) as v:
        v.migrate()
        try:
            with v.sessions.begin() as s:
                return change(s, v.access_log, Actor(getpass.getuser(), LOCAL_ROLE), v.clock())
        except UnknownUser as e:
            raise CommandError(str(e), 2) from None
        except UserError as e:
            raise CommandError(str(e)) from None


def users_add(args: argparse.Namespace) -> int:
    from vault.people.users import add_user

    _check_sites(load_config(args), args.site)
    password = sys.stdin.readline().rstrip("\r\n")
    _change(
        args,
        lambda s, al, by, now: add_user(
            s, args.name, args.role, args.site, password, now, access_log=al, by=by
        ),
    )
    print(
        f"user {args.name} added with role {args.role}"
        + (f" for sites {', '.join(args.site)}" if args.site else "")
    )
    return 0


def users_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from vault.vault import Vault

    with Vault(load_config(args)) as v, v.sessions() as s:
        now = v.clock()
        print_json(
            [
                {
                    "name": u.name,
                    "role": u.role,
                    "sites": u.sites,
                    "disabled": u.disabled,
                    "locked": bool(u.locked_until and u.locked_until > now),
                    "failed_logins": u.failed_logins,
                }
                for u in s.scalars(select(User).order_by(User.name))
            ]
        )
    return 0


def set_role(args: argparse.Namespace) -> int:
    from vault.people.users import set_role as change

    _check_sites(load_config(args), args.site)
    u = _change(args, lambda s, al, by, now: change(s, al, by, args.name, args.role, args.site, now))
    print(f"user {u.name}: role {u.role}" + (f", sites {', '.join(u.sites)}" if u.sites else ""))
    return 0


def set_sites(args: argparse.Namespace) -> int:
    from vault.people.users import set_sites as change

    _check_sites(load_config(args), args.sites)
    u = _change(args, lambda s, al, by, now: change(s, al, by, args.name, args.sites, now))
    print(f"user {u.name}: sites {', '.join(u.sites)}")
    return 0


def simple(args: argparse.Namespace) -> int:
    from vault.people import users

    name = args.name
    if args.action in ("disable", "enable"):
        off = args.action == "disable"
        _change(args, lambda s, al, by, now: users.set_disabled(s, al, by, name, off, now))
        print(f"user {name} {args.action}d" + (" (every session ended)" if off else ""))
    elif args.action == "remove":
        _change(args, lambda s, al, by, now: users.remove_user(s, al, by, name, now))
        print(f"user {name} removed")
    elif args.action == "unlock":
        _change(args, lambda s, al, by, now: users.unlock(s, al, by, name, now))
        print(f"user {name} unlocked")
    else:
        n = _change(args, lambda s, al, by, now: users.logout_everywhere(s, al, by, name, now))
        print(f"user {name} logged out everywhere: {n} session(s) ended")
    return 0
