"""`holdfast audit export|verify|prove|report`: what an auditor or DPO runs."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from cli.common import CommandError, open_vault, print_json
from vault import auditlog, keyrotation, keys, tlog
from vault.report import compliance_report
from vault.timeutil import parse_iso


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    a = sub.add_parser("audit", help="export, verify and prove the purge and access logs; compliance report")
    s = a.add_subparsers(dest="audit_cmd", metavar="ACTION", required=True)
    e = s.add_parser("export", help="write both logs and their signed checkpoints to DIR")
    e.add_argument("dir", type=Path, metavar="DIR")
    e.set_defaults(func=export_cmd)
    v = s.add_parser("verify", help="verify an export offline with the public key alone")
    v.add_argument("dir", type=Path, metavar="DIR")
    v.add_argument("--pubkey", type=Path, required=True, metavar="FILE", help="sign.pub (Ed25519 PEM)")
    v.set_defaults(func=verify_cmd)
    p = s.add_parser("prove", help="inclusion proof of a purged segment's log entry")
    p.add_argument("id", metavar="SEGMENT_ID")
    p.set_defaults(func=prove_cmd)
    r = s.add_parser("report", help="compliance report per retention class")
    r.add_argument("--json", action="store_true")
    r.add_argument("--since", metavar="ISO", help="count purges from this time (default: all)")
    r.set_defaults(func=report_cmd)


def export_cmd(args: argparse.Namespace) -> int:
    d: Path = args.dir
    d.mkdir(parents=True, exist_ok=True)
    with open_vault(args) as v:
        v.migrate()
        now = v.clock()
        with v.sessions.begin() as s:
            # Sign whatever is not yet covered (access-log entries between batches), then export.
            for lg in (v.purge_log, v.access_log):
                lg.checkpoint(s, v.sign_key, now)
        with v.sessions() as s:
            # Cut at the signed sizes: entries appended meanwhile wait for the next export.
            summary = [lg.export(s, d, upto=lg.signed_size(s)) for lg in (v.purge_log, v.access_log)]
        pub = v.sign_key.public_key()
        auditlog.write_manifest(d, summary, pub, now)
        shutil.copyfile(v.cfg.keys.dir / keys.SIGN_PUB, d / "sign.pub")
        keyrotation.export_sign_history(v.cfg.keys.dir, d)
    for x in summary:
        print(f"{x['log']}-log: {x['entries']} entries, {x['checkpoints']} checkpoints")
    print(f"exported to {d} (verify with: holdfast audit verify {d} --pubkey sign.pub from a trusted copy)")
    return 0


def verify_cmd(args: argparse.Namespace) -> int:
    """Exit 0 only if every log verifies completely (no problem, no unsealed tail)."""
    try:
        pub = tlog.load_public_key(args.pubkey.read_bytes())
    except (OSError, tlog.TlogError) as e:
        raise CommandError(f"{args.pubkey}: {e}", 2) from None
    transitions, known = keyrotation.load_sign_history(args.dir)
    try:
        chain = keyrotation.trust_chain(pub, transitions, known)
    except keyrotation.TransitionError as e:
        print(f"sign-key transitions: FAILED: {e}")
        return 1
    if len(chain) > 1:
        print(
            f"signing keys trusted through {len(transitions)} signed hand-over(s): "
            + ", ".join(tlog.key_id(k) for k in chain)
        )
    ok = True
    for name, rep in auditlog.verify_export(args.dir, chain):
        if isinstance(rep, str):
            ok = False
            print(f"{name}-log: FAILED: {rep}")
            continue
        good = rep.ok and rep.unsealed_from is None
        ok = ok and good
        first = rep.first_bad_entry
        if first is None and rep.unsealed_from is not None:
            first = rep.unsealed_from
        where = f" (first bad entry: seq {first})" if not good and first is not None else ""
        detail = rep.summary().removeprefix("OK: ").removeprefix("FAILED: ")
        if rep.ok and not good:
            detail = "entries not covered by any signed checkpoint; " + detail
        print(f"{name}-log: {'OK' if good else 'FAILED'}{where}: {detail}")
    return 0 if ok else 1


def prove_cmd(args: argparse.Namespace) -> int:
    with open_vault(args) as v, v.sessions() as s:
        try:
            seq = v.purge_log.seq_for_segment(s, args.id)
            print_json(v.purge_log.prove(s, seq))
        except auditlog.ProofNotFound as e:
            raise CommandError(str(e)) from None
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = parse_iso(args.since, "--since")
        except ValueError as e:
            raise CommandError(str(e), 2) from None
    with open_vault(args) as v:
        v.migrate()
        rep = compliance_report(v, v.clock(), since)
    if args.json:
        print_json(rep)
        return 0
    print(f"Compliance report at {rep['generated_at']}")
    for name, c in rep["classes"].items():
        age = "-" if c["oldest_unheld_age_days"] is None else f"{c['oldest_unheld_age_days']:.1f} d"
        print(
            f"  {name:16} segments={c['segments']} held={c['held']} overdue={c['overdue']} "
            f"oldest unheld={age} limit={c['limit']}"
        )
    print("  purges: " + " ".join(f"{k}={n}" for k, n in rep["purges"].items()))
    for h in rep["holds"]:
        print(
            f"  hold {h['id']}: {h['segments_held']} segment(s), {h['reason']} ({h['incident'] or 'no incident'})"
        )
    return 0
