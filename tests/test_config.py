"""Configuration: the example is valid, and every malformed file names the field to fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import config
from config.load import EXAMPLE_PATH
from tests.support.appliance import HOLDFAST, REPO, Appliance


def test_example_config_carries_the_seeds_classes() -> None:
    cfg = config.load(EXAMPLE_PATH)
    assert cfg.retention["office-camera"].days == 14
    assert cfg.retention["parking-camera"].days == 21
    assert cfg.retention["call-audio"].months == 3
    assert {c.id: c.retention for c in cfg.cameras} == {
        "office-1": "office-camera",
        "garage-1": "parking-camera",
    }
    assert cfg.cameras[0].url == "rtsp://127.0.0.1:8554/office-1"
    assert cfg.cameras[1].url == "rtsp://127.0.0.1:8554/garage-1"
    assert cfg.lines[0].id == "cs-1" and cfg.lines[0].retention == "call-audio"
    assert cfg.sites[0].id == "demo"
    assert cfg.purge.require_clock_sync is True


def test_config_show_json_and_check(appliance: Appliance) -> None:
    shown = json.loads(appliance.cli("config", "show", "--json").stdout)
    assert shown["paths"]["spool"] == str(appliance.dir.resolve() / "spool")
    assert shown["database"]["url"].endswith(str(appliance.dir.resolve() / "db" / "holdfast.db"))
    out = appliance.cli("config", "check").stdout.decode()
    assert "office-camera 14 days" in out and "call-audio 3 calendar months" in out


def _example() -> str:
    return EXAMPLE_PATH.read_text()


# (description, transform of the example text, text the error must contain)
BROKEN: list[tuple[str, object, str]] = [
    (
        "unknown retention class",
        lambda t: t.replace('retention = "parking-camera"', 'retention = "parkin"'),
        'cameras[1].retention: unknown class "parkin"',
    ),
    (
        "unknown site",
        lambda t: t.replace(
            'site = "demo"\nurl = "rtsp://127.0.0.1:8554/garage-1"',
            'site = "nowhere"\nurl = "rtsp://127.0.0.1:8554/garage-1"',
        ),
        'cameras[1].site: unknown site "nowhere"',
    ),
    (
        "not an RTSP URL",
        lambda t: t.replace("rtsp://127.0.0.1:8554/office-1", "http://127.0.0.1/office-1"),
        "cameras[0].url",
    ),
    ("negative days", lambda t: t.replace("days = 14", "days = -14"), "retention.office-camera.days"),
    (
        "both days and months",
        lambda t: t.replace("days = 21", "days = 21\nmonths = 1"),
        "retention.parking-camera: set exactly one of `days` or `months`",
    ),
    (
        "typo in a key",
        lambda t: t.replace("require_clock_sync = true", "require_clock_synch = true"),
        "purge.require_clock_synch",
    ),
    ("bad camera id", lambda t: t.replace('id = "office-1"', 'id = "../office"'), "cameras[0].id"),
    (
        "duplicate source id",
        lambda t: t.replace('id = "garage-1"', 'id = "office-1"'),
        'cameras[1].id: duplicate source id "office-1"',
    ),
    (
        "missing paths table",
        lambda t: t.replace('[paths]\nspool = "spool"\nstore = "store"\nscratch = "/run/holdfast"\n', ""),
        "paths: Field required",
    ),
    ("unknown time zone", lambda t: t.replace("Europe/Helsinki", "Europe/Atlantis"), "sites[0].timezone"),
    ("TOML syntax error", lambda t: t.replace("[purge]", "[purge"), "TOML syntax"),
    (
        "wrong type",
        lambda t: t.replace("segment_seconds = 10\n", 'segment_seconds = "ten"\n', 1),
        "cameras[0].segment_seconds",
    ),
]


@pytest.mark.parametrize("name,transform,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_malformed_config_names_the_field(tmp_path: Path, name: str, transform, expected: str) -> None:
    text = transform(_example())  # type: ignore[operator]
    assert text != _example(), f"test transform for {name!r} did not apply"
    p = tmp_path / "holdfast.toml"
    p.write_text(text)
    r = subprocess.run(
        [*HOLDFAST, "--config", str(p), "config", "check"],
        capture_output=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode != 0
    err = r.stderr.decode()
    assert expected in err, err
    assert "Traceback" not in err


def test_missing_config_file_says_how_to_make_one(tmp_path: Path) -> None:
    r = subprocess.run(
        [*HOLDFAST, "--config", str(tmp_path / "nope.toml"), "config", "check"],
        capture_output=True,
        env={"PYTHONPATH": str(REPO)},
    )
    assert r.returncode != 0
    assert "holdfast init" in r.stderr.decode()


def test_holdfast_config_env_is_the_default(appliance: Appliance) -> None:
    r = appliance.cli("config", "show", "--json")
    assert json.loads(r.stdout)["keys"]["dir"] == str(appliance.dir.resolve() / "keys")


def test_init_refuses_to_overwrite(appliance: Appliance) -> None:
    r = appliance.cli("init", str(appliance.dir), check=False)
    assert r.returncode != 0 and b"already exists" in r.stderr


def _check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[bytes]:
    p = tmp_path / "holdfast.toml"
    p.write_text(text)
    return subprocess.run(
        [*HOLDFAST, "--config", str(p), "config", "check"],
        capture_output=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def _danish_garage(days: int, extra: str = "") -> str:
    text = _example().replace('country = "FI"', 'country = "DK"')
    return text.replace("days = 21\n", f"days = {days}\n{extra}", 1)


def test_example_config_passes_the_legal_checks(tmp_path: Path) -> None:
    r = _check(tmp_path, _example())
    assert r.returncode == 0 and r.stderr == b"", r.stderr


def test_danish_crime_prevention_class_over_30_days_fails(tmp_path: Path) -> None:
    r = _check(tmp_path, _danish_garage(45))
    assert r.returncode != 0
    err = r.stderr.decode()
    assert "error: retention.parking-camera" in err and "§ 4 c" in err and "45 days" in err, err
    # 30 days is the limit itself; a stated stk. 5 exception allows longer.
    assert _check(tmp_path, _danish_garage(30)).returncode == 0
    ok = _check(tmp_path, _danish_garage(45, 'exception = "§ 4 c, stk. 5: a filed police report"\n'))
    assert ok.returncode == 0, ok.stderr
    # The same class at a Finnish site is not bound by the Danish law.
    assert _check(tmp_path, _example().replace("days = 21\n", "days = 45\n", 1)).returncode == 0


def test_camera_class_beyond_72_hours_without_justification_warns(tmp_path: Path) -> None:
    text = _example()
    start = text.index("[retention.office-camera]\n")
    line_start = text.index("justification = ", start)
    line_end = text.index("\n", line_start) + 1
    r = _check(tmp_path, text[:line_start] + text[line_end:])
    assert r.returncode == 0, "a warning does not fail the check"
    assert "warning: retention.office-camera" in r.stderr.decode() and "72 hours" in r.stderr.decode()
    # Three days is within the EDPB's 72 hours: no justification needed.
    short = text[:line_start] + text[line_end:]
    short = short.replace("days = 14\n", "days = 3\n", 1)
    assert b"office-camera" not in _check(tmp_path, short).stderr


def test_call_lines_must_be_announced(tmp_path: Path) -> None:
    r = _check(tmp_path, _example().replace("announced = true", "announced = false"))
    assert r.returncode != 0 and b"lines[0].announced" in r.stderr
