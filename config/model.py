"""The one configuration model: sites, cameras, call lines, retention classes, paths, keys.

Every daemon and command reads this model and nothing else, so a retention period or a path
is defined in exactly one place (the TOML file) and validated once, with errors that name
the field an operator has to fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

#: Identifiers end up in store paths, URLs and log lines: keep them boring and traversal-proof.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
_ID_RE = re.compile(ID_PATTERN)


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a retention setting must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: Languages the privacy notice is written in (`holdfast notice --lang`).
NOTICE_LANGS = ("sv", "fi", "da", "en")
NoticeLang = Literal["sv", "fi", "da", "en"]


class ClassText(_Strict):
    """A class's purpose, legal basis and justification in one notice language."""

    purpose: str | None = None
    legal_basis: str | None = None
    justification: str | None = None


class RetentionClass(_Strict):
    """How long one kind of recording is kept, and why (the privacy notice's promise)."""

    days: int | None = Field(default=None, ge=1, le=3650)
    months: int | None = Field(default=None, ge=1, le=120)
    purpose: str = Field(min_length=1)
    legal_basis: str = Field(min_length=1)
    #: Why footage is kept longer than 72 hours (EDPB Guidelines 3/2019, 121): stated in the notice.
    justification: str | None = Field(default=None, min_length=1)
    #: Camera surveillance to prevent or solve crime (Danish TV-overvaagningsloven 4 c caps it).
    crime_prevention: bool = False
    #: The statutory exception relied on to keep crime-prevention footage beyond a national cap.
    exception: str | None = Field(default=None, min_length=1)
    #: The same texts in other notice languages; the texts above are the fallback.
    text: dict[NoticeLang, ClassText] = {}

    @model_validator(mode="after")
    def _exactly_one_period(self) -> RetentionClass:
        if (self.days is None) == (self.months is None):
            raise ValueError("set exactly one of `days` or `months`")
        return self

    def describe(self) -> str:
        return f"{self.days} days" if self.days is not None else f"{self.months} calendar months"

    def localized(self, lang: str) -> ClassText:
        """Purpose, legal basis and justification in `lang`, falling back to the default texts."""
        tr = self.text.get(lang)  # type: ignore[call-overload]
        return ClassText(
            purpose=(tr and tr.purpose) or self.purpose,
            legal_basis=(tr and tr.legal_basis) or self.legal_basis,
            justification=(tr and tr.justification) or self.justification,
        )


class Site(_Strict):
    id: Ident
    name: str = ""
    #: Calendar months are counted in the site's local calendar (a notice's "3 months").
    timezone: str = "UTC"
    #: ISO 3166-1 alpha-2 code: which national rules `config check` applies (DK, FI, SE, ...).
    country: str = Field(pattern=r"^[A-Z]{2}$")
    #: Who is responsible for the recordings (the controller), as the privacy notice names it.
    controller: str = ""
    #: Where a data subject sends a request (address, e-mail, web form), printed in the notice.
    privacy_contact: str = ""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v


class Camera(_Strict):
    id: Ident
    site: str
    url: str
    retention: str
    segment_seconds: float = Field(default=10.0, gt=0.5, le=600)
    #: No fragment for this long means the camera is gone: close the segment, record a gap.
    stall_seconds: float = Field(default=10.0, gt=0.5, le=600)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _rtsp(cls, v: str) -> str:
        if not re.match(r"^rtsps?://[^\s/]+", v):
            raise ValueError(f"not an RTSP URL: {v!r} (expected rtsp://host[:port]/path)")
        return v


class CallLine(_Strict):
    id: Ident
    site: str
    retention: str = "call-audio"
    #: PortAudio input device name (substring match); "default" uses the system default.
    device: str = "default"
    rate: int = Field(default=48000, ge=8000, le=192000)
    channels: int = Field(default=1, ge=1, le=2)
    #: Calls shorter than this are dropped, as call recorders in the field do.
    min_seconds: float = Field(default=2.0, ge=0)
    #: Long calls are cut into linked segments of at most this length.
    max_segment_seconds: float = Field(default=600.0, gt=1, le=86400)
    opus_bitrate: str = "24k"
    #: Store the remote party as a keyed hash instead of the number itself.
    hash_remote: bool = False
    #: Callers are told at call start that the call is recorded (`config check` requires it).
    announced: bool = False


class Paths(_Strict):
    spool: Path
    store: Path
    #: tmpfs only: the single place plaintext may touch a filesystem, and only where ffmpeg needs a file.
    scratch: Path = Path("/run/holdfast")


#: `[store]` field: (the pattern a value must match, what it is when it does not).
_S3_FORMATS = {
    "endpoint": (
        r"^https?://[^\s/]+/?$",
        "not an S3 endpoint URL: {!r} (expected http(s)://host[:port])",
    ),
    "bucket": (
        r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        "not a valid S3 bucket name: {!r} (3-63 of a-z 0-9 . -)",
    ),
}


