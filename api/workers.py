"""Several API worker processes on one listening socket, behind one systemd main process.

`[api] workers = N` (N > 1): the parent binds the socket, migrates the index once, and forks N
children that each build the app and run uvicorn on the inherited socket (the kernel hands each
connection to one of them). holdfast-api.service is Type=notify with NotifyAccess=main, so only
the parent talks to systemd: READY=1 once every child has said it is serving, STATUS= on every
change. Each child writes a heartbeat byte down its own pipe from its event loop; with a
watchdog (WatchdogSec=) the parent pings WATCHDOG=1 only while every child is alive and beating,
so one hung worker gets the whole service restarted. A worker that dies after start is forked
again; one that fails before it serves stops the service (a crash loop is systemd's to see).

Nothing requests share lives in a worker's memory: sessions, view tickets and login failure
counts are rows in the index, export slots are flocks in the export scratch, metrics are computed
from the index at scrape time. What a worker keeps for itself is a cache of derived facts
(api.state's media layouts) and its thread pools, one of which bounds password checks per worker
(`[api] max_password_checks` each, api/pools.py): see docs/api.md, "API worker processes".
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from config.model import HoldfastConfig
from vault.ops.logsetup import event
from vault.ops.notify import notify, watchdog_interval

log = logging.getLogger("holdfast.api.workers")

#: How often a worker writes its heartbeat byte (seconds); the parent wants one within 3 beats.
BEAT = 1.0
#: Seconds a stopping worker gets to finish its requests before SIGKILL (the unit allows 15).
STOP_GRACE = 10.0


def uvicorn_config(app: Any, cfg: HoldfastConfig, host: str, port: int, tls: bool) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        # The C event loop and HTTP parser: a request's parsing and scheduling cost a fraction
        # of asyncio's and h11's.
        loop="uvloop",
        http="httptools",
        # X-Forwarded-For is api.guard's business ([api] trusted_proxies); uvicorn's own handling
        # would believe any loopback peer.
        proxy_headers=False,
        ssl_certfile=str(cfg.api.tls_cert) if tls else None,
        ssl_keyfile=str(cfg.api.tls_key) if tls else None,
    )


def uvicorn_server(
    app: Any, cfg: HoldfastConfig, host: str, port: int, tls: bool, serving: Callable[[Any], object]
) -> Any:
    """A uvicorn server for `app` that, once its socket is bound and it serves (not before),
    freezes the start-up heap and calls `serving(server)`: READY to systemd with one worker,
    the heartbeat to the parent in a forked worker."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                freeze_heap()
                serving(self)

    return Server(uvicorn_config(app, cfg, host, port, tls))


def freeze_heap() -> None:
    """Move everything built at start-up (FastAPI's routes and models, SQLAlchemy's mappers and
    caches: hundreds of thousands of objects) out of the collector's reach. Otherwise every
    full collection walks them all: 60-85 ms measured under load, during which no request
    moves, the largest share of a 50-client search's p99. They live as long as the process."""
    gc.collect()
    gc.freeze()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker accepts on (uvicorn's own backlog)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@dataclass
class _Child:
    pid: int
    fd: int
    started: float
    ready: bool = False
    beat: float = field(default_factory=time.monotonic)


def _worker(cfg: HoldfastConfig, sock: socket.socket, host: str, port: int, tls: bool, w: int) -> int:
    """In the forked child: build the app, serve on the shared socket, beat while serving."""
    import asyncio

    from api.app import create_app

    os.environ.pop("NOTIFY_SOCKET", None)  # only the parent speaks to systemd
    os.environ.pop("WATCHDOG_USEC", None)
    app = create_app(cfg, tls=tls)

    async def beat(server: Any) -> None:
        while not server.should_exit:
            os.write(w, b"b")
            await asyncio.sleep(BEAT)

    server = uvicorn_server(
        app, cfg, host, port, tls, lambda srv: asyncio.get_running_loop().create_task(beat(srv))
    )
    server.run(sockets=[sock])
    return 0 if server.started else 3


def _fork(cfg: HoldfastConfig, sock: socket.socket, host: str, port: int, tls: bool) -> _Child:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            os.close(r)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = _worker(cfg, sock, host, port, tls, w)
        except BaseException as e:  # noqa: BLE001 - a worker reports and exits, never returns
            event(log, "api.worker_failed", logging.ERROR, error=f"{type(e).__name__}: {e}"[:300])
        finally:
            os._exit(code)
    os.close(w)
    os.set_blocking(r, False)
    return _Child(pid, r, time.monotonic())


def serve(cfg: HoldfastConfig, host: str, port: int, tls: bool, url: str) -> int:
    """Run `cfg.api.workers` workers until SIGTERM or SIGINT; 0 on a clean stop, 3 on a failed start."""
    from vault.vault import Vault

    n = cfg.api.workers
    try:
        sock = bind(host, port)
    except OSError as e:
        event(log, "api.bind_failed", logging.ERROR, address=f"{host}:{port}", error=str(e))
        return 3
    v = Vault(cfg)
    v.migrate()  # once, before any worker opens the index
    v.close()

    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = {c.pid: c for c in (_fork(cfg, sock, host, port, tls) for _ in range(n))}
    event(log, "api.workers_started", workers=n, pids=",".join(str(p) for p in children))
    interval = watchdog_interval()
    announced = False
    pinged = 0.0
    code = 0
    try:
        while not stopping:
            fds = {c.fd: c for c in children.values()}
            try:
                readable, _, _ = select.select(list(fds), [], [], 0.5)
            except InterruptedError:
                readable = []
            now = time.monotonic()
            for fd in readable:
                c = fds[fd]
                try:
                    got = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                if got:
                    c.ready, c.beat = True, now
            for pid, c in list(children.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
                os.close(c.fd)
                del children[pid]
                rc = os.waitstatus_to_exitcode(status)
                if not c.ready:
                    event(log, "api.worker_start_failed", logging.ERROR, pid=pid, status=rc)
                    stopping, code = True, 3
                    break
                event(log, "api.worker_died", logging.ERROR, pid=pid, status=rc)
                nc = _fork(cfg, sock, host, port, tls)
                children[nc.pid] = nc
                notify(f"STATUS=serving {url}: worker {pid} exited ({rc}), started {nc.pid}")
            if stopping:
                break
            live = all(c.ready for c in children.values())
            if live and not announced:
                announced = True
                notify("READY=1", f"STATUS=serving {url} with {n} workers")
                event(log, "api.ready", url=url, workers=n)
            beating = all(now - c.beat < 3 * BEAT for c in children.values())
            if interval is not None and live and beating and now - pinged >= min(interval, BEAT):
                pinged = now
                notify("WATCHDOG=1")
    finally:
        notify("STOPPING=1")
        for pid in children:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while children and time.monotonic() < deadline:
            for pid in list(children):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    os.close(children.pop(pid).fd)
            time.sleep(0.05)  # polling children's exit while they drain; not a synchronisation
        for pid in list(children):
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(children.pop(pid).fd)
        sock.close()
    return code


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
