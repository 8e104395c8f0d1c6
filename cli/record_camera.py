"""`holdfast record camera CAMERA_ID`: one camera's recorder daemon."""

from __future__ import annotations

import argparse

from cli.common import CommandError, load_config


def register(rs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = rs.add_parser("camera", help="record one camera's RTSP stream into sealed segments (daemon)")
    c.add_argument("camera_id", metavar="CAMERA_ID")
    c.set_defaults(func=record_camera_cmd)


def record_camera_cmd(args: argparse.Namespace) -> int:
    """Validate here (config errors print as for every command), then exec the lean daemon."""
    from recorder.camera import CameraSettings, RecorderError, exec_daemon

    try:
        cam = CameraSettings.from_config(load_config(args), args.camera_id)
    except RecorderError as e:
        raise CommandError(str(e), e.code) from None
    exec_daemon(cam, args.log_level)
    return 0  # not reached
