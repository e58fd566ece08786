"""Every ``--json`` output of the command validates against the JSON Schema ``hvballoon schema``
prints for it (the models are strict: a key that is not in the schema fails), and no command
with ``--json`` is left out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest

from hvballoon.cli import main
from hvballoon.outputs import output_schemas
from tests.support.cli import Result, invoke
from tests.support.schemas import Lazy, validate

SCHEMAS = Lazy(output_schemas)


def run(*args: str) -> Result:
    """The command in this process (tests/test_cli.py runs the installed entry point once)."""
    return invoke(*args)


def check(instance: Any, name: str) -> None:
    validate(instance, SCHEMAS[name])


def check_each(items: list[Any], name: str) -> None:
    assert items, f"no {name} to check"
    for item in items:
        check(item, name)


#: (command words, schema, how the output is read: "one" JSON value, "list" of them, "lines")
CASES: list[tuple[list[str], str, str]] = [
    (["backends"], "BackendInfo", "list"),
    (["vms", "fake://seed"], "VM", "list"),
    (["stats", "fake://seed"], "MemoryStats", "list"),
    (["stats", "fake://seed?flavor=hyperv", "web01"], "MemoryStats", "list"),
    (["stats", "fake://seed", "fake://seed?flavor=esxi", "web01"], "FleetStats", "one"),
    (
        ["watch", "fake://seed", "fake://seed?flavor=hyperv", "--count", "2", "--interval", "0.1s"],
        "WatchSweep",
        "lines",
    ),
    (["set", "fake://seed", "web01", "8GiB"], "Change", "one"),
    (["set", "fake://seed", "web01", "8GiB", "--wait"], "WaitedChange", "one"),
    (["set", "fake://seed?flavor=esxi", "web01", "8GiB", "--wait"], "WaitedChange", "one"),
    (["set", "fake://seed", "web01=8GiB", "web02=7GiB"], "TargetsReport", "one"),
    (["set", "fake://seed", "web01=8GiB", "web02=7GiB", "--wait"], "TargetsReport", "one"),
    (["set", "fake://seed?flavor=esxi", "web01=8GiB", "db01=12GiB", "--dry-run"], "TargetsReport", "one"),
    (["config", "fake://seed?flavor=esxi", "db01"], "MemoryConfig", "one"),
    (["config", "fake://seed?flavor=esxi", "db01", "--limit", "8GiB"], "Change", "one"),
    (["config", "fake://seed?flavor=esxi", "db01", "web01"], "MemoryConfig", "list"),
    (["config", "fake://seed?flavor=esxi", "db01", "web01", "--limit", "8GiB"], "TargetsReport", "one"),
    (["capabilities", "fake://seed?flavor=hyperv", "db01"], "Capabilities", "one"),
    (["host", "fake://seed?flavor=esxi"], "HostStats", "list"),
    (["scenarios"], "ScenarioInfo", "list"),
    (["autoballoon", "fake://seed", "--rounds", "2"], "Decision", "lines"),
    (["autoballoon", "fake://seed", "--check", "--floor", "web99=1GiB"], "AutoballoonCheck", "one"),
    (["release", "fake://seed?flavor=esxi"], "ReleaseReport", "one"),
    (["simulate", "seed-spike", "--duration", "20m"], "SimulationSummary", "one"),
]


@pytest.mark.parametrize(
    ("words", "schema", "shape"), CASES, ids=[" ".join(c[0][:2]) + f" → {c[1]}" for c in CASES]
)
def test_output_validates_against_its_schema(words: list[str], schema: str, shape: str) -> None:
    r = run(*words, "--json")
    assert r.returncode == 0, r.stderr
    if shape == "one":
        check(json.loads(r.stdout), schema)
    elif shape == "list":
        check_each(json.loads(r.stdout), schema)
    else:
        check_each([json.loads(line) for line in r.stdout.splitlines()], schema)


def test_autoballoon_summary_and_checked_settings(tmp_path: Path) -> None:
    r = run("autoballoon", "fake://seed", "--rounds", "2", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stderr.splitlines()[-1])  # on stderr: stdout holds the decisions
    check(summary, "AutoballoonSummary")
    assert summary["rounds"] == 2 and summary["failed_rounds"] == 0
    settings = tmp_path / "s.yaml"
    settings.write_text("interval_seconds: 5\nvms: {db01: {self_managed: true}}\n")
    r = run("autoballoon", "--check-settings", str(settings), "--json")
    assert r.returncode == 0, r.stderr
    check(json.loads(r.stdout), "ControllerSettings")


def test_fake_advance_output(tmp_path: Path) -> None:
    r = run("fake", "advance", f"fake://seed?state={tmp_path / 'w.db'}", "10m", "--json")
    assert r.returncode == 0, r.stderr
    check(json.loads(r.stdout), "AdvanceResult")


@pytest.mark.parametrize(
    ("words", "code"),
    [
        (["set", "fake://seed", "web01", "1GiB"], "below_floor"),
        (["set", "fake://seed", "web01", "8G"], "invalid_size"),
        (["stats", "xen://h"], "invalid_uri"),
        (["vms", "fake://seed?state=/nonexistent/dir/w.db"], "invalid_request"),
        (["simulate", "seed", "--plot", "/nonexistent/x.png"], "invalid_request"),
    ],
)
def test_failures_validate_as_error_reports(words: list[str], code: str) -> None:
    r = run(*words, "--json")
    assert r.returncode != 0
    report = json.loads(r.stdout)
    check(report, "ErrorReport")
    assert report["code"] == code


def test_partial_outputs_validate_too() -> None:
    # one host: the VMs found on stdout, the missing ones as an error report on stderr
    r = run("stats", "fake://seed", "web01", "web99", "--json")
    assert r.returncode == 7
    check_each(json.loads(r.stdout), "MemoryStats")
    check(json.loads(r.stderr), "ErrorReport")
    # several hosts: a failing host's error is nested in the summary
    r = run("stats", "fake://seed", "fake://seed?flavor=bogus", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 2 and out["hosts"][1]["error"]["code"] == "invalid_uri"
    check(out, "FleetStats")


def test_refused_and_partial_bulk_sets_validate_as_targets_reports() -> None:
    """``set URI VM=SIZE…`` that fails prints its TargetsReport (each VM's record, the whole's
    error), not a bare error report: refused before anything changed, then partly applied."""
    r = run("set", "fake://seed", "web01=7GiB", "web02=1GiB", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 8 and not out["applied"]
    check(out, "TargetsReport")
    check(out["error"], "ErrorReport")
    check(out["results"][1]["error"], "ErrorReport")
    r = run("set", "fake://seed", "web01=7GiB", "web02=1GiB", "--skip-invalid", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 12 and out["applied"] and out["error"]["code"] == "partial_change"
    check(out, "TargetsReport")
    with pytest.raises(jsonschema.ValidationError):
        check({**out, "results": [{**out["results"][0], "colour": "red"}]}, "TargetsReport")


def test_the_schemas_are_strict() -> None:
    """A key the schema does not know fails, so a drift between output and schema is caught."""
    r = run("vms", "fake://seed", "--json")
    vm = json.loads(r.stdout)[0]
    with pytest.raises(jsonschema.ValidationError):
        check({**vm, "colour": "red"}, "VM")
    r = run("scenarios", "--json")
    with pytest.raises(jsonschema.ValidationError):
        check({**json.loads(r.stdout)[0], "vms": "ten"}, "ScenarioInfo")


def test_schema_prints_every_output_schema() -> None:
    r = run("schema")
    assert json.loads(r.stdout) == json.loads(json.dumps(dict(SCHEMAS)))
    for name in ("FleetStats", "WatchSweep", "Decision", "SimulationSummary", "BackendInfo", "ScenarioInfo"):
        assert json.loads(run("schema", name).stdout) == SCHEMAS[name]


def _json_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out |= _json_commands(cmd, (*prefix, name))
        elif any("--json" in getattr(p, "opts", ()) for p in cmd.params):
            out.add((*prefix, name))
    return out


def test_every_command_with_json_is_covered() -> None:
    # schema's output is the schemas themselves, JSON with or without --json
    covered = {tuple(words[:1]) for words, _, _ in CASES} | {("fake", "advance"), ("schema",)}
    assert _json_commands(main) <= covered, _json_commands(main) - covered
