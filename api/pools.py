"""A worker's threads: a few run requests; work that holds a thread for long runs in pools of its own.

FastAPI runs every sync route and dependency on anyio's default thread limiter, 40 threads by
default. In one Python process those threads take turns at one GIL, and the more of them are
runnable the longer a request that is ready waits for its turn: with 50 concurrent searches on
two cores and two workers, 40 threads a worker gave a p99 of 0.4-1.9 s on PostgreSQL where 2 or 4
gave 85-140 ms, at a higher throughput (docs/benchmarks.md, "API request threads"). So
`[api] threads` (default 4) sizes that limiter once the worker's event loop runs.

With so few request threads, one that sits for long in an argon2 check (64 MiB, and logins
beyond `[api] max_password_checks` queue for it), an export's build, a thumbnail's ffmpeg, a
whole log's verification or the S3 legal holds of a long incident would stall every search
and playback in the worker. Those routes are marked with `in_pool`: they wait for a pool of
their own on the event loop, holding no request thread, and run there. Their dependencies (the
token and role checks) still run on the request threads, briefly.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, ParamSpec, TypeVar

from anyio import CapacityLimiter, to_thread

from config.model import HoldfastConfig

P = ParamSpec("P")
R = TypeVar("R")

Pool = Literal["passwords", "long"]


@dataclass(frozen=True)
class Pools:
    #: argon2 password checks: `[api] max_password_checks` at once, the rest wait on the loop.
    passwords: CapacityLimiter
    #: exports, thumbnails, log verification and export, incidents' legal holds: `[api] long_requests`.
    long: CapacityLimiter


def open_pools(cfg: HoldfastConfig) -> Pools:
    """Size this worker's request threads and make its other pools. Call it inside the worker's
    event loop (the app's lifespan): anyio's limiters belong to the loop they run in."""
    to_thread.current_default_thread_limiter().total_tokens = cfg.api.threads
    return Pools(CapacityLimiter(cfg.api.max_password_checks), CapacityLimiter(cfg.api.long_requests))


def in_pool(pool: Pool) -> Callable[[Callable[P, R]], Callable[P, Awaitable[R]]]:
    """Run a sync route in `pool` instead of on a request thread.

    FastAPI reads the route's parameters through `functools.wraps` (its signature follows
    `__wrapped__`) and awaits the wrapper as an async route. The route needs a `request`
    parameter: the pools hang off the app's state. An app whose lifespan did not run (a test
    client used without `with`) has no pools; its marked routes run on the request threads.
    """

    def wrap(route: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(route)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            pools: Pools | None = kwargs["request"].app.state.holdfast.pools  # type: ignore[attr-defined]
            limiter = getattr(pools, pool) if pools is not None else None
            return await to_thread.run_sync(functools.partial(route, *args, **kwargs), limiter=limiter)

        run.pool = pool  # type: ignore[attr-defined]  # which pool: read by tests
        return run

    return wrap
