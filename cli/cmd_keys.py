"""`holdfast keys init`."""

from __future__ import annotations

import argparse

from cli.common import load_config
from vault import keys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("keys", help="manage the vault's sealing and signing keys")
    s = p.add_subparsers(dest="keys_cmd", metavar="ACTION", required=True)
    i = s.add_parser(
        "init",
        help="create seal.key/seal.pub (X25519) and sign.key/sign.pub (Ed25519); never overwrites",
    )
    i.set_defaults(func=init)


def init(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    for p in keys.init_keys(cfg.keys.dir):
        print(p)
    return 0
