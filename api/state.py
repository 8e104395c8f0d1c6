"""What the app holds between requests: the vault, the access log, live view tickets."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from config.model import HoldfastConfig
from vault.vault import Vault

TICKET_MINUTES = 60


@dataclass(frozen=True)
class ViewTicket:
    """One logged view (a playlist): its segment fetches are covered by that one access-log entry."""

    user_id: int
    source: str
    segment_ids: frozenset[str]
    expires: datetime
    #: Seconds each segment's decode times are moved to, so a playlist plays as one timeline.
    shifts: dict[str, float] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class AppState:
    cfg: HoldfastConfig
    vault: Vault
    tls: bool = False
    _tickets: dict[str, ViewTicket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Bounds the argon2 password checks running at once (`[api] max_password_checks`).
    password_gate: threading.Semaphore = field(default_factory=lambda: threading.BoundedSemaphore(2))
    media_cache: OrderedDict[Any, Any] = field(default_factory=OrderedDict)

    def issue_ticket(
        self,
        user_id: int,
        source: str,
        segment_ids: set[str],
        now: datetime,
        shifts: dict[str, float] | None = None,
    ) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            for k in [k for k, t in self._tickets.items() if t.expires <= now]:
                del self._tickets[k]
            self._tickets[token] = ViewTicket(
                user_id,
                source,
                frozenset(segment_ids),
                now + timedelta(minutes=TICKET_MINUTES),
                dict(shifts or {}),
            )
        return token

    def ticket(self, token: str, now: datetime) -> ViewTicket | None:
        with self._lock:
            t = self._tickets.get(token)
        if t is None or t.expires <= now:
            return None
        return t

    def cached(self, key: Any) -> Any:
        """What remember() kept about a segment's plaintext layout (init section, decode times)."""
        with self._lock:
            return self.media_cache.get(key)

    def remember(self, key: Any, value: Any) -> None:
        with self._lock:
            self.media_cache[key] = value
            while len(self.media_cache) > 100_000:
                self.media_cache.popitem(last=False)
