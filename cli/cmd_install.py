"""`holdfast install [--root DIR]` and `holdfast uninstall [--purge-data]` (appliance/install.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.install import Installer, default_bin


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "install",
        help="create the holdfast user, directories, keys, /etc/holdfast/holdfast.toml, index; install and enable the units",
    )
    p.add_argument(
        "--root", type=Path, default=Path("/"), help="stage everything under DIR (no user is created)"
    )
    p.add_argument(
        "--bin",
        type=Path,
        default=None,
        help=f"the holdfast executable the units run (default: this installation's, {default_bin()})",
    )
    p.set_defaults(func=install)
    u = sub.add_parser("uninstall", help="stop, disable and remove the units; data stays unless --purge-data")
    u.add_argument("--root", type=Path, default=Path("/"))
    u.add_argument(
        "--purge-data",
        action="store_true",
        help="also delete /etc/holdfast and /var/lib/holdfast (all recordings)",
    )
    u.set_defaults(func=uninstall)


def install(args: argparse.Namespace) -> int:
    inst = Installer(root=args.root, holdfast_bin=args.bin or default_bin())
    for line in inst.install():
        print(line)
    return 0


def uninstall(args: argparse.Namespace) -> int:
    for line in Installer(root=args.root).uninstall(purge_data=args.purge_data):
        print(line)
    return 0
