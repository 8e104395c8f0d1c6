"""`holdfast config check|show`."""

from __future__ import annotations

import argparse
import json
import sys

from cli.common import Actions, action, command_with_actions, load_config, print_json
from config.law import legal_findings


def register(sub: Actions) -> None:
    s = command_with_actions(sub, "config", "check or show the configuration")
    action(
        s,
        "check",
        check,
        "validate the configuration and the privacy law at each site; non-zero exit on error",
    )
    sh = action(s, "show", show, "print the effective configuration (paths resolved)")
    sh.add_argument("--json", action="store_true", help="JSON output (the default)")


def check(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    findings = legal_findings(cfg)
    for f in findings:
        print(f"holdfast: {f}", file=sys.stderr)
    if any(f.level == "error" for f in findings):
        return 2
    print(
        f"ok: {len(cfg.sites)} site(s), {len(cfg.cameras)} camera(s), {len(cfg.lines)} call line(s), "
        f"{len(cfg.retention)} retention class(es): "
        + ", ".join(f"{n} {c.describe()}" for n, c in cfg.retention.items())
    )
    return 0


def show(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    print_json(json.loads(cfg.model_dump_json()))
    return 0
