"""`holdfast record calls LINE`: the live call recorder for one line (systemd holdfast-calls@LINE)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import CommandError, load_config


def register(rs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = rs.add_parser(
        "calls",
        help="capture one call line with PyAudio, seal calls into the spool; call control on a unix socket",
    )
    p.add_argument("line", metavar="LINE", help="call-line id from the config ([[lines]] id)")
    p.add_argument(
        "--socket",
        type=Path,
        help="control socket (default: <paths.scratch>/calls-LINE/control.sock)",
    )
    p.set_defaults(func=run)


#: EX_CONFIG: holdfast-calls@.service lists it in RestartPreventExitStatus=, so a missing sound
#: device leaves the unit failed with this reason instead of restarting every RestartSec.
EXIT_NO_DEVICE = 78


def run(args: argparse.Namespace) -> int:
    from recorder.callcontrol import CallError
    from recorder.calls import NoInputDevice, run_line
    from vault.ops.notify import notify

    cfg = load_config(args)
    try:
        return run_line(cfg, args.line, args.socket)
    except NoInputDevice as e:
        notify(f"STATUS={e}")
        raise CommandError(str(e), code=EXIT_NO_DEVICE) from None
    except CallError as e:
        raise CommandError(str(e)) from None
