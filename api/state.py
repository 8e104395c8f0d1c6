"""What the app holds between requests: the vault, the access log, export slots, the init cache.

View tickets are not held here: they live in the index (vault.tickets), so every API worker
process serves the views any of them logged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from config.model import HoldfastConfig
from vault import tickets
from vault.tickets import ViewTicket
from vault.vault import Vault

__all__ = ["AppState", "ViewTicket"]


@dataclass
class AppState:
    cfg: HoldfastConfig
    vault: Vault
    tls: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    init_cache: OrderedDict[str, int] = field(default_factory=OrderedDict)
    exports_running: int = 0

    def issue_ticket(
        self, user_id: int, source: str, segment_ids: set[str], now: datetime
    ) -> tuple[str, datetime]:
        """A ticket for one logged view, and when it expires (`[api] view_tickets_per_user` cap)."""
        with self.vault.sessions.begin() as s:
            return tickets.issue(s, user_id, source, segment_ids, now, self.cfg.api.view_tickets_per_user)

    def ticket(self, token: str, now: datetime) -> ViewTicket | None:
        with self.vault.sessions() as s:
            return tickets.lookup(s, token, now)

    def remember_init(self, segment_id: str, length: int) -> None:
        with self._lock:
            self.init_cache[segment_id] = length
            while len(self.init_cache) > 100_000:
                self.init_cache.popitem(last=False)
