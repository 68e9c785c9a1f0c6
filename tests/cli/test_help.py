"""Every `mpfn` command and sub-command prints its help (help texts are rendered as markup)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mpfn.cli.main import app


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _paths(sub, (*prefix, name))
    return paths


COMMANDS = _paths(typer.main.get_command(app))


def test_the_walk_finds_the_commands() -> None:
    assert ("build",) in COMMANDS and ("pools", "add") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "mpfn")
def test_help_renders(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "Usage" in result.output
