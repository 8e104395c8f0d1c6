"""An RTSP DESCRIBE over a plain socket: is the camera there, and do our credentials work?

No ffmpeg, no media: one request (two with auth), a short timeout, a verdict an operator can act
on: "unreachable", "credentials", "no such stream", or OK with the server's answer.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit


@dataclass
class Probe:
    ok: bool
    verdict: str  # ok | unreachable | credentials | not-found | error
    detail: str


def _recv_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > 65536:
            break
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    m = re.match(r"RTSP/1\.\d (\d{3})", lines[0] if lines else "")
    if not m:
        raise ValueError(f"not an RTSP answer: {lines[0][:80] if lines else '(empty)'!r}")
    headers: dict[str, str] = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    return int(m.group(1)), headers


def _auth_header(challenge: str, user: str, password: str, url: str) -> str:
    if challenge.lower().startswith("basic"):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()  # noqa: S324 - RTSP digest is MD5
    ha2 = hashlib.md5(f"DESCRIBE:{url}".encode()).hexdigest()  # noqa: S324
    resp = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()  # noqa: S324
    return f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{url}", response="{resp}"'


def describe(url: str, timeout: float = 3.0) -> Probe:
    """DESCRIBE `url`; answers 401 with credentials in the URL are retried once with them."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (322 if parts.scheme == "rtsps" else 554)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    if parts.scheme == "rtsps":
        return Probe(False, "error", "rtsps:// is not probed (TLS); check with ffprobe")
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            cseq = 1
            extra = ""
            for _attempt in range(2):
                req = f"DESCRIBE {bare} RTSP/1.0\r\nCSeq: {cseq}\r\nAccept: application/sdp\r\nUser-Agent: holdfast-doctor\r\n{extra}\r\n"
                sock.sendall(req.encode())
                status, headers = _recv_response(sock)
                if status == 401 and user is not None and not extra:
                    extra = f"Authorization: {_auth_header(headers.get('www-authenticate', ''), user, password, bare)}\r\n"
                    cseq += 1
                    # Drain any body of the 401 before the retry.
                    n = int(headers.get("content-length", "0") or 0)
                    while n > 0:
                        n -= len(sock.recv(min(n, 4096)))
                    continue
                break
    except TimeoutError:
        return Probe(False, "unreachable", f"{host}:{port} did not answer within {timeout:.0f} s")
    except OSError as e:
        return Probe(False, "unreachable", f"cannot connect to {host}:{port}: {e.strerror or e}")
    except ValueError as e:
        return Probe(False, "error", f"{host}:{port}: {e}")
    if status == 200:
        return Probe(True, "ok", f"DESCRIBE 200 from {host}:{port}")
    if status == 401:
        why = (
            "wrong user or password"
            if user is not None
            else "the camera needs a user and password in the URL"
        )
        return Probe(False, "credentials", f"DESCRIBE 401 from {host}:{port}: {why}")
    if status == 404:
        return Probe(False, "not-found", f"DESCRIBE 404: no stream at path {parts.path!r}")
    return Probe(False, "error", f"DESCRIBE answered {status}")
