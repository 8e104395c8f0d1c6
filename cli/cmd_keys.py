"""`holdfast keys init|rotate|prune|transitions`."""

from __future__ import annotations

import argparse
import getpass

from cli.common import Actions, action, command_with_actions, load_config, open_vault, print_json
from vault.sealed import keyrotation, keys


def register(sub: Actions) -> None:
    s = command_with_actions(sub, "keys", "manage the vault's sealing and signing keys")
    action(
        s, "init", init, "create seal.key/seal.pub (X25519) and sign.key/sign.pub (Ed25519); never overwrites"
    )
    r = action(
        s,
        "rotate",
        rotate,
        "new seal key for new segments (old kept until its segments are purged); new log signing key, signed over",
    )
    r.add_argument("--only", choices=("seal", "sign"), help="rotate just one of the two (default: both)")
    action(
        s,
        "prune",
        prune,
        "destroy old seal keys that no stored or spooled segment needs (the purger runs this)",
    )
    action(
        s,
        "transitions",
        transitions,
        "print the signing-key transitions an auditor needs to verify rotated logs",
    )
    action(
        s,
        "verifier",
        verifier,
        "print the verifier key line of each log's checkpoint notes (C2SP signed-note, Go sumdb/note)",
    )


def verifier(args: argparse.Namespace) -> int:
    """One `<origin>+<key id>+<key>` line per log: what an auditor configures to read the notes."""
    from vault.ledger import entries
    from vault.vault import Vault

    cfg = load_config(args)
    pub = entries.load_public_key((cfg.keys.dir / keys.SIGN_PUB).read_bytes())
    v = Vault(cfg)
    for origin in (v.purge_log.origin, v.access_log.origin):
        print(entries.verifier_key(origin, pub))
    return 0


def init(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    for p in keys.init_keys(cfg.keys.dir):
        print(p)
    return 0


def rotate(args: argparse.Namespace) -> int:
    with open_vault(args) as v:
        d = v.cfg.keys.dir
        if args.only in (None, "seal"):
            old, new = keyrotation.rotate_seal(d)
            print(f"seal key rotated: {old} -> {new}; seal-{old}.key kept until its segments are purged")
            _restart_recorders()
        if args.only in (None, "sign"):
            v.migrate()
            rec = keyrotation.rotate_sign(d, keyrotation.sign_over_latest(v))
            print(
                f"sign key rotated: {rec['old_key_id']} -> {rec['new_key_id']}; transition appended to "
                f"{d / keyrotation.TRANSITIONS}"
                + (" (latest checkpoint signed over)" if rec["checkpoint"] else "")
            )
            _restart_api()
    return 0


def _restart_recorders() -> None:
    """Under systemd recorders see seal.pub through a bind mount (pinned inode): restart them."""
    import subprocess

    from appliance.install import systemd_running

    units = [
        "holdfast-recorder@*.service",
        "holdfast-site-recorder@*.service",
        "holdfast-calls@*.service",
        "holdfast-pbx-ingest.service",
    ]
    if systemd_running():
        subprocess.run(["systemctl", "try-restart", *units], check=False)
        print("recorders restarted to pick up the new seal.pub")
    else:
        print("systemd not running: recorders started by hand re-read seal.pub at their next segment")


def _restart_api() -> None:
    """The API and the purger load sign.key once per process: the API restarts to sign with the new key."""
    import subprocess

    from appliance.install import systemd_running

    if systemd_running():
        subprocess.run(["systemctl", "try-restart", "holdfast-api.service"], check=False)
        print("holdfast-api restarted to sign with the new key")
    else:
        print("systemd not running: restart `holdfast serve` by hand so it signs with the new key")


def prune(args: argparse.Namespace) -> int:
    with open_vault(args) as v:
        v.migrate()
        for kid in keyrotation.prune_and_log(v, actor=getpass.getuser(), role="local-operator"):
            print(f"destroyed seal-{kid}.key")
    return 0


def transitions(args: argparse.Namespace) -> int:
    print_json(keyrotation.read_transitions(load_config(args).keys.dir))
    return 0
