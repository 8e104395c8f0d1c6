"""`holdfast ingest`: the daemon that verifies, indexes and stores what recorders put in the spool."""

from __future__ import annotations

import argparse
import signal
import threading

from cli.common import open_vault
from vault.store.ingest import Ingestor


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    i = sub.add_parser("ingest", help="verify, index and store what recorders put in the spool (daemon)")
    i.add_argument("--once", action="store_true", help="drain the spool and exit")
    i.set_defaults(func=ingest_cmd)


def ingest_cmd(args: argparse.Namespace) -> int:
    with open_vault(args) as v:
        ing = Ingestor(v)
        if args.once:
            st = ing.scan()
            print(
                f"indexed={st.indexed} duplicates={st.duplicates} gaps={st.gaps} rejected={st.rejected} "
                f"deferred={st.deferred} erasures={st.erasures}"
            )
            return 0
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        from vault.ops.notify import notify

        ing.run(stop, on_ready=lambda: notify("READY=1", f"STATUS=watching {v.cfg.paths.spool}"))
        notify("STOPPING=1")
    return 0
