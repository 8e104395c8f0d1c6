"""Loading the configuration from TOML, with every error reported where it is."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from config.model import HoldfastConfig

DEFAULT_PATH = Path("/etc/holdfast/holdfast.toml")
EXAMPLE_PATH = Path(__file__).with_name("holdfast.example.toml")


class ConfigError(Exception):
    """The configuration cannot be used; `errors` lists every problem with its location."""

    def __init__(self, path: Path | None, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        where = f"{path}: " if path else ""
        super().__init__(where + "; ".join(errors))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def resolve_path(explicit: str | os.PathLike[str] | None) -> Path:
    """--config beats HOLDFAST_CONFIG beats /etc/holdfast/holdfast.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("HOLDFAST_CONFIG")
    return Path(env) if env else DEFAULT_PATH


def parse(data: dict[str, Any], path: Path | None = None) -> HoldfastConfig:
    try:
        cfg = HoldfastConfig.model_validate(data)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            errors.append(f"{_loc(err['loc'])}: {msg}")
        raise ConfigError(path, errors) from None
    errors = cfg.cross_reference_errors()
    if errors:
        raise ConfigError(path, errors)
    if path is not None:
        cfg = _absolutise(cfg, path.parent.resolve())
    return cfg


def _absolutise(cfg: HoldfastConfig, base: Path) -> HoldfastConfig:
    """Relative paths are relative to the config file, so a site directory can move as a whole."""

    def fix(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else base / p

    paths = cfg.paths.model_copy(
        update={k: fix(getattr(cfg.paths, k)) or getattr(cfg.paths, k) for k in ("spool", "store", "scratch")}
    )
    keys = cfg.keys.model_copy(update={"dir": fix(cfg.keys.dir) or cfg.keys.dir})
    pbx = cfg.pbx.model_copy(update={"dir": fix(cfg.pbx.dir) or cfg.pbx.dir})
    api = cfg.api.model_copy(
        update={
            "tls_cert": fix(cfg.api.tls_cert) or cfg.api.tls_cert,
            "tls_key": fix(cfg.api.tls_key) or cfg.api.tls_key,
            "export_scratch": fix(cfg.api.export_scratch) or cfg.api.export_scratch,
        }
    )
    store = cfg.store.model_copy(
        update={"secret_key_file": fix(cfg.store.secret_key_file) or cfg.store.secret_key_file}
    )
    db = cfg.database
    prefix = "sqlite:///"
    if db.url.startswith(prefix) and not db.url.startswith(prefix + "/") and db.url != prefix + ":memory:":
        db = db.model_copy(update={"url": prefix + str(base / db.url[len(prefix) :])})
    return cfg.model_copy(
        update={
            "paths": paths,
            "keys": keys,
            "pbx": pbx,
            "api": api,
            "database": db,
            "store": store,
            "source_path": base,
        }
    )


def load(path: str | os.PathLike[str] | None = None) -> HoldfastConfig:
    p = resolve_path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            p,
            ["file not found (pass --config FILE or set HOLDFAST_CONFIG; `holdfast init DIR` makes one)"],
        ) from None
    except OSError as e:
        raise ConfigError(p, [f"cannot read: {e.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(p, [f"not UTF-8 text (byte {e.start})"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(p, [f"TOML syntax: {e}"]) from None
    return parse(data, p)


def render_example(
    *,
    spool: Path,
    store: Path,
    scratch: Path,
    keys: Path,
    pbx: Path,
    database: Path,
    export_scratch: Path | None = None,
) -> str:
    """The example config with its paths replaced: what `init` and `install` write for a site."""
    import re

    text = EXAMPLE_PATH.read_text("utf-8")
    subs = {
        r'^spool = ".*"$': f'spool = "{spool}"',
        r'^store = ".*"$': f'store = "{store}"',
        r'^scratch = ".*"$': f'scratch = "{scratch}"',
        r'^dir = "keys"$': f'dir = "{keys}"',
        r'^dir = "pbx"$': f'dir = "{pbx}"',
        r'^url = "sqlite:///.*"$': f'url = "sqlite:///{database}"',
    }
    if export_scratch is not None:
        subs[r'^# export_scratch = ".*"$'] = f'export_scratch = "{export_scratch}"'
    for pattern, repl in subs.items():
        text, n = re.subn(pattern, repl.replace("\\", "\\\\"), text, flags=re.M)
        if n != 1:
            raise ConfigError(EXAMPLE_PATH, [f"the example config has no unique line matching {pattern}"])
    return text
