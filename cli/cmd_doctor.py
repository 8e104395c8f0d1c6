"""`holdfast doctor [--json]`: OK / FAIL per check with the fix; non-zero exit on any FAIL."""

from __future__ import annotations

import argparse

from appliance import doctor
from cli.common import print_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "doctor",
        help="check config, keys, ffmpeg, disk, clock, database, cameras and units; print fixes",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--camera-timeout", type=float, default=3.0, metavar="S")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    checks = doctor.run_checks(args.config, camera_timeout=args.camera_timeout)
    if args.json:
        print_json(doctor.as_json(checks))
    else:
        print(doctor.render(checks))
    return 1 if any(c.status == "FAIL" for c in checks) else 0
