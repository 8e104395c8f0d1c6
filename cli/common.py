"""What every command needs: the config from --config/HOLDFAST_CONFIG, the vault, output helpers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import config as config_pkg
from config.model import HoldfastConfig

if TYPE_CHECKING:
    from vault.vault import Vault


class CommandError(Exception):
    """An error for the operator; printed without a traceback, exit status 1 (or `code`)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def load_config(args: argparse.Namespace) -> HoldfastConfig:
    return config_pkg.load(getattr(args, "config", None))


def open_vault(args: argparse.Namespace) -> Vault:
    from vault.vault import Vault  # SQLAlchemy only for the commands that touch the index

    return Vault(load_config(args))


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


Actions = argparse._SubParsersAction  # type: ignore[type-arg]


def command_with_actions(sub: Actions, command: str, help: str) -> Actions:
    """Register `holdfast COMMAND ACTION ...` (an ACTION is required); add each with `action`."""
    p = sub.add_parser(command, help=help)
    return p.add_subparsers(dest=f"{command}_cmd", metavar="ACTION", required=True)


def action(
    actions: Actions, name: str, run: Callable[[argparse.Namespace], int], help: str
) -> argparse.ArgumentParser:
    """Register one ACTION, run by `run`; returns its parser for its own options."""
    p = actions.add_parser(name, help=help)
    p.set_defaults(func=run)
    return p
