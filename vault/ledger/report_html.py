"""The compliance report as one self-contained HTML file, for an auditor to read and archive.

Same numbers as `holdfast audit report --json` (vault.ledger.report); this only lays them out as a
report: per retention class the limit against the oldest unheld footage, overdue (0 is what the
purger proves), holds with their reasons and owners, and purges by reason per day as a small
inline SVG chart. Times are in the site's zone, UTC in each time's tooltip. No script, no
external resource: the file reads the same in ten years.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from vault.index.schema import PurgeLogRow
from vault.retention.purge import REASONS
from vault.timeutil import parse_iso
from vault.vault import Vault

COLOURS = {"expired": "#3a7", "disk-pressure": "#d83", "erasure-request": "#47c"}
CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #111; max-width: 60em; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; width: 100%; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
td.n { text-align: right; } .ok { color: #060; font-weight: bold; } .bad { color: #a00; font-weight: bold; }
.note { color: #555; font-size: .9em; }
"""


def purges_by_day(v: Vault) -> dict[str, Counter[str]]:
    """Purged segments per local day (site zone) and reason, oldest day first."""
    tz = ZoneInfo(v.cfg.sites[0].timezone)
    days: dict[str, Counter[str]] = {}
    with v.sessions() as s:
        for reason, at in s.execute(select(PurgeLogRow.reason, PurgeLogRow.purged_at)):
            if at is None:
                continue
            day = at.astimezone(tz).date().isoformat()
            days.setdefault(day, Counter())[str(reason)] += 1
    return dict(sorted(days.items()))


def _chart(days: dict[str, Counter[str]]) -> str:
    if not days:
        return '<p class="note">Nothing purged yet.</p>'
    items = list(days.items())[-60:]
    top = max(sum(c.values()) for _, c in items) or 1
    w, h, bar = 640, 160, max(4, min(24, 600 // len(items)))
    parts = [
        f'<svg role="img" aria-label="purged segments per day by reason" width="{w}" height="{h + 40}" '
        f'viewBox="0 0 {w} {h + 40}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (day, counts) in enumerate(items):
        x, y = 30 + i * (bar + 2), h
        for reason in REASONS:
            n = counts.get(reason, 0)
            if not n:
                continue
            bh = n / top * (h - 10)
            y -= bh
            parts.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{bh:.1f}" fill="{COLOURS.get(reason, "#888")}">'
                f"<title>{escape(day)}: {n} {escape(reason)}</title></rect>"
            )
    parts.append(f'<text x="30" y="{h + 15}" font-size="11">{escape(items[0][0])}</text>')
    parts.append(
        f'<text x="{w - 5}" y="{h + 15}" font-size="11" text-anchor="end">{escape(items[-1][0])}</text>'
    )
    parts.append(f'<text x="0" y="12" font-size="11">{top}</text>')
    for k, reason in enumerate(REASONS):
        parts.append(
            f'<rect x="{30 + k * 150}" y="{h + 25}" width="10" height="10" fill="{COLOURS.get(reason, "#888")}"/>'
            f'<text x="{44 + k * 150}" y="{h + 34}" font-size="11">{escape(reason)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render(v: Vault, rep: dict[str, Any]) -> str:
    """The report `rep` (vault.ledger.report.compliance_report) as an HTML document."""
    site = v.cfg.sites[0]
    tz = ZoneInfo(site.timezone)

    def when(text: str | None) -> str:
        if not text:
            return "–"
        t: datetime = parse_iso(text, "time")
        return f'<time datetime="{escape(text)}" title="UTC {escape(text)}">{t.astimezone(tz):%Y-%m-%d %H:%M:%S}</time>'

    overdue = sum(c["overdue"] for c in rep["classes"].values())
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Holdfast compliance report {escape(rep['generated_at'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Compliance report: {escape(site.name or site.id)}</h1>",
        f"<p>Generated {when(rep['generated_at'])} ({escape(site.timezone)}; hover a time for UTC). "
        f"Purges counted {'since ' + when(rep['purges_since']) if rep['purges_since'] else 'since the start'}.</p>",
        f'<p class="{"ok" if overdue == 0 else "bad"}">'
        + (
            "No footage has outlived its deadline without a legal hold."
            if overdue == 0
            else f"{overdue} segment(s) are past their deadline without a hold."
        )
        + "</p>",
        "<h2>Retention classes</h2>",
        "<table><thead><tr><th>Class</th><th>Purpose</th><th>Limit</th><th>Oldest unheld footage</th>"
        "<th>Stored</th><th>Held</th><th>Overdue</th><th>Policy version</th></tr></thead><tbody>",
    ]
    for name, c in rep["classes"].items():
        age = c["oldest_unheld_age_days"]
        within = c["limit_days"] is None or age is None or age <= c["limit_days"]
        age_text = "–" if age is None else f"{age:.1f} days"
        out.append(
            f"<tr><td>{escape(name)}</td><td>{escape(c['purpose'] or '')}</td><td>{escape(c['limit'])}</td>"
            f'<td class="{"ok" if within else "bad"}">{age_text}</td><td class="n">{c["segments"]}</td>'
            f'<td class="n">{c["held"]}</td><td class="n {"ok" if c["overdue"] == 0 else "bad"}">{c["overdue"]}</td>'
            f"<td><code>{escape(c['policy_version'])}</code></td></tr>"
        )
    out.append("</tbody></table>")
    out.append("<h2>Legal holds (footage kept past its deadline is kept for these)</h2>")
    if rep["holds"]:
        out.append(
            "<table><thead><tr><th>Hold</th><th>Reason</th><th>Placed by</th><th>Placed</th>"
            "<th>Sources</th><th>Range</th><th>Segments held</th></tr></thead><tbody>"
        )
        for hd in rep["holds"]:
            out.append(
                f"<tr><td><code>{escape(hd['id'])}</code></td><td>{escape(hd['reason'] or '')}</td>"
                f"<td>{escape(hd['created_by'] or '')}</td><td>{when(hd['created_at'])}</td>"
                f"<td>{escape(', '.join(hd['sources'] or []))}</td>"
                f'<td>{when(hd["from"])} – {when(hd["to"])}</td><td class="n">{hd["segments_held"]}</td></tr>'
            )
        out.append("</tbody></table>")
    else:
        out.append("<p>No active hold.</p>")
    out.append("<h2>Purges by reason</h2><table><tbody>")
    for reason, n in rep["purges"].items():
        out.append(f'<tr><th>{escape(reason)}</th><td class="n">{n}</td></tr>')
    out.append("</tbody></table>")
    if rep["purging_unfinished"]:
        out.append(
            f'<p class="bad">{rep["purging_unfinished"]} purge(s) unfinished (resumed on the next pass).</p>'
        )
    out.append(f"<h3>Per day ({escape(site.timezone)})</h3>")
    out.append(_chart(purges_by_day(v)))
    out.append(
        '<p class="note">The purge and access logs behind these numbers are verified offline with '
        "<code>holdfast audit export DIR</code> and <code>holdfast audit verify DIR --pubkey sign.pub</code>.</p>"
    )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
