"""`holdfast`: one entry point, a subcommand per daemon and per admin or auditor task.

A thin layer: each command module parses arguments and calls vault/recorder/api; none of the
logic lives here. Command modules register themselves in COMMAND_MODULES.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cli.common import CommandError
from config.load import ConfigError
from vault.errors import HoldfastError
from vault.ops.logsetup import setup_logging

#: Which module registers each top-level command. Running a command imports only its module
#: (a recorder daemon does not load the web app, argon2 or SQLAlchemy it never uses); `--help`
#: and errors import them all. tests/test_cli.py keeps this map complete.
COMMANDS: dict[str, str] = {
    "init": "cli.cmd_init",
    "config": "cli.cmd_config",
    "notice": "cli.cmd_notice",
    "keys": "cli.cmd_keys",
    "seal": "cli.cmd_seal",
    "segments": "cli.cmd_segments",
    "ingest": "cli.cmd_ingest",
    "record": "cli.cmd_record",
    "call": "cli.cmd_call",
    "ingest-pbx": "cli.cmd_pbx",
    "install": "cli.cmd_install",
    "uninstall": "cli.cmd_install",
    "doctor": "cli.cmd_doctor",
    "check": "cli.cmd_check",
    "metrics": "cli.cmd_metrics",
    "approvals": "cli.cmd_approvals",
    "demo": "cli.cmd_demo",
    "users": "cli.cmd_users",
    "serve": "cli.cmd_serve",
    "verify-export": "cli.cmd_verify_export",
    "hold": "cli.cmd_hold",
    "purge": "cli.cmd_purge",
    "audit": "cli.cmd_audit",
    "store": "cli.cmd_store",
}
COMMAND_MODULES = list(dict.fromkeys(COMMANDS.values()))
_GLOBAL_OPTIONS_WITH_VALUE = ("--config", "--log-level")


def command_word(argv: list[str]) -> str | None:
    """The subcommand named in argv, skipping global options and their values."""
    skip = False
    for tok in argv:
        if skip:
            skip = False
        elif tok in _GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not tok.startswith("-"):
            return tok
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="holdfast",
        description="Holdfast: record cameras and calls, keep each recording exactly as long as promised, prove it.",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $HOLDFAST_CONFIG, else /etc/holdfast/holdfast.toml)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    word = command_word(argv) if argv is not None else None
    modules = [COMMANDS[word]] if word in COMMANDS else COMMAND_MODULES
    for name in modules:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        rc = args.func(args)
    except ConfigError as e:
        where = f"{e.path}: " if e.path else ""
        print(f"holdfast: configuration error in {where}".rstrip(": ") + ":", file=sys.stderr)
        for err in e.errors:
            print(f"  {err}", file=sys.stderr)
        return 2
    except CommandError as e:
        print(f"holdfast: {e}", file=sys.stderr)
        return e.code
    except HoldfastError as e:
        print(f"holdfast: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        logging.shutdown()
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
