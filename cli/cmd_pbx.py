"""`holdfast ingest-pbx`: seal finished PBX recordings from `[pbx] dir` into the spool (daemon)."""

from __future__ import annotations

import argparse
import signal
import threading

from cli.common import load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ingest-pbx",
        help="watch [pbx] dir: seal finished recordings (NAME.wav|opus|ogg|mp3 + NAME.json) and remove them",
    )
    p.add_argument("--once", action="store_true", help="one pass over the directory, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recorder.pbx import PbxIngestor
    from vault.ops.notify import notify, watchdog_interval

    cfg = load_config(args)
    ing = PbxIngestor(cfg)
    if args.once:
        # One pass cannot see a file settle; the settle time is waited for in-process.
        ing.scan()
        stop = threading.Event()
        stop.wait(cfg.pbx.settle_seconds + 0.1)
        st = ing.scan()
        print(f"sealed={st.sealed} rejected={st.rejected} dropped={st.dropped} waiting={st.waiting}")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    wd = watchdog_interval()
    ing.run(
        stop,
        on_ready=lambda: notify("READY=1", f"STATUS=watching {cfg.pbx.dir}"),
        on_tick=(lambda: notify("WATCHDOG=1")) if wd else None,
    )
    notify("STOPPING=1")
    return 0
