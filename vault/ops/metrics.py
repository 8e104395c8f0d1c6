"""Prometheus metrics computed from the index at scrape time (a custom collector, no counters kept).

Why from the index and not counters in each daemon: the recorders, ingest and the purger are
separate processes (and restart); the index is the one place that already knows every segment,
gap and purge, so a scrape of the API is always complete and survives restarts.

- `holdfast_camera_last_segment_age_seconds{camera}`: now minus the end of the newest indexed
  segment; it grows while a camera (or ingest) is down: the alert to set.
- `holdfast_camera_stored_bytes{camera}`, `holdfast_camera_segments{camera}`.
- `holdfast_camera_gaps_total{camera}` (every recorded gap) and
  `holdfast_camera_reconnects_total{camera}`: gaps that ended with the recorder reconnecting, i.e.
  every gap whose reason is not a clean stop. A gap is written when the recorder reconnects (or
  restarts) after losing the stream, so reconnects = gaps minus those ending a clean shutdown.
- `holdfast_class_segments{class}`, `holdfast_class_held{class}` (covered by an active legal hold,
  `vault.retention.holds.held_clause`), `holdfast_class_overdue{class}` (stored, deadline passed, not held:
  should be 0 between purges); the same definitions as the compliance report (vault/ledger/report.py).
- `holdfast_purges_total{reason}` from the purge log.
- `holdfast_break_glass_total` (every break-glass override, vault/people/approvals.py: alert on any
  increase) and `holdfast_approvals_pending` (requests waiting for a second person).
- `holdfast_store_used_bytes`, `holdfast_store_size_bytes`, `holdfast_store_used_ratio`,
  `holdfast_store_high_water_ratio`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import func, select

from vault.index.schema import Gap, PurgeLogRow, Segment
from vault.people import approvals
from vault.retention import holds
from vault.vault import Vault

#: The Prometheus text exposition format (version 0.0.4) that `exposition()` returns.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Gap reasons that are a deliberate stop, not a lost stream (not counted as reconnects).
CLEAN_STOP_REASONS = ("shutdown", "stopped", "recorder stopped")


#: The per-camera families: holdfast_camera_<name>, kind, help.
PER_CAMERA: tuple[tuple[str, type[GaugeMetricFamily | CounterMetricFamily], str], ...] = (
    (
        "last_segment_age_seconds",
        GaugeMetricFamily,
        "Seconds since the end of the camera's newest indexed segment",
    ),
    ("stored_bytes", GaugeMetricFamily, "Bytes of sealed segments stored for the camera"),
    ("segments", GaugeMetricFamily, "Indexed segments of the camera"),
    ("gaps", CounterMetricFamily, "Recorded gaps in the camera's footage"),
    ("reconnects", CounterMetricFamily, "Gaps that ended with the recorder reconnecting"),
)
#: The per-retention-class gauges: holdfast_class_<name>, help.
PER_CLASS = (
    ("segments", "Indexed segments per retention class"),
    ("held", "Segments under an active legal hold"),
    ("overdue", "Segments past their deadline and not held (0 when the purger keeps up)"),
)


class HoldfastCollector:
    """Registered on a CollectorRegistry; `collect()` runs the queries at each scrape."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def describe(self) -> list[Metric]:
        return []  # no describe-time queries (the registry would run collect() at registration)

    def collect(self) -> Iterator[Metric]:
        v, cfg = self.vault, self.vault.cfg
        now = v.clock()
        cams = [c.id for c in cfg.cameras]
        age, nbytes, nseg, gaps, reconn = (
            kind(f"holdfast_camera_{n}", doc, labels=["camera"]) for n, kind, doc in PER_CAMERA
        )
        line_age = GaugeMetricFamily(
            "holdfast_line_last_segment_age_seconds",
            "Seconds since the end of the call line's newest indexed recording",
            labels=["line"],
        )
        cls_seg, cls_held, cls_over = (
            GaugeMetricFamily(f"holdfast_class_{n}", doc, labels=["class"]) for n, doc in PER_CLASS
        )
        purges = CounterMetricFamily("holdfast_purges", "Segments purged, by reason", labels=["reason"])
        with v.sessions() as s:
            per_source = {
                src: (end, total, count)
                for src, end, total, count in s.execute(
                    select(
                        Segment.source, func.max(Segment.end), func.sum(Segment.stored_bytes), func.count()
                    ).group_by(Segment.source)
                ).all()
            }
            all_gaps = dict(s.execute(select(Gap.source, func.count()).group_by(Gap.source)).all())
            clean_gaps = dict(
                s.execute(
                    select(Gap.source, func.count())
                    .where(Gap.reason.in_(CLEAN_STOP_REASONS))
                    .group_by(Gap.source)
                ).all()
            )
            for cam in cams:
                end, total, count = per_source.get(cam, (None, 0, 0))
                if end is not None:
                    age.add_metric([cam], max(0.0, (now - end).total_seconds()))
                nbytes.add_metric([cam], float(total or 0))
                nseg.add_metric([cam], float(count or 0))
                n = all_gaps.get(cam, 0)
                gaps.add_metric([cam], float(n))
                reconn.add_metric([cam], float(n - clean_gaps.get(cam, 0)))
            for ln in cfg.lines:
                end = per_source.get(ln.id, (None, 0, 0))[0]
                if end is not None:
                    line_age.add_metric([ln.id], max(0.0, (now - end).total_seconds()))
            # Same definitions as the compliance report (vault/ledger/report.py): stored rows only;
            # held = covered by an active hold now (vault.retention.holds); overdue = deadline passed, unheld.
            held = holds.held_clause(now)
            stored = Segment.state == "stored"
            by_class = select(Segment.retention_class, func.count()).where(stored)
            per_class = dict(s.execute(by_class.group_by(Segment.retention_class)).all())
            held_counts = dict(s.execute(by_class.where(held).group_by(Segment.retention_class)).all())
            overdue = dict(
                s.execute(
                    by_class.where(~held, Segment.deadline < now).group_by(Segment.retention_class)
                ).all()
            )
            for name in cfg.retention:
                cls_seg.add_metric([name], float(per_class.get(name, 0)))
                cls_held.add_metric([name], float(held_counts.get(name, 0)))
                cls_over.add_metric([name], float(overdue.get(name, 0)))
            by_reason = dict(
                s.execute(select(PurgeLogRow.reason, func.count()).group_by(PurgeLogRow.reason)).all()
            )
            glass, pending = approvals.counts(s, now)
        overrides = CounterMetricFamily(
            "holdfast_break_glass", "Break-glass overrides (access without a second person)", value=glass
        )
        waiting = GaugeMetricFamily(
            "holdfast_approvals_pending", "Approval requests waiting for a second person", value=pending
        )
        for reason, n in sorted(by_reason.items()):
            purges.add_metric([reason], float(n))
        used, total = v.store.usage()
        store = [
            GaugeMetricFamily(
                "holdfast_store_used_bytes", "Used bytes of the store's filesystem", value=float(used)
            ),
            GaugeMetricFamily(
                "holdfast_store_size_bytes", "Size of the store's filesystem", value=float(total)
            ),
            GaugeMetricFamily(
                "holdfast_store_used_ratio",
                "Used fraction of the store's filesystem",
                # an S3 store has no filesystem to fill: it reports (0, 0)
                value=used / total if total else 0.0,
            ),
            GaugeMetricFamily(
                "holdfast_store_high_water_ratio",
                "Configured high-water mark (purge early above it)",
                value=cfg.purge.high_water_percent / 100.0,
            ),
        ]
        yield from (age, nbytes, nseg, gaps, reconn, line_age, cls_seg, cls_held, cls_over, purges)
        yield from store
        yield from (overrides, waiting)


def registry_for(vault: Vault) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(HoldfastCollector(vault))
    return reg


def exposition(vault: Vault) -> bytes:
    """The Prometheus text format (what `/metrics` serves and `holdfast metrics` prints)."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for(vault))
