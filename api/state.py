"""What the app holds between requests: the vault, the access log, export slots, the media-layout cache.

View tickets are not held here: they live in the index (vault.index.tickets), so every API worker
process serves the views any of them logged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from api.pools import Pools
from config.model import HoldfastConfig
from vault.index import tickets
from vault.index.tickets import ViewTicket
from vault.vault import Vault

__all__ = ["AppState", "ViewTicket"]


@dataclass
class AppState:
    vault: Vault
    tls: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    media_cache: OrderedDict[Any, Any] = field(default_factory=OrderedDict)
    #: The worker's thread pools (api/pools.py), made by the app's lifespan in the worker's loop.
    pools: Pools | None = None

    @property
    def cfg(self) -> HoldfastConfig:
        """The configuration the vault was opened with: one copy, so the two cannot disagree."""
        return self.vault.cfg

    def issue_ticket(
        self,
        user_id: int,
        source: str,
        segment_ids: set[str],
        now: datetime,
        shifts: dict[str, float] | None = None,
        session: Session | None = None,
    ) -> tuple[str, datetime]:
        """A ticket for one logged view, and when it expires (`[api] view_tickets_per_user` cap).
        With `session`, in the caller's transaction (the one writing the view's log entry)."""
        if session is not None:
            per_user = self.cfg.api.view_tickets_per_user
            return tickets.issue(session, user_id, source, segment_ids, now, per_user, shifts)
        with self.vault.sessions.begin() as s:
            return self.issue_ticket(user_id, source, segment_ids, now, shifts, s)

    def ticket(self, token: str, now: datetime) -> ViewTicket | None:
        with self.vault.sessions() as s:
            return tickets.lookup(s, token, now)

    def cached(self, key: Any) -> Any:
        """What remember() kept about a segment's plaintext layout (init section, decode times)."""
        with self._lock:
            return self.media_cache.get(key)

    def remember(self, key: Any, value: Any) -> None:
        with self._lock:
            self.media_cache[key] = value
            while len(self.media_cache) > 100_000:
                self.media_cache.popitem(last=False)