class Store(_Strict):
    """Where sealed blobs live: the local filesystem (`[paths] store`) or an S3 bucket.

    An S3 bucket must have Object Lock (legal holds) and so versioning; `holdfast store init`
    creates or checks it. The secret key is read from `secret_key_file` (0600, refused when
    group or others can read it) or, under systemd's LoadCredential=, from the credential of
    the same file name in $CREDENTIALS_DIRECTORY.
    """

    kind: Literal["local", "s3"] = "local"
    endpoint: str | None = None
    bucket: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key_file: Path | None = None

    @field_validator(*_S3_FORMATS)
    @classmethod
    def _well_formed(cls, v: str | None, info: ValidationInfo) -> str | None:
        pattern, problem = _S3_FORMATS[info.field_name or ""]
        if v is not None and not re.match(pattern, v):
            raise ValueError(problem.format(v))
        return v

    @model_validator(mode="after")
    def _s3_complete(self) -> Store:
        if self.kind == "s3":
            missing = [
                k for k in ("endpoint", "bucket", "access_key", "secret_key_file") if not getattr(self, k)
            ]
            if missing:
                raise ValueError(f'kind = "s3" needs {", ".join(missing)}')
        return self


class Keys(_Strict):
    """Key files; recorders need only `seal.pub`, the vault and the API the private keys."""

    dir: Path


class Database(_Strict):
    url: str = "sqlite:///holdfast.db"


class Purge(_Strict):
    #: Refuse to purge unless the system clock is NTP-synchronised (a site without NTP opts out knowingly).
    require_clock_sync: bool = True
    batch_size: int = Field(default=500, ge=1, le=100000)
    #: Store usage (percent of its filesystem) above which the oldest unheld segments go early.
    high_water_percent: float = Field(default=90.0, gt=0, le=100)
    interval_seconds: int = Field(default=300, ge=10)
    #: Where the store's filesystem is shared or cannot be sized (no dedicated mount), count the
    #: high-water mark against this many bytes of indexed segments instead of the filesystem.
    store_quota_bytes: int | None = Field(default=None, ge=1)


class Pbx(_Strict):
    dir: Path | None = None
    #: A recording is complete once its size has not changed for this long.
    settle_seconds: float = Field(default=5.0, ge=0.1)


class Recorder(_Strict):
    """How camera recorders run as processes (and systemd units)."""

    #: "camera": one process and unit per camera (holdfast-recorder@CAMERA), each isolated.
    #: "site": one process per site for all its cameras (holdfast-site-recorder@SITE): about
    #: 10 MB less memory per camera, but a restart of the unit interrupts all of them.
    process_per: Literal["camera", "site"] = "camera"


