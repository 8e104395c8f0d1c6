"""Key files: private keys 0600, unsafe ones refused, `keys init` never overwrites."""

from __future__ import annotations

import os
import stat

import pytest

from tests.support.appliance import Appliance
from vault.errors import KeyFileError
from vault.sealed import keys


def test_init_makes_the_contract_files_with_safe_modes(appliance: Appliance) -> None:
    kd = appliance.dir / "keys"
    for name, mode in (("seal.key", 0o600), ("sign.key", 0o600), ("seal.pub", 0o644), ("sign.pub", 0o644)):
        assert stat.S_IMODE((kd / name).stat().st_mode) == mode, name
    keys.load_seal_private(kd / "seal.key")
    keys.load_sign_private(kd / "sign.key")
    keys.load_seal_public(kd / "seal.pub")
    keys.load_sign_public(kd / "sign.pub")


def test_group_readable_private_key_is_refused(appliance: Appliance) -> None:
    kd = appliance.dir / "keys"
    os.chmod(kd / "seal.key", 0o644)
    with pytest.raises(KeyFileError, match=r"readable by group or others.*chmod 600"):
        keys.load_seal_private(kd / "seal.key")
    # and through the CLI, as an operator sees it
    appliance.cli(
        "seal",
        "--source",
        "office-1",
        "--start",
        "2026-11-21T08:00:00Z",
        "--duration",
        "1",
        str(kd / "seal.pub"),
    )
    r = appliance.cli("ingest", "--once", check=False)
    assert r.returncode != 0
    assert b"chmod 600" in r.stderr and b"Traceback" not in r.stderr


def test_keys_init_never_overwrites(appliance: Appliance) -> None:
    before = (appliance.dir / "keys" / "seal.key").read_bytes()
    r = appliance.cli("keys", "init", check=False)
    assert r.returncode != 0 and b"never overwrites" in r.stderr
    assert (appliance.dir / "keys" / "seal.key").read_bytes() == before


def test_wrong_key_type_is_refused(appliance: Appliance) -> None:
    kd = appliance.dir / "keys"
    with pytest.raises(KeyFileError, match="expected an X25519"):
        keys.load_seal_private(kd / "sign.key")
