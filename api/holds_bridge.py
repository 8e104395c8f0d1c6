"""Incidents and legal holds: an incident's hold is a vault.retention.holds hold on its cameras and range.

vault.retention.holds logs every hold change in the access log within the same transaction.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.accesslog import bounded
from api.deps import Principal
from api.state import AppState
from vault.index.schema import Incident
from vault.retention import holds


def place(st: AppState, session: Session, incident: Incident, who: Principal) -> str:
    h = holds.add_hold(
        session,
        st.vault.access_log,
        actor=who.name,
        role=who.role,
        reason=bounded(f"incident:{incident.id}: {incident.description}"),
        now=st.vault.clock(),
        sources=list(incident.cameras),
        start=incident.start,
        end=incident.end,
        incident=str(incident.id),
        known_sources={c.id for c in st.cfg.cameras},
    )
    return h.id


def release(st: AppState, session: Session, incident: Incident, who: Principal, reason: str) -> None:
    if incident.hold_id is None:
        return
    holds.release_hold(
        session,
        st.vault.access_log,
        incident.hold_id,
        actor=who.name,
        role=who.role,
        reason=bounded(f"incident:{incident.id}: {reason}"),
        now=st.vault.clock(),
        allowed=lambda _actor, _perm: who.role == "dpo",
    )
