"""`holdfast notice`: the privacy notice's camera and call sections, from the enforced config."""

from __future__ import annotations

import argparse
import sys

from cli.common import CommandError, load_config
from config.model import NOTICE_LANGS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "notice",
        help="write the camera and call-recording sections of the privacy notice, and the camera sign",
    )
    p.add_argument("--site", metavar="S", help="site id (default: the only site in the config)")
    p.add_argument("--lang", default="en", choices=NOTICE_LANGS)
    p.add_argument("--format", default="md", choices=["md", "html"], dest="fmt")
    p.set_defaults(func=notice_cmd)


def notice_cmd(args: argparse.Namespace) -> int:
    from vault.people.notice import NoticeError, render_notice

    cfg = load_config(args)
    site = args.site
    if site is None:
        if len(cfg.sites) != 1:
            raise CommandError(
                "the config has several sites: name one with --site " + "|".join(s.id for s in cfg.sites), 2
            )
        site = cfg.sites[0].id
    try:
        sys.stdout.write(render_notice(cfg, site, args.lang, args.fmt))
    except NoticeError as e:
        raise CommandError(str(e), 2) from None
    return 0
