"""National and EDPB rules that `holdfast config check` applies to a site's retention classes.

Why in config: these are properties of the configuration alone (a class's period, the site's
country, a line's announcement), checked before anything records. Sources are in docs/privacy.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from config.model import HoldfastConfig, RetentionClass

#: EDPB Guidelines 3/2019 on video devices, para. 121: beyond 72 hours, argue why.
EDPB_HOURS = 72
#: Danish TV-overvaagningsloven 4 c, stk. 4: crime-prevention footage deleted within 30 days.
DK_CRIME_PREVENTION_DAYS = 30


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def _longest_days(cls: RetentionClass) -> int:
    """The longest the class can keep a recording, in days (a calendar month counts as 31)."""
    return cls.days if cls.days is not None else 31 * (cls.months or 0)


def legal_findings(cfg: HoldfastConfig) -> list[Finding]:
    """Warnings an operator should answer and errors that make the config unusable at its site."""
    out: list[Finding] = []
    country = {s.id: s.country for s in cfg.sites}
    camera_sites: dict[str, set[str]] = {}
    for cam in cfg.cameras:
        camera_sites.setdefault(cam.retention, set()).add(country.get(cam.site, ""))
    for name in sorted(camera_sites):
        cls = cfg.retention[name]
        where = f"retention.{name}"
        days = _longest_days(cls)
        if days * 24 > EDPB_HOURS and not cls.justification:
            out.append(
                Finding(
                    "warning",
                    where,
                    f"camera footage kept {cls.describe()} (over {EDPB_HOURS} hours) without a stated "
                    "`justification`: EDPB Guidelines 3/2019 (para. 121) expect the reason to be argued; "
                    "the privacy notice prints it",
                )
            )
        if (
            "DK" in camera_sites[name]
            and cls.crime_prevention
            and days > DK_CRIME_PREVENTION_DAYS
            and not cls.exception
        ):
            out.append(
                Finding(
                    "error",
                    where,
                    f"crime-prevention camera footage at a Danish site kept {cls.describe()}: "
                    f"TV-overvaagningsloven § 4 c, stk. 4 requires deletion within "
                    f"{DK_CRIME_PREVENTION_DAYS} days; shorten the period, or state the stk. 5 "
                    "exception relied on in `exception`",
                )
            )
    for i, line in enumerate(cfg.lines):
        if not line.announced:
            out.append(
                Finding(
                    "error",
                    f"lines[{i}].announced",
                    f"line {line.id!r}: callers must be told at call start that the call is recorded "
                    "(GDPR art. 13); set `announced = true` once the announcement plays",
                )
            )
    return out
