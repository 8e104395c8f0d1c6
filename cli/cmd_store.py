"""`holdfast store init`: create the S3 bucket with Object Lock, or check an existing one."""

from __future__ import annotations

import argparse

from cli.common import Actions, CommandError, action, command_with_actions, load_config
from vault.errors import StoreError
from vault.store.local import make_store


def register(sub: Actions) -> None:
    s = command_with_actions(sub, "store", "the segment store: create or check the S3 bucket")
    action(
        s,
        "init",
        init_cmd,
        "create the bucket with Object Lock (versioned) when absent; check an existing one's settings",
    )


def init_cmd(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    store = make_store(cfg)
    if cfg.store.kind != "s3":
        cfg.paths.store.mkdir(parents=True, exist_ok=True, mode=0o750)
        print(f'local store at {cfg.paths.store} (nothing to create: [store] kind = "local")')
        return 0
    try:
        print(store.init())  # type: ignore[union-attr]
    except StoreError as e:
        raise CommandError(str(e), 2) from None
    return 0
