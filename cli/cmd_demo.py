"""`holdfast demo --dir DIR` (what `make demo` runs): the whole appliance, supervised (appliance/demo.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.demo import Demo


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo", help="run cameras, a call line, ingest, purger and the API on embedded defaults"
    )
    p.add_argument("--dir", type=Path, default=Path("demo-data"))
    p.add_argument("--duration", type=float, default=None, help="stop by itself after S seconds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return Demo(args.dir).run(duration=args.duration)
