"""Dependencies flow one way: config <- vault <- (recorder, api) <- cli (docs/design.md).

Checked on the source (ast), including imports inside functions, so a lazy `from cli... import`
cannot hide a cycle: config imports nothing of ours; vault never imports api, recorder, appliance
or cli; recorder and api never import each other (the vault is what they share) nor cli; the
appliance (doctor, demo, installer) runs `holdfast` as a command and never imports cli.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support.appliance import REPO

#: Our top-level packages (tests and bench sit outside the chain: they may import anything).
OURS = {"config", "vault", "recorder", "api", "appliance", "cli", "tests", "bench"}

FORBIDDEN = {
    "config": OURS - {"config"},
    "vault": {"api", "recorder", "cli", "appliance"},
    "recorder": {"api", "cli", "appliance"},
    "api": {"recorder", "cli", "appliance"},
    "appliance": {"cli"},
}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in the file, wherever it sits."""
    out = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    bad = [
        f"{p.relative_to(REPO)}:{line} imports {mod}"
        for p in files
        for line, mod in imported_packages(p)
        if mod in FORBIDDEN[package]
    ]
    assert bad == [], f"{package}/ must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(bad)


def test_the_walker_sees_lazy_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from cli.cmd_audit import x\n    import api.app\n")
    assert imported_packages(f) == [(2, "cli"), (3, "api")]


#: A query on segments or gaps: select(Segment ...), select_from(Gap), or a column such as Segment.start.
SEGMENT_QUERY = re.compile(r"\bselect(?:_from)?\(\s*(?:Segment|Gap)\b|\b(?:Segment|Gap)\.[a-z_]+")


def test_api_asks_the_vault_for_segments_and_gaps() -> None:
    """The vault owns every query on segments and gaps (vault.index.queries); the API only calls it."""
    bad = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in sorted((REPO / "api").rglob("*.py"))
        for n, line in enumerate(p.read_text("utf-8").splitlines(), 1)
        if SEGMENT_QUERY.search(line)
    ]
    assert bad == [], "api/ queries segments or gaps itself; ask vault.index.queries:\n" + "\n".join(bad)


def test_the_segment_query_pattern_matches() -> None:
    hits = ["select(Segment).where(x)", "select( Gap)", "select(Segment.start)", ".select_from(Segment)"]
    assert all(SEGMENT_QUERY.search(x) for x in hits)
    assert not any(SEGMENT_QUERY.search(x) for x in ["seg.start", "list[Segment]", "SegmentOut(id=s.id)"])


#: The vault's top level: the facade and what every subpackage shares; the rest lives in a package
#: named for its part of the domain (README.md's layout paragraph).
VAULT_TOP = {"__init__.py", "vault.py", "errors.py", "timeutil.py"}


def test_the_vault_is_grouped_by_domain_with_empty_package_inits() -> None:
    """Flat modules stay out of vault/, and a package's __init__ stays empty: the camera recorder's
    import budget (tests/test_camera_budget.py) counts what loading `vault.sealed.seal` drags in."""
    top = {p.name for p in (REPO / "vault").glob("*.py")}
    assert top == VAULT_TOP, (
        f"modules at vault/ top level besides {sorted(VAULT_TOP)}: {sorted(top - VAULT_TOP)}"
    )
    inits = sorted((REPO / "vault").glob("*/__init__.py"))
    assert len(inits) >= 9, inits
    assert [str(p.relative_to(REPO)) for p in inits if p.read_text("utf-8").strip()] == []
