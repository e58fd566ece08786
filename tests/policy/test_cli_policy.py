"""``hvballoon autoballoon``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hvballoon.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["autoballoon", *args])
    return result.exit_code, result.output


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


def test_session_margins_keep_the_sessions_guard_rails() -> None:
    # on a full host, after five minutes our policy trusts a steady VM with the absolute margin;
    # told to keep the session's margins, no lower goes below used + 10 % of the maximum
    code, out = run("fake://dense", "--rounds", "60", "--json", "--session-margins")
    assert code == 0, out
    rows = [json.loads(line) for line in out.strip().splitlines()]
    lowers = [r for r in rows if r["action"] == "lower"]
    assert lowers
    for r in lowers:
        assert r["after_bytes"] >= r["inputs"]["used_bytes"] + int(0.10 * r["inputs"]["maximum_bytes"])
    code, out = run("fake://dense", "--rounds", "60", "--json")
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert any(
        r["action"] == "lower"
        and r["after_bytes"] < r["inputs"]["used_bytes"] + int(0.10 * r["inputs"]["maximum_bytes"])
        for r in rows
    )