class Api(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_minutes: int = Field(default=480, ge=1)
    #: Days a data subject's access request must be answered in (Heka: 30 days; Kunta-asunnot: 14).
    subject_request_days: int = Field(default=30, ge=1, le=90)
    #: Password checks (argon2id, 64 MiB each) run at once; more logins wait their turn, so a
    #: burst of logins cannot take the memory the recorders need.
    max_password_checks: int = Field(default=2, ge=1, le=64)
    #: Largest share of the frame a subject-access export may leave unblurred (the subject's
    #: rectangle): everyone else in the picture stays blurred.
    subject_rect_max_share: float = Field(default=0.25, gt=0, le=1)
    #: Reverse proxies (IP addresses or networks) whose X-Forwarded-For is believed; empty: none,
    #: the peer address is the client.
    trusted_proxies: list[str] = []
    #: Evidence and subject-access exports running at once, across all the API's worker processes
    #: (an flock per slot in the export scratch); more answer 429.
    max_concurrent_exports: int = Field(default=2, ge=1, le=64)
    #: Largest export, counted as the plaintext bytes of the segments it reads; larger answers 413.
    max_export_bytes: int = Field(default=4 * 1024**3, ge=1)
    #: tmpfs directory for exports; must not be the filesystem of `[pbx] dir` (an export filling
    #: it would stop PBX recordings from landing). Default: `paths.scratch`.
    export_scratch: Path | None = None
    #: Live view tickets (HLS playlists, call views) one user may hold; the oldest is dropped.
    view_tickets_per_user: int = Field(default=50, ge=1, le=10000)
    #: API worker processes sharing the one listening socket. Everything requests share (sessions,
    #: view tickets, login failure counts, export slots) lives in the index or the export scratch,
    #: so any worker answers any request. More than the box's cores buys nothing.
    workers: int = Field(default=1, ge=1, le=64)
    #: Threads a worker runs requests on. Few on purpose: more runnable threads in one process
    #: wait longer for the GIL (api/pools.py). Raise it when requests wait on something slow
    #: outside the box, e.g. many viewers of footage on a distant S3 store.
    threads: int = Field(default=4, ge=1, le=256)
    #: Long requests (exports, thumbnails, verifying or exporting a log, opening or closing an
    #: incident with S3 legal holds) running at once in a worker, beside its request threads;
    #: more wait their turn without holding a request thread.
    long_requests: int = Field(default=4, ge=1, le=64)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for x in v:
            try:
                ipaddress.ip_network(x, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {x!r} is not an IP address or network") from None
        return v


#: Roles an account can have (vault.people.users.ROLES is the same tuple; config cannot import the vault).
Role = Literal["security", "auditor", "dpo", "admin"]
#: What a four-eyes rule can cover: viewing camera footage, exporting, listening to call audio.
ApprovalAction = Literal["view", "export", "call_audio"]


class ApprovalRule(_Strict):
    """One kind of access that needs a second person's approval of a named request first."""

    action: ApprovalAction
    #: Sites the rule applies to; empty: every site.
    sites: list[str] = []
    #: Roles whose accesses need the approval; empty: every role.
    roles: list[Role] = []
    #: Only footage that began more than this many hours before the access (e.g. 72); unset: any age.
    older_than_hours: float | None = Field(default=None, gt=0, le=24 * 3650)


class Approvals(_Strict):
    """Four eyes on a request (vault/people/approvals.py). No rules (the default): nothing needs approval."""

    rules: list[ApprovalRule] = []
    #: Roles that may approve or refuse a request (never the requester; a security approver
    #: only for sites assigned to them).
    approver_roles: list[Role] = Field(default=["dpo"], min_length=1)
    #: An approval is valid this long after it was given; a pending request lapses after as long.
    expire_hours: float = Field(default=24.0, gt=0, le=24 * 31)
    #: How long a break-glass override grants access to what it names.
    break_glass_minutes: int = Field(default=60, ge=1, le=24 * 60)
    #: Shortest reason a break-glass override accepts (characters, after trimming).
    break_glass_min_reason: int = Field(default=20, ge=5, le=500)


class HoldfastConfig(_Strict):
    sites: list[Site] = Field(min_length=1)
    cameras: list[Camera] = []
    lines: list[CallLine] = []
    retention: dict[str, RetentionClass] = Field(min_length=1)
    paths: Paths
    keys: Keys
    store: Store = Store()
    database: Database = Database()
    purge: Purge = Purge()
    pbx: Pbx = Pbx()
    api: Api = Api()
    recorder: Recorder = Recorder()
    approvals: Approvals = Approvals()

    #: Where the file was loaded from; relative paths in it are relative to its directory.
    source_path: Path | None = Field(default=None, exclude=True)

    def cross_reference_errors(self) -> list[str]:
        """Errors that need the whole file to see: unknown classes, sites, duplicate ids."""
        errors: list[str] = []
        site_ids = {s.id for s in self.sites}
        for name in self.retention:
            if not _ID_RE.match(name):
                errors.append(f"retention.{name}: class name must match {ID_PATTERN}")
        seen: dict[str, str] = {}
        for i, s in enumerate(self.sites):
            if s.id in seen:
                errors.append(f"sites[{i}].id: duplicate id {s.id!r}")
            seen[s.id] = f"sites[{i}]"
        sources: dict[str, str] = {}
        for kind, items in (("cameras", self.cameras), ("lines", self.lines)):
            for i, item in enumerate(items):
                where = f"{kind}[{i}]"
                if item.retention not in self.retention:
                    errors.append(f'{where}.retention: unknown class "{item.retention}"')
                if item.site not in site_ids:
                    errors.append(f'{where}.site: unknown site "{item.site}"')
                if item.id in sources:
                    errors.append(f'{where}.id: duplicate source id "{item.id}" (also {sources[item.id]})')
                sources[item.id] = where
        for i, rule in enumerate(self.approvals.rules):
            for site in rule.sites:
                if site not in site_ids:
                    errors.append(f'approvals.rules[{i}].sites: unknown site "{site}"')
        if (self.api.tls_cert is None) != (self.api.tls_key is None):
            errors.append("api: set both tls_cert and tls_key, or neither")
        return errors

    # -- lookups used everywhere --------------------------------------------------------

    def source(self, source_id: str) -> Camera | CallLine:
        for item in (*self.cameras, *self.lines):
            if item.id == source_id:
                return item
        raise KeyError(f"unknown source {source_id!r}: not a camera or call line in the config")

    def source_kind(self, source_id: str) -> Literal["camera", "line"]:
        return "camera" if isinstance(self.source(source_id), Camera) else "line"

    def retention_for(self, source_id: str) -> tuple[str, RetentionClass]:
        name = self.source(source_id).retention
        return name, self.retention[name]

    def site(self, site_id: str) -> Site:
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(f"unknown site {site_id!r}")
