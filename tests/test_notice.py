"""The privacy notice is written from the enforced config, and its version follows what it states."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from tests.support.appliance import Appliance

#: How each notice language writes the example's three periods.
PERIODS = {
    "en": ("14 days", "21 days", "3 calendar months"),
    "sv": ("14 dagar", "21 dagar", "3 kalendermånader"),
    "fi": ("14 päivää", "21 päivää", "3 kalenterikuukautta"),
    "da": ("14 dage", "21 dage", "3 kalendermåneder"),
}
TEN_DAYS = {"en": "10 days", "sv": "10 dagar", "fi": "10 päivää", "da": "10 dage"}


def notice(app: Appliance, *args: str) -> str:
    return app.cli("notice", *args).stdout.decode()


def version_of(text: str) -> str:
    found = set(re.findall(r"\b[0-9a-f]{64}\b", text))
    assert len(found) == 1, found
    return found.pop()


@pytest.mark.parametrize("lang", sorted(PERIODS))
def test_notice_states_the_configured_periods(appliance: Appliance, lang: str) -> None:
    text = notice(appliance, "--lang", lang)
    for period in PERIODS[lang]:
        assert period in text, (lang, period)
    assert "office-1" in text and "garage-1" in text and "cs-1" in text
    # The facts the seeds require: who to ask, how fast, the supervisory authority (FI site).
    assert "privacy@demo-housing.invalid" in text and "30" in text and "tietosuoja.fi" in text


def test_changed_period_changes_the_notice_and_its_version(appliance: Appliance) -> None:
    before = {lang: notice(appliance, "--lang", lang) for lang in PERIODS}
    versions = {version_of(t) for t in before.values()}
    assert len(versions) == 1, "every language states the same facts: one version"
    html_version = version_of(notice(appliance, "--format", "html"))
    assert versions == {html_version}

    cfg = appliance.config_path.read_text()
    appliance.config_path.write_text(cfg.replace("days = 14\n", "days = 10\n", 1))
    for lang in PERIODS:
        after = notice(appliance, "--lang", lang)
        assert TEN_DAYS[lang] in after and PERIODS[lang][0] not in after, lang
        assert version_of(after) != html_version

    # The compliance report names the version of the notice for the config it enforces.
    rep = json.loads(appliance.cli("audit", "report", "--json").stdout)
    assert rep["notice_versions"] == {"demo": version_of(notice(appliance))}
    assert f"version {version_of(notice(appliance))}" in appliance.cli("audit", "report").stdout.decode()


class _Strict(HTMLParser):
    """Fails on any unbalanced tag; collects tags and text."""

    VOID = {"meta"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_well_formed_and_escaped(appliance: Appliance) -> None:
    nasty = 'Safety <script>alert("x")</script> & [a](javascript:x) *b*'
    cfg = appliance.config_path.read_text()
    old = 'purpose = "Safety of customers and staff in the customer-service office; footage reviewed only to investigate disturbances."'
    assert old in cfg
    appliance.config_path.write_text(cfg.replace(old, "purpose = " + json.dumps(nasty), 1))

    page = notice(appliance, "--format", "html", "--lang", "en")
    assert page.startswith("<!DOCTYPE html>")
    p = _Strict()
    p.feed(page)
    p.close()
    assert p.stack == [], f"unclosed tags: {p.stack}"
    assert "script" not in p.tags and set(p.tags) <= {
        "html",
        "head",
        "meta",
        "title",
        "body",
        "h1",
        "h2",
        "h3",
        "p",
    }
    assert nasty in "".join(p.text), "the operator's text is shown literally"
    assert "&lt;script&gt;" in page and "&amp;" in page

    md = notice(appliance, "--format", "md")
    assert "<script>" not in md and "\\<script\\>" in md and "\\[a\\](javascript:x)" in md


def test_unknown_site_is_refused(appliance: Appliance) -> None:
    r = appliance.cli("notice", "--site", "nowhere", check=False)
    assert r.returncode == 2 and b"unknown site 'nowhere'" in r.stderr
