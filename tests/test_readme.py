"""The README stays true: its commands exist with the options it shows, every setting is listed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from labelandlearn.cli import app
from labelandlearn.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
GLOBAL_OPTIONS = {"--data-dir", "--database-url", "--log-level", "--version", "--help", "-h"}


def code_blocks(markdown: str) -> list[str]:
    return re.findall(r"```(?:sh|bash|console)?\n(.*?)```", markdown, flags=re.DOTALL)


def command_lines(block: str) -> list[str]:
    """Return the shell commands of a block, with backslash continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def readme_cli_calls() -> list[list[str]]:
    calls = []
    for block in code_blocks(README):
        for line in command_lines(block):
            words = shlex.split(line)
            if words and words[0] == "labelandlearn":
                calls.append(words[1:])
    return calls


def resolve(words: list[str]) -> tuple[Any, list[str], str]:
    """Walk the command tree along ``words``; return the command, the words after it, its path."""
    command = typer.main.get_command(app)
    rest = list(words)
    path = []
    while rest and hasattr(command, "commands") and rest[0] in command.commands:
        path.append(rest[0])
        command = command.commands[rest.pop(0)]
    return command, rest, " ".join(path)


def test_setup_commands_come_first() -> None:
    first_block = code_blocks(README)[0]
    assert command_lines(first_block) == ["make demo", "make test"]
    assert README.index("make demo") < README.index("## Using the command line")


def test_makefile_has_setup_targets() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test", "lint"):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target


def test_ci_runs_make_test() -> None:
    script = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "set -euo pipefail" in script
    assert script.strip().endswith("make test")


def test_readme_shows_every_command() -> None:
    shown = {resolve(words)[2] for words in readme_cli_calls()}
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        paths = [f"{name} {sub}" for sub in command.commands] if hasattr(command, "commands") \
            else [name]
        for path in paths:
            assert path in shown, f"labelandlearn {path} is not in the README"


@pytest.mark.parametrize("words", readme_cli_calls(), ids=lambda words: " ".join(words[:3]))
def test_readme_command_options_exist(words: list[str]) -> None:
    command, rest, _path = resolve(words)
    assert not hasattr(command, "commands"), f"{' '.join(words)} names no command"
    known = set(GLOBAL_OPTIONS)
    for param in command.params:
        known.update(param.opts)
        known.update(param.secondary_opts)
    used = {word.split("=", 1)[0] for word in rest if word.startswith("--")}
    assert used <= known, f"unknown options {sorted(used - known)} in: {' '.join(words)}"


def test_settings_table_lists_every_setting() -> None:
    rows = re.findall(r"^\| `(LABELANDLEARN_[A-Z_]+)` \|", README, flags=re.MULTILINE)
    expected = {f"LABELANDLEARN_{name.upper()}" for name in Settings.model_fields}
    assert set(rows) == expected
    assert len(rows) == len(set(rows))


def test_settings_have_descriptions() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description for the help texts"
