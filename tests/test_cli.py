"""The `holdfast` entry point: every command is reachable and loads only what it needs."""

from __future__ import annotations

import argparse
import subprocess
import sys

from cli.main import COMMANDS, build_parser, command_word
from tests.support.appliance import REPO


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def test_command_map_is_complete() -> None:
    """A command registered by a module but missing from COMMANDS would only run via --help paths."""
    assert _subcommands(build_parser()) == set(COMMANDS)
    for word, module in COMMANDS.items():
        assert word in _subcommands(build_parser([word])), (word, module)


def test_command_word_skips_global_options() -> None:
    assert command_word(["--config", "x.toml", "--log-level", "DEBUG", "segments", "list"]) == "segments"
    assert command_word(["--help"]) is None


def test_running_a_command_does_not_import_the_others() -> None:
    code = (
        "import sys; from cli.main import build_parser; build_parser(['config', 'check']); "
        "print(' '.join(m for m in ('fastapi', 'argon2', 'uvicorn', 'pyaudio', 'cli.cmd_serve') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0
    for word in COMMANDS:
        assert word in out.stdout
