"""`holdfast audit export|verify|prove|report`: what an auditor or DPO runs."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from cli import progress
from cli.common import CommandError, open_vault, print_json
from vault.ledger import entries, exportverify, streamverify
from vault.sealed import keyrotation, keys
from vault.timeutil import parse_iso

# vault.ledger.ledgers and vault.ledger.report (SQLAlchemy) are imported by the commands that use the index:
# `audit verify` runs offline on an export and starts without them.


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    a = sub.add_parser("audit", help="export, verify and prove the purge and access logs; compliance report")
    s = a.add_subparsers(dest="audit_cmd", metavar="ACTION", required=True)
    e = s.add_parser("export", help="write both logs and their signed checkpoints to DIR")
    e.add_argument("dir", type=Path, metavar="DIR")
    e.set_defaults(func=export_cmd)
    v = s.add_parser("verify", help="verify an export offline with the public key alone")
    v.add_argument("dir", type=Path, metavar="DIR")
    v.add_argument("--pubkey", type=Path, required=True, metavar="FILE", help="sign.pub (Ed25519 PEM)")
    v.add_argument(
        "--since",
        type=Path,
        metavar="CHECKPOINT",
        help="your last verified checkpoint (signed note, the export's <log>-log/checkpoint): check "
        "a consistency proof from it and only the entries after it",
    )
    v.set_defaults(func=verify_cmd)
    p = s.add_parser("prove", help="inclusion proof of a purged segment's log entry")
    p.add_argument("id", metavar="SEGMENT_ID")
    p.set_defaults(func=prove_cmd)
    r = s.add_parser("report", help="compliance report per retention class")
    r.add_argument("--json", action="store_true", help="same as --format json")
    r.add_argument(
        "--format",
        choices=("text", "json", "html"),
        default="text",
        help="html: one self-contained file to read and archive (times in the site's zone)",
    )
    r.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write the report to FILE (default: stdout)"
    )
    r.add_argument("--since", metavar="ISO", help="count purges from this time (default: all)")
    r.set_defaults(func=report_cmd)


def export_cmd(args: argparse.Namespace) -> int:
    from vault.ledger import ledgers

    d: Path = args.dir
    d.mkdir(parents=True, exist_ok=True)
    with open_vault(args) as v:
        v.migrate()
        now = v.clock()
        with v.sessions.begin() as s:
            # Sign whatever is not yet covered (access-log entries between batches), then export.
            for lg in (v.purge_log, v.access_log):
                lg.checkpoint(s, v.sign_key, now)
        pub = v.sign_key.public_key()
        summary = []
        with v.sessions() as s:
            for lg in (v.purge_log, v.access_log):
                with progress.bar(f"export {lg.name}-log", None, "entries") as update:
                    summary.append(lg.export(s, d, pub, update))
        ledgers.write_manifest(d, summary, pub, now)
        shutil.copyfile(v.cfg.keys.dir / keys.SIGN_PUB, d / "sign.pub")
        keyrotation.export_sign_history(v.cfg.keys.dir, d)
    for x in summary:
        print(f"{x['log']}-log: {x['entries']} entries, {x['checkpoints']} checkpoints")
    print(f"exported to {d} (verify with: holdfast audit verify {d} --pubkey sign.pub from a trusted copy)")
    print(
        "verifier keys of the checkpoint notes: "
        + " ".join(entries.verifier_key(x["origin"], pub) for x in summary)
    )
    return 0


def verify_cmd(args: argparse.Namespace) -> int:
    """Exit 0 only if every log verifies completely (no problem, no unsealed tail)."""
    try:
        pub = entries.load_public_key(args.pubkey.read_bytes())
    except (OSError, entries.TlogError) as e:
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
            + ", ".join(keys.key_id(k).hex() for k in chain)
        )
    if args.since is not None:
        return _verify_since(args, chain)

    def bar_for(name: str) -> progress.Callable[[int], None]:
        path = args.dir / f"{name}-log" / entries.ENTRIES_FILE
        total = path.stat().st_size if path.exists() else None
        ctx = progress.bar(f"verify {name}-log", total, "bytes")
        update = ctx.__enter__()
        bars.append(ctx)
        return update

    bars: list[progress.AbstractContextManager[progress.Callable[[int], None]]] = []
    try:
        results = exportverify.verify_export(args.dir, chain, bar_for if progress.enabled() else None)
    finally:
        for ctx in reversed(bars):
            ctx.__exit__(None, None, None)
    ok = True
    for name, rep in results:
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


def _verify_since(args: argparse.Namespace, chain: list[entries.Ed25519PublicKey]) -> int:
    """Check the export against the auditor's earlier checkpoint note, reading only what is new."""
    try:
        old = entries.parse_checkpoint_note(args.since.read_bytes(), chain)
    except OSError as e:
        raise CommandError(f"{args.since}: {e.strerror}", 2) from None
    except entries.CheckpointError as e:
        print(f"{args.since}: FAILED: {e}")
        return 1
    try:
        name = exportverify.log_origins(args.dir).get(old.origin)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CommandError(f"{args.dir}/manifest.json: unreadable manifest ({e})", 2) from None
    if name is None:
        print(f"{args.since}: FAILED: the export has no log with origin {old.origin!r}")
        return 1
    d = args.dir / f"{name}-log"
    path = d / entries.ENTRIES_FILE
    with progress.bar(f"verify {name}-log", path.stat().st_size if path.exists() else None, "bytes") as up:
        try:
            rep = streamverify.verify_since(d, old, chain, progress=up)
        except entries.TlogError as e:
            rep = streamverify.SinceReport(False, old.size, 0, 0, str(e))
    print(f"{name}-log: {rep.summary()}")
    if rep.ok and (d / entries.NOTE_FILE).exists():
        print(f"keep {d / entries.NOTE_FILE} as your last verified checkpoint")
    return 0 if rep.ok else 1


def prove_cmd(args: argparse.Namespace) -> int:
    from vault.ledger import ledgers

    with open_vault(args) as v, v.sessions() as s:
        try:
            seq = v.purge_log.seq_for_segment(s, args.id)
            print_json(v.purge_log.prove(s, seq, v.sign_key.public_key()))
        except ledgers.ProofNotFound as e:
            raise CommandError(str(e)) from None
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    from vault.ledger.report import compliance_report

    since = None
    if args.since:
        try:
            since = parse_iso(args.since, "--since")
        except ValueError as e:
            raise CommandError(str(e), 2) from None
    fmt = "json" if args.json else args.format
    with open_vault(args) as v:
        v.migrate()
        rep = compliance_report(v, v.clock(), since)
        if fmt == "html":
            from vault.ledger.report_html import render

            page = render(v, rep)
            if args.output:
                args.output.write_text(page, "utf-8")
                print(f"report written to {args.output}")
            else:
                sys.stdout.write(page)
            return 0
    if fmt == "json":
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
    for site, version in rep["notice_versions"].items():
        print(f"  privacy notice of site {site}: version {version}")
    for h in rep["holds"]:
        print(
            f"  hold {h['id']}: {h['segments_held']} segment(s), {h['reason']} ({h['incident'] or 'no incident'})"
        )
    return 0
