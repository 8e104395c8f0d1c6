"""The compliance report ("nothing outlived its deadline without a hold"), defined once.

Why in the vault: `holdfast audit report` (CLI), `GET /api/v1/audit/compliance` (API) and the
/metrics held/overdue gauges must count the same things the same way; the API may not import the
CLI (layering: config <- vault <- api/recorder <- cli), so the logic lives here.

Overdue = stored, not held, deadline passed: 0 whenever the purger keeps up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from vault.index.schema import Hold, HoldSegment, HoldSource, Segment
from vault.people.notice import notice_versions
from vault.retention import holds
from vault.retention.purge import REASONS, policy_version
from vault.timeutil import iso
from vault.vault import Vault


def compliance_report(v: Vault, now: datetime, since: datetime | None = None) -> dict[str, Any]:
    """Per class: stored, held, overdue (past deadline, unheld, still here), oldest unheld age."""
    held = holds.held_clause(now)
    classes: dict[str, Any] = {}
    with v.sessions() as s:
        for name, cls in v.cfg.retention.items():
            base = (Segment.retention_class == name, Segment.state == "stored")
            n = s.scalar(select(func.count()).select_from(Segment).where(*base)) or 0
            n_held = s.scalar(select(func.count()).select_from(Segment).where(*base, held)) or 0
            overdue = (
                s.scalar(
                    select(func.count()).select_from(Segment).where(*base, ~held, Segment.deadline < now)
                )
                or 0
            )
            oldest = s.scalar(select(func.min(Segment.end)).where(*base, ~held))
            classes[name] = {
                "segments": n,
                "held": n_held,
                "overdue": overdue,
                "oldest_unheld_age_days": round((now - oldest).total_seconds() / 86400, 3)
                if oldest
                else None,
                "limit_days": cls.days,
                "limit": cls.describe(),
                "purpose": cls.purpose,
                "policy_version": policy_version(v.cfg, name),
            }
        purges = {r: 0 for r in REASONS}
        purges.update(v.purge_log.counts_by_reason(s, since))
        hold_rows = []
        for h in s.scalars(select(Hold).where(holds.active_clause(now)).order_by(Hold.created_at)):
            d = holds.hold_dict(h, s)
            by_seg = select(HoldSegment.segment_id).where(HoldSegment.hold_id == h.id)
            by_src = select(HoldSource.source).where(HoldSource.hold_id == h.id)
            cond = Segment.id.in_(by_seg)
            if h.start is not None and h.end is not None:
                cond = cond | (
                    Segment.source.in_(by_src) & (Segment.start <= h.end) & (Segment.end >= h.start)
                )
            d["segments_held"] = s.scalar(
                select(func.count()).select_from(Segment).where(Segment.state == "stored", cond)
            )
            hold_rows.append(d)
        stuck = s.scalar(select(func.count()).select_from(Segment).where(Segment.state == "purging")) or 0
    return {
        "generated_at": iso(now),
        "purges_since": iso(since) if since else None,
        "classes": classes,
        "purges": purges,
        "purging_unfinished": stuck,
        "holds": hold_rows,
        # The version printed under each site's published notice (`holdfast notice`): equal
        # versions prove the notice states the rules this report was computed against.
        "notice_versions": notice_versions(v.cfg),
    }
