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
from vault.log import setup_logging

COMMAND_MODULES = [
    "cli.cmd_init",
    "cli.cmd_config",
    "cli.cmd_keys",
    "cli.cmd_segments",
    "cli.cmd_record",
    "cli.cmd_call",
    "cli.cmd_pbx",
    "cli.cmd_install",
    "cli.cmd_doctor",
    "cli.cmd_metrics",
    "cli.cmd_demo",
    "cli.cmd_api",
    "cli.cmd_hold",
    "cli.cmd_purge",
    "cli.cmd_audit",
]


def build_parser() -> argparse.ArgumentParser:
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
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
