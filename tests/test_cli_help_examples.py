"""Every example a command's ``--help`` ends with that runs on the simulator alone runs, and
exits 0: a reader copies them before reading anything else."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import click
import pytest

from tests.support.cli import invoke


def _examples() -> list[tuple[str, list[str]]]:
    """``(command, words)`` of each example line of every command's help (a line continued by
    ``\\`` joined to the next; a trailing ``# comment`` dropped)."""
    from hvballoon.cli.app import COMMANDS

    out: list[tuple[str, list[str]]] = []
    for name, (module, attribute) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        commands = command.commands.values() if isinstance(command, click.Group) else [command]
        for cmd in commands:
            text = (cmd.epilog or "").replace("\\\n", " ")
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("hvballoon "):
                    out.append((name, shlex.split(line, comments=True)[1:]))
    return out


def _runs_on_the_simulator_alone(words: list[str]) -> bool:
    if any(w in ("|", ">", "<") for w in words):  # a shell pipeline
        return False
    if words[0] == "watch" and "--count" not in words:  # until Ctrl-C
        return False
    if "--plot" in words or "--serve" in words or "--journal" in words:  # matplotlib; forever; a run before
        return False
    uris = [w for w in words if "://" in w]
    return all(u.startswith("fake://") for u in uris) and (
        bool(uris) or words[0] in ("backends", "scenarios", "schema", "simulate")
    )


EXAMPLES = [(n, w) for n, w in _examples() if _runs_on_the_simulator_alone(w)]
#: A simulation with a policy decides every round of its hours (waves-tight's: 15 s).
PARAMS = [
    pytest.param(
        n, w, id=" ".join(w), marks=[pytest.mark.slow] if n == "simulate" and "--policy" in w else []
    )
    for n, w in EXAMPLES
]


def test_the_help_has_examples_that_run_on_the_simulator() -> None:
    assert {"stats", "set", "config", "autoballoon", "simulate", "fake"} <= {n for n, _ in EXAMPLES}


@pytest.mark.parametrize(("name", "words"), PARAMS)
def test_a_help_example_on_the_simulator_runs(
    name: str, words: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where the examples' own files are, and go
    (tmp_path / "hosts.txt").write_text("fake://seed\n")
    (tmp_path / "my-scenario.yaml").write_text(
        "name: mine\nhost: {physical: 32GiB}\nvms:\n  - {name: web01, memory: 8GiB, used: 3GiB}\n"
    )
    words = [w.replace("/tmp/", f"{tmp_path}/") for w in words]  # a persisted world of its own
    r = invoke(*words)
    assert r.returncode == 0, (name, r.stderr)
