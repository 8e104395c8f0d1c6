"""`holdfast record camera CAMERA_ID [CAMERA_ID ...]` / `--site SITE`: the camera recorder daemon."""

from __future__ import annotations

import argparse

from cli.common import CommandError, load_config


def register(rs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = rs.add_parser(
        "camera",
        help="record cameras' RTSP streams into sealed segments (daemon; one thread and ffmpeg per camera)",
    )
    c.add_argument("camera_ids", nargs="*", metavar="CAMERA_ID", help="the cameras this process records")
    c.add_argument("--site", metavar="SITE", help="record every enabled camera of this site instead")
    c.set_defaults(func=record_camera_cmd)


def record_camera_cmd(args: argparse.Namespace) -> int:
    """Validate here (config errors print as for every command), then exec the lean daemon."""
    from recorder.camera import EXIT_CONFIG, CameraSettings, RecorderError
    from recorder.daemon import exec_daemon

    cfg = load_config(args)
    if bool(args.site) == bool(args.camera_ids):
        raise CommandError("name the cameras to record, or one site with --site SITE (not both)", 2)
    ids: list[str] = list(dict.fromkeys(args.camera_ids))
    if args.site:
        if args.site not in {s.id for s in cfg.sites}:
            raise CommandError(f"unknown site {args.site!r}: not in the config's [[sites]]", EXIT_CONFIG)
        ids = [c.id for c in cfg.cameras if c.site == args.site and c.enabled]
        if not ids:
            raise CommandError(f"site {args.site!r} has no enabled cameras to record", EXIT_CONFIG)
    try:
        cams = [CameraSettings.from_config(cfg, i) for i in ids]
    except RecorderError as e:
        raise CommandError(str(e), e.code) from None
    exec_daemon(cams, args.log_level)
    return 0  # not reached
