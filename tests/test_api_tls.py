"""`holdfast serve` with api.tls_cert/api.tls_key: HTTPS, Secure cookie, no plain HTTP; refusal without TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.accounts import PASSWORD, add_user
from tests.support.appliance import make_appliance
from tests.support.rtsp import free_port
from tests.support.server import serve


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "holdfast test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cpath, kpath = directory / "tls.crt", directory / "tls.key"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    kpath.chmod(0o600)
    return cpath, kpath


def test_https_login_sets_secure_cookie_and_plain_http_fails(tmp_path: Path) -> None:
    app = make_appliance(tmp_path / "site")
    cert, key = self_signed(tmp_path)
    text = app.config_path.read_text()
    app.config_path.write_text(text.replace("[api]\n", f'[api]\ntls_cert = "{cert}"\ntls_key = "{key}"\n', 1))
    add_user(app, "sec", "security", "demo")
    with serve(app, tls_cert=cert, timeout=120) as (base, _proc):
        port = base.rsplit(":", 1)[1]
        with httpx.Client(verify=str(cert), timeout=5) as c:
            assert c.get(base + "/healthz").status_code == 200
            r = c.post(
                base + "/api/v1/auth/login",
                data={"username": "sec", "password": PASSWORD},
                headers={"Origin": base},  # the page's own origin (api.guard)
            )
            assert r.status_code == 200, r.text
            cookie = r.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            assert c.get(base + "/api/v1/auth/me").json()["name"] == "sec"
        # The same port does not speak plain HTTP.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_non_loopback_without_tls_is_refused(tmp_path: Path) -> None:
    app = make_appliance(tmp_path / "site")
    p = app.cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), check=False, timeout=60)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert "refusing to serve plain HTTP on 0.0.0.0" in err and "tls_cert" in err
