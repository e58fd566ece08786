"""``hvballoon autoballoon``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hvballoon.cli import main


def run(*args: str) -> tuple[int, str]:
    """The exit code, and stdout (the decisions; the summary goes to stderr) — all the output
    when the command failed."""
    result = CliRunner().invoke(main, ["autoballoon", *args])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_once_dry_run_prints_explained_moves() -> None:
    code, out = run("fake://seed", "--policy", "hvballoon", "--once", "--dry-run")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines and all(line.startswith("[0] ") for line in lines)
    assert "(dry run)" in lines[0] and "hvballoon.lower" in lines[0]


def test_json_lines_of_decisions() -> None:
    code, out = run("fake://seed", "--policy", "mom", "--rounds", "2", "--json")
    assert code == 0, out
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert len(rows) == 20 and {r["round"] for r in rows} == {0, 1}
    assert all(r["policy"] == "mom" and r["reason"] for r in rows)


def test_per_vm_options_and_settings_file(tmp_path: Path) -> None:
    settings = tmp_path / "s.yaml"
    settings.write_text("vms:\n  web02: {floor: 15GiB}\n")
    code, out = run(
        "fake://seed",
        "--once",
        "--json",
        "--exclude",
        "web01",
        "--self-managed",
        "jvm01",
        "--settings",
        str(settings),
    )
    assert code == 0, out
    rows = {r["vm"]: r for r in map(json.loads, out.strip().splitlines())}
    assert rows["web01"]["action"] == "skip"
    assert rows["jvm01"]["action"] == "hold" and rows["jvm01"]["rule"] == "hvballoon.self_managed"
    assert rows["web02"]["after_bytes"] >= 15 * 2**30


def test_bad_input_exits_2() -> None:
    code, out = run("fake://seed", "--once", "--floor", "web01")
    assert code == 2 and "VM=SIZE" in out
    code, out = run("fake://seed", "--once", "--interval", "0s")
    assert code == 2


@pytest.mark.slow  # 640 controller rounds through the command
def test_session_margins_keep_the_sessions_guard_rails() -> None:
    # on a full host (rounds every second while it is short), after five minutes (round 300)
    # our policy trusts a steady VM with the absolute margin;
    # told to keep the session's margins, no lower goes below used + 10 % of the maximum
    code, out = run("fake://dense", "--rounds", "320", "--json", "--session-margins")
    assert code == 0, out
    rows = [json.loads(line) for line in out.strip().splitlines()]
    lowers = [r for r in rows if r["action"] == "lower"]
    assert lowers
    for r in lowers:
        assert r["after_bytes"] >= r["inputs"]["used_bytes"] + int(0.10 * r["inputs"]["maximum_bytes"])
    code, out = run("fake://dense", "--rounds", "320", "--json")
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert any(
        r["action"] == "lower"
        and r["after_bytes"] < r["inputs"]["used_bytes"] + int(0.10 * r["inputs"]["maximum_bytes"])
        for r in rows
    )


def test_settings_naming_unknown_vms_or_impossible_floors_are_warned_about(tmp_path: Path) -> None:
    settings = tmp_path / "s.yaml"
    settings.write_text("vms:\n  web99: {floor: 4GiB}\n")
    args = ["autoballoon", "fake://seed", "--once", "--dry-run", "--json", "--settings", str(settings)]
    args += ["--exclude", "nosuch", "--exclude", "web02", "--floor", "web01=20GiB"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 3, result.stderr
    assert any("'web99'" in w for w in warned) and any("'nosuch'" in w for w in warned)
    assert any("'web01'" in w and "20 GiB" in w and "maximum 16 GiB" in w for w in warned)
    assert not any("a VM 'web02'" in w for w in warned)  # web02 exists: nothing to say
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert len(rows) == 10  # the run went ahead
    # --strict: the same problems stop the run before any round, named, exit 2
    strict = CliRunner().invoke(main, [*args, "--strict"])
    assert strict.exit_code == 2 and strict.stdout.strip().startswith("{")
    err = json.loads(strict.stdout)
    assert err["code"] == "invalid_request"
    assert all(name in err["message"] for name in ("web99", "nosuch", "web01"))


def test_the_controller_says_what_its_settings_cannot_do() -> None:
    import warnings

    import hvballoon
    from hvballoon.policy import Controller, ControllerSettings

    settings = ControllerSettings(
        host_memory_bytes="120GiB", vms={"web0l": {"exclude": True}, "db01": {"floor": "8GiB"}}
    )
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, "hvballoon", settings, dry_run=True)
        problems = ctl.check_settings()
        assert len(problems) == 1 and "'web0l'" in problems[0] and "did you mean 'web01'" in problems[0]
        assert "'db01'" not in problems[0]  # a floor below the maximum is fine
        fresh = Controller(hv, "hvballoon", settings, dry_run=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fresh.step()
            fresh.step()
        told = [str(w.message) for w in caught]
        assert told == problems  # once, at the first round, for a caller that never asked
