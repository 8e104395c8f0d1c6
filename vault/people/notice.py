"""The camera and call-recording sections of a privacy notice, written from the enforced config.

Why generated: a notice typed by hand drifts from what the appliance does (a class changed from
14 to 10 days, a camera added). Here the notice is rendered from the same `HoldfastConfig` the
ingest and purger enforce, and its *version* is a SHA-256 over the facts it states (periods,
purposes, legal bases, justifications, sources, access and request rules, the wording revision).
The compliance report prints the same version, so an auditor compares the version printed under
the published notice with the report and proves the two describe the same rules. The version does
not depend on the language or format: the four translations of one configuration state the same
facts.

Two layers (EDPB Guidelines 3/2019 on video devices, 110-117): a short sign at the camera
(`sign` section: controller, purpose, retention, rights, where the full notice is) and the full
notice sections.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass
from typing import Any, Literal

from config.model import NOTICE_LANGS, CallLine, Camera, HoldfastConfig, RetentionClass

#: Bump when the notice's wording changes what it promises: the version changes with it.
WORDING_REVISION = 1

Format = Literal["md", "html"]
FORMATS = ("md", "html")


class NoticeError(ValueError):
    """The notice cannot be written (unknown site or language)."""


def _period(cls: RetentionClass, lang: str) -> str:
    words = {
        "en": (("day", "days"), ("calendar month", "calendar months")),
        "sv": (("dag", "dagar"), ("kalendermånad", "kalendermånader")),
        "fi": (("päivä", "päivää"), ("kalenterikuukausi", "kalenterikuukautta")),
        "da": (("dag", "dage"), ("kalendermåned", "kalendermåneder")),
    }[lang]
    n, (one, many) = (cls.days, words[0]) if cls.days is not None else (cls.months, words[1])
    return f"{n} {one if n == 1 else many}"


# -- what the notice states -------------------------------------------------------------------


def notice_facts(cfg: HoldfastConfig, site_id: str) -> dict[str, Any]:
    """Everything the notice for one site states, as plain data (the input of its version)."""
    try:
        site = cfg.site(site_id)
    except KeyError as e:
        raise NoticeError(f"unknown site {site_id!r}: one of {', '.join(s.id for s in cfg.sites)}") from e

    def classes(items: list[Camera] | list[CallLine]) -> list[dict[str, Any]]:
        used: dict[str, list[str]] = {}
        for item in items:
            if item.site == site.id and getattr(item, "enabled", True):
                used.setdefault(item.retention, []).append(item.id)
        out = []
        for name in sorted(used):
            c = cfg.retention[name]
            out.append(
                {
                    "class": name,
                    "days": c.days,
                    "months": c.months,
                    "sources": sorted(used[name]),
                    "crime_prevention": c.crime_prevention,
                    "exception": c.exception,
                    "text": {
                        lang: c.localized(lang).model_dump(mode="json") for lang in sorted(NOTICE_LANGS)
                    },
                }
            )
        return out

    site_lines = [ln for ln in cfg.lines if ln.site == site.id]
    return {
        "wording_revision": WORDING_REVISION,
        "site": {
            "id": site.id,
            "name": site.name,
            "country": site.country,
            "controller": site.controller,
            "privacy_contact": site.privacy_contact,
        },
        "cameras": classes(cfg.cameras),
        "calls": classes(cfg.lines),
        "calls_announced": all(ln.announced for ln in site_lines),
        "remote_party_hashed": sorted(ln.id for ln in site_lines if ln.hash_remote),
        "subject_request_days": cfg.api.subject_request_days,
    }


def notice_version(facts: dict[str, Any]) -> str:
    """SHA-256 (hex) over the canonical JSON of the facts: equal facts, equal version."""
    canon = json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def notice_versions(cfg: HoldfastConfig) -> dict[str, str]:
    """The notice version per site (what the compliance report names)."""
    return {s.id: notice_version(notice_facts(cfg, s.id)) for s in cfg.sites}


# -- wording ------------------------------------------------------------------------------------

_AUTHORITY = {
    "FI": {
        "en": "the Data Protection Ombudsman (tietosuoja.fi)",
        "sv": "Dataombudsmannen (tietosuoja.fi)",
        "fi": "tietosuojavaltuutettu (tietosuoja.fi)",
        "da": "den finske databeskyttelsesombudsmand (tietosuoja.fi)",
    },
    "SE": {
        "en": "the Swedish Authority for Privacy Protection, IMY (imy.se)",
        "sv": "Integritetsskyddsmyndigheten, IMY (imy.se)",
        "fi": "Ruotsin tietosuojaviranomainen IMY (imy.se)",
        "da": "den svenske databeskyttelsesmyndighed IMY (imy.se)",
    },
    "DK": {
        "en": "the Danish Data Protection Agency, Datatilsynet (datatilsynet.dk)",
        "sv": "Datatilsynet, den danska dataskyddsmyndigheten (datatilsynet.dk)",
        "fi": "Tanskan tietosuojaviranomainen Datatilsynet (datatilsynet.dk)",
        "da": "Datatilsynet (datatilsynet.dk)",
    },
}
_ANY_AUTHORITY = {
    "en": "the data protection supervisory authority",
    "sv": "tillsynsmyndigheten för dataskydd",
    "fi": "tietosuojavalvontaviranomainen",
    "da": "tilsynsmyndigheden for databeskyttelse",
}

T: dict[str, dict[str, str]] = {
    "en": {
        "title": "Privacy notice: camera surveillance and call recording, {site}",
        "controller": "Controller: {controller}. Contact for privacy matters: {contact}.",
        "cameras": "Camera surveillance",
        "calls": "Recording of customer-service calls",
        "sources_cam": "Cameras: {ids}.",
        "sources_line": "Lines: {ids}.",
        "purpose": "Purpose: {v}",
        "basis": "Legal basis: {v}",
        "retention": "Kept for {period} from the time of recording, then deleted automatically.",
        "justification": "Why longer than 72 hours: {v}",
        "exception": "Kept beyond the national limit under: {v}",
        "hold": "A recording needed to investigate a specific incident, or handed to the police, is "
        "kept under a legal hold until the hold is released; every hold and release is logged.",
        "announced": "Callers are told at the start of the call that it is recorded, and may decline: "
        "the call's audio is then not kept.",
        "callmeta": "Stored per call: start time, duration, direction, the employee who answered or "
        "called, the other party's number, and the audio.",
        "hashed": "On lines {ids} the other party's number is stored only as a keyed hash.",
        "access": "Who may see recordings, and how it is logged",
        "access_1": "Only named employees with their own account and rights an administrator granted. "
        "Security staff see only the sites they are assigned to, and only to investigate an incident.",
        "access_2": "Every viewing, export and legal hold is logged with the person, the stated purpose "
        "and the time, in a tamper-evident log that auditors verify. Deletions are logged the same way.",
        "access_3": "Administrators configure the system but cannot view recordings. Recordings may be "
        "handed to the police for a criminal investigation.",
        "rights": "Your rights and how to use them",
        "rights_1": "You may ask for access to recordings of you (GDPR art. 15), their erasure (17) or "
        "restriction (18), and you may object to the processing (21); rectification (16) and "
        "portability (20) apply where relevant.",
        "rights_2": "Send your request to {contact}. We verify your identity first and answer within "
        "{days} days.",
        "rights_3": "You may also lodge a complaint with {authority}.",
        "version": "Notice version {version}; generated from the appliance's configuration.",
        "sign": "Sign at the camera",
        "sign_title": "Camera surveillance",
        "sign_1": "{controller} records this area. Purpose: {purpose}",
        "sign_2": "Recordings are kept {period}, viewed only to investigate incidents, and every viewing "
        "is logged.",
        "sign_3": "Your rights (access, erasure, objection) and the full notice: {contact}.",
        "none": "None.",
    },
    "sv": {
        "title": "Dataskyddsinformation: kamerabevakning och inspelning av samtal, {site}",
        "controller": "Personuppgiftsansvarig: {controller}. Kontakt i dataskyddsfrågor: {contact}.",
        "cameras": "Kamerabevakning",
        "calls": "Inspelning av kundtjänstsamtal",
        "sources_cam": "Kameror: {ids}.",
        "sources_line": "Linjer: {ids}.",
        "purpose": "Ändamål: {v}",
        "basis": "Rättslig grund: {v}",
        "retention": "Sparas i {period} från inspelningen och raderas sedan automatiskt.",
        "justification": "Varför längre än 72 timmar: {v}",
        "exception": "Sparas längre än den nationella gränsen med stöd av: {v}",
        "hold": "En inspelning som behövs för att utreda en viss händelse, eller som lämnats till polisen, "
        "sparas under ett bevarandebeslut tills det hävs; varje beslut och hävning loggas.",
        "announced": "Den som ringer får veta i början av samtalet att det spelas in och kan avböja: "
        "samtalets ljud sparas då inte.",
        "callmeta": "För varje samtal sparas: starttid, längd, riktning, den anställda som svarade eller "
        "ringde, motpartens nummer och ljudet.",
        "hashed": "På linjerna {ids} sparas motpartens nummer endast som en nycklad hash.",
        "access": "Vem får se inspelningarna, och hur det loggas",
        "access_1": "Endast namngivna anställda med eget konto och behörigheter som en administratör "
        "beviljat. Säkerhetspersonalen ser bara sina egna anläggningar och bara för att utreda en händelse.",
        "access_2": "Varje visning, export och bevarandebeslut loggas med person, angivet ändamål och tid "
        "i en manipuleringssäker logg som granskas. Raderingar loggas på samma sätt.",
        "access_3": "Administratörer konfigurerar systemet men kan inte se inspelningar. Inspelningar kan "
        "lämnas till polisen för en brottsutredning.",
        "rights": "Dina rättigheter och hur du använder dem",
        "rights_1": "Du kan begära tillgång till inspelningar av dig (dataskyddsförordningen art. 15), "
        "radering (17) eller begränsning (18), och du kan invända mot behandlingen (21); rättelse (16) "
        "och dataportabilitet (20) gäller där de är tillämpliga.",
        "rights_2": "Skicka din begäran till {contact}. Vi kontrollerar först din identitet och svarar "
        "inom {days} dagar.",
        "rights_3": "Du kan också lämna klagomål till {authority}.",
        "version": "Informationens version {version}; skapad ur anläggningens konfiguration.",
        "sign": "Skylt vid kameran",
        "sign_title": "Kamerabevakning",
        "sign_1": "{controller} spelar in detta område. Ändamål: {purpose}",
        "sign_2": "Inspelningarna sparas i {period}, granskas bara för att utreda händelser, och varje "
        "visning loggas.",
        "sign_3": "Dina rättigheter (tillgång, radering, invändning) och hela informationen: {contact}.",
        "none": "Ingen.",
    },
    "fi": {
        "title": "Tietosuojaseloste: kameravalvonta ja puheluiden tallentaminen, {site}",
        "controller": "Rekisterinpitäjä: {controller}. Tietosuoja-asioiden yhteystieto: {contact}.",
        "cameras": "Kameravalvonta",
        "calls": "Asiakaspalvelupuheluiden tallentaminen",
        "sources_cam": "Kamerat: {ids}.",
        "sources_line": "Linjat: {ids}.",
        "purpose": "Käyttötarkoitus: {v}",
        "basis": "Oikeusperuste: {v}",
        "retention": "Säilytysaika {period} tallennuksesta, minkä jälkeen tallenne poistetaan automaattisesti.",
        "justification": "Miksi yli 72 tuntia: {v}",
        "exception": "Säilytetään kansallista enimmäisaikaa pidempään perusteella: {v}",
        "hold": "Tietyn tapahtuman selvittämiseen tarvittava tai poliisille luovutettu tallenne säilytetään "
        "säilytysmääräyksellä, kunnes määräys puretaan; jokainen määräys ja purku kirjataan lokiin.",
        "announced": "Soittajalle kerrotaan puhelun alussa, että puhelu tallennetaan, ja hän voi kieltäytyä: "
        "puhelun ääntä ei silloin säilytetä.",
        "callmeta": "Jokaisesta puhelusta tallennetaan: alkamisaika, kesto, suunta, puheluun vastannut tai "
        "soittanut työntekijä, toisen osapuolen numero ja ääni.",
        "hashed": "Linjoilla {ids} toisen osapuolen numero tallennetaan vain avaimellisena tiivisteenä.",
        "access": "Kuka saa katsoa tallenteita, ja miten se kirjataan",
        "access_1": "Vain nimetyt työntekijät omilla tunnuksillaan ja pääkäyttäjän myöntämillä oikeuksilla. "
        "Turvallisuushenkilöstö näkee vain omat kohteensa ja vain tapahtuman selvittämiseksi.",
        "access_2": "Jokainen katselu, luovutus ja säilytysmääräys kirjataan henkilön, ilmoitetun "
        "käyttötarkoituksen ja ajan kanssa muuttumattomaan lokiin, jonka tarkastajat todentavat. "
        "Poistot kirjataan samoin.",
        "access_3": "Pääkäyttäjät hallitsevat järjestelmää mutta eivät voi katsoa tallenteita. Tallenteita "
        "voidaan luovuttaa poliisille rikoksen selvittämiseksi.",
        "rights": "Oikeutesi ja niiden käyttäminen",
        "rights_1": "Voit pyytää pääsyä sinusta tehtyihin tallenteisiin (tietosuoja-asetuksen 15 artikla), "
        "niiden poistamista (17) tai käsittelyn rajoittamista (18), ja voit vastustaa käsittelyä (21); "
        "oikaiseminen (16) ja siirtäminen (20) soveltuvin osin.",
        "rights_2": "Lähetä pyyntösi: {contact}. Tarkistamme ensin henkilöllisyytesi ja vastaamme "
        "{days} päivän kuluessa.",
        "rights_3": "Voit myös tehdä valituksen: {authority}.",
        "version": "Selosteen versio {version}; luotu laitteen asetuksista.",
        "sign": "Kyltti kameran luona",
        "sign_title": "Kameravalvonta",
        "sign_1": "{controller} tallentaa tätä aluetta. Käyttötarkoitus: {purpose}",
        "sign_2": "Tallenteita säilytetään {period}, niitä katsotaan vain tapahtumien selvittämiseksi, ja "
        "jokainen katselu kirjataan.",
        "sign_3": "Oikeutesi (pääsy, poisto, vastustaminen) ja koko seloste: {contact}.",
        "none": "Ei ole.",
    },
    "da": {
        "title": "Privatlivspolitik: tv-overvågning og optagelse af opkald, {site}",
        "controller": "Dataansvarlig: {controller}. Kontakt om databeskyttelse: {contact}.",
        "cameras": "Tv-overvågning",
        "calls": "Optagelse af kundeserviceopkald",
        "sources_cam": "Kameraer: {ids}.",
        "sources_line": "Linjer: {ids}.",
        "purpose": "Formål: {v}",
        "basis": "Retsgrundlag: {v}",
        "retention": "Opbevares i {period} fra optagelsen og slettes derefter automatisk.",
        "justification": "Hvorfor længere end 72 timer: {v}",
        "exception": "Opbevares ud over den nationale grænse i henhold til: {v}",
        "hold": "En optagelse, der er nødvendig for at opklare en bestemt hændelse, eller som er udleveret "
        "til politiet, bevares under en tilbageholdelse, indtil den ophæves; hver tilbageholdelse og "
        "ophævelse logges.",
        "announced": "Den, der ringer, får at vide ved opkaldets start, at det optages, og kan sige nej: "
        "opkaldets lyd gemmes så ikke.",
        "callmeta": "For hvert opkald gemmes: starttidspunkt, varighed, retning, den medarbejder der "
        "besvarede eller foretog opkaldet, modpartens nummer og lyden.",
        "hashed": "På linjerne {ids} gemmes modpartens nummer kun som en nøglet hashværdi.",
        "access": "Hvem må se optagelserne, og hvordan det logges",
        "access_1": "Kun navngivne medarbejdere med egen konto og rettigheder tildelt af en administrator. "
        "Sikkerhedspersonalet ser kun de afdelinger, de er tilknyttet, og kun for at opklare en hændelse.",
        "access_2": "Hver visning, udlevering og tilbageholdelse logges med person, angivet formål og "
        "tidspunkt i en manipulationssikker log, som revisorer efterprøver. Sletninger logges på samme måde.",
        "access_3": "Administratorer konfigurerer systemet, men kan ikke se optagelser. Optagelser kan "
        "udleveres til politiet til efterforskning af en forbrydelse.",
        "rights": "Dine rettigheder, og hvordan du bruger dem",
        "rights_1": "Du kan anmode om indsigt i optagelser af dig (databeskyttelsesforordningen art. 15), "
        "sletning (17) eller begrænsning (18), og du kan gøre indsigelse mod behandlingen (21); berigtigelse "
        "(16) og dataportabilitet (20) gælder, hvor de er relevante.",
        "rights_2": "Send din anmodning til {contact}. Vi kontrollerer først din identitet og svarer "
        "inden for {days} dage.",
        "rights_3": "Du kan også klage til {authority}.",
        "version": "Politikkens version {version}; dannet ud fra anlæggets konfiguration.",
        "sign": "Skilt ved kameraet",
        "sign_title": "Tv-overvågning",
        "sign_1": "{controller} optager dette område. Formål: {purpose}",
        "sign_2": "Optagelserne opbevares i {period}, ses kun for at opklare hændelser, og hver visning logges.",
        "sign_3": "Dine rettigheder (indsigt, sletning, indsigelse) og hele politikken: {contact}.",
        "none": "Ingen.",
    },
}


# -- rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    kind: Literal["h1", "h2", "h3", "p"]
    text: str


def notice_blocks(cfg: HoldfastConfig, site_id: str, lang: str) -> list[Block]:
    """The notice as headings and paragraphs, independent of the output format."""
    if lang not in NOTICE_LANGS:
        raise NoticeError(f"unknown language {lang!r}: one of {', '.join(NOTICE_LANGS)}")
    facts = notice_facts(cfg, site_id)
    version = notice_version(facts)
    t = T[lang]
    site = cfg.site(site_id)
    contact = site.privacy_contact or site.controller or site.name or site.id
    controller = site.controller or site.name or site.id
    authority = _AUTHORITY.get(site.country, {}).get(lang, _ANY_AUTHORITY[lang])
    out = [
        Block("h1", t["title"].format(site=site.name or site.id)),
        Block("p", t["controller"].format(controller=controller, contact=contact)),
    ]

    def class_blocks(entries: list[dict[str, Any]], sources_key: str) -> None:
        if not entries:
            out.append(Block("p", t["none"]))
        for e in entries:
            cls = cfg.retention[e["class"]]
            txt = cls.localized(lang)
            out.append(Block("h3", f"{e['class']}: {_period(cls, lang)}"))
            out.append(Block("p", t[sources_key].format(ids=", ".join(e["sources"]))))
            out.append(Block("p", t["purpose"].format(v=txt.purpose)))
            out.append(Block("p", t["basis"].format(v=txt.legal_basis)))
            out.append(Block("p", t["retention"].format(period=_period(cls, lang))))
            if txt.justification and sources_key == "sources_cam":
                out.append(Block("p", t["justification"].format(v=txt.justification)))
            if cls.exception:
                out.append(Block("p", t["exception"].format(v=cls.exception)))

    out.append(Block("h2", t["cameras"]))
    class_blocks(facts["cameras"], "sources_cam")
    if facts["cameras"]:
        out.append(Block("p", t["hold"]))
    out.append(Block("h2", t["calls"]))
    class_blocks(facts["calls"], "sources_line")
    if facts["calls"]:
        if facts["calls_announced"]:
            out.append(Block("p", t["announced"]))
        out.append(Block("p", t["callmeta"]))
        if facts["remote_party_hashed"]:
            out.append(Block("p", t["hashed"].format(ids=", ".join(facts["remote_party_hashed"]))))
    out.append(Block("h2", t["access"]))
    out += [Block("p", t[k]) for k in ("access_1", "access_2", "access_3")]
    out.append(Block("h2", t["rights"]))
    out.append(Block("p", t["rights_1"]))
    out.append(Block("p", t["rights_2"].format(contact=contact, days=facts["subject_request_days"])))
    out.append(Block("p", t["rights_3"].format(authority=authority)))
    for e in facts["cameras"]:
        cls = cfg.retention[e["class"]]
        out.append(Block("h2", f"{t['sign']} ({', '.join(e['sources'])})"))
        out.append(Block("h3", t["sign_title"]))
        out.append(Block("p", t["sign_1"].format(controller=controller, purpose=cls.localized(lang).purpose)))
        out.append(Block("p", t["sign_2"].format(period=_period(cls, lang))))
        out.append(Block("p", t["sign_3"].format(contact=contact)))
    out.append(Block("p", t["version"].format(version=version)))
    return out


def render_notice(cfg: HoldfastConfig, site_id: str, lang: str = "en", fmt: str = "md") -> str:
    """The notice as Markdown or as a standalone, escaped HTML document."""
    blocks = notice_blocks(cfg, site_id, lang)
    if fmt == "md":
        prefix = {"h1": "# ", "h2": "## ", "h3": "### ", "p": ""}
        return "\n\n".join(prefix[b.kind] + _md_escape(b.text) for b in blocks) + "\n"
    if fmt == "html":
        body = "\n".join(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>" for b in blocks)
        title = html.escape(blocks[0].text)
        return (
            f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{title}</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
        )
    raise NoticeError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def _md_escape(text: str) -> str:
    """Operator-written text must not become Markdown markup (links, emphasis, raw HTML)."""
    out = []
    for ch in text:
        out.append("\\" + ch if ch in "\\`*_[]<>#|" else ch)
    return "".join(out)
