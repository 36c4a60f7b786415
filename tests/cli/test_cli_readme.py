"""The README's commands are the real ones: every ``twin ...`` it names exists, with every
option it shows (checked against the commands' own definitions, which ``--help`` prints)."""

from __future__ import annotations

import re

import click

from cli_support import ROOT
from twin.cli import cli

SPAN = re.compile(r"`(twin [^`]+)`")


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The command a README span names, and the rest of its words."""
    command: click.Command = cli
    words = list(words)
    while words and isinstance(command, click.Group) and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    return command, words


def test_every_twin_command_and_option_in_the_readme_exists():
    spans = [span for doc in ("README.md", "keys/README.md") for span in SPAN.findall((ROOT / doc).read_text())]
    assert len(spans) > 30
    for span in spans:
        words = span.replace("\\|", " ").replace("[", " ").replace("]", " ").split()[1:]
        command, rest = _resolve(words)
        assert command is not cli, span
        if isinstance(command, click.Group):
            assert not rest, f"{span}: {command.name} has no command {rest[0]!r}"
            continue
        known = {opt for param in command.params for opt in param.opts}
        for word in rest:
            option = word.split("=")[0]
            if option.startswith("--"):
                assert option in known, f"{span}: {command.name} has no option {option}"


def test_every_subcommand_is_in_the_readme():
    text = (ROOT / "README.md").read_text()
    for name, group in cli.commands.items():
        subcommands = group.commands if isinstance(group, click.Group) else {"": group}
        for sub in subcommands:
            assert f"twin {name} {sub}".strip() in text, f"the README never mentions twin {name} {sub}"
