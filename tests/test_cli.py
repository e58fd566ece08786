"""The CLI, in this process through click's runner (the same ``main`` the console script calls),
and once through each real entry point in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hvballoon.models import json_schemas
from hvballoon.outputs import output_schemas
from tests.support import cli, schemas
from tests.support.cli import EXE
from tests.support.policies import targets

SCHEMAS = schemas.Lazy(json_schemas)


def run(*args: str, stdin: str | None = None, env: dict[str, str | None] | None = None) -> cli.Result:
    return cli.invoke(*args, stdin=stdin, env=env)


def validate(instance: Any, model: str) -> None:
    schemas.validate(instance, SCHEMAS[model])


def test_entry_point_is_installed() -> None:
    assert EXE, "the hvballoon console script must be installed (pip install -e .)"


@pytest.mark.slow
def test_the_startup_benchmark_runs_and_names_what_each_command_loads(tmp_path: Path) -> None:
    """``benchmarks/cli_startup.py`` (one run of each): its JSON, and the commands on targets
    loading neither the controller nor the plots, where ``autoballoon`` loads the controller."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cli_startup.py"
    out = tmp_path / "startup.json"
    command = [sys.executable, str(script), "--repeat", "1", "--out", str(out)]
    subprocess.run(command, check=True, timeout=300, capture_output=True)
    result = json.loads(out.read_text())
    assert result["benchmark"] == "cli_startup" and result["repeat"] == 1
    assert set(result["references"]) == {"python", "import hvballoon"}
    commands = result["commands"]
    for name, figures in commands.items():
        assert figures["seconds"] > 0 and figures["ratio_to_import"] > 0 and figures["modules"] > 100, name
    assert not commands["hvballoon stats fake://seed web01 --json"]["loads_the_controller"]
    assert not commands["hvballoon set --help"]["loads_the_controller"]
    assert commands["hvballoon autoballoon fake://seed --check --json"]["loads_the_controller"]
    bad = subprocess.run([sys.executable, str(script), "--repeat", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--repeat must be at least 1" in bad.stderr


@pytest.mark.slow
def test_the_entry_points_run_a_command_and_exit_with_the_errors_code() -> None:
    """Real processes, once each way in: the console script, and ``python -m hvballoon.cli``."""
    r = cli.run("stats", "fake://seed", "web01", "--json")
    assert r.returncode == 0, r.stderr
    assert [s["vm"]["name"] for s in json.loads(r.stdout)] == ["web01"]
    r = cli.run("set", "fake://seed", "web01", "1GiB", module=True)
    assert r.returncode == 8 and "below the safe floor" in r.stderr and not r.stdout


def test_stats_table_shows_seed() -> None:
    r = run("stats", "fake://seed")
    assert r.returncode == 0, r.stderr
    for name in ("web01", "db01", "jvm01", "ci01"):
        assert name in r.stdout
    assert "16 GiB" in r.stdout and "3 GiB" in r.stdout


def test_stats_table_ends_with_a_summary_of_the_vms_shown() -> None:
    # a table of 10,000 rows said nowhere how many VMs there were, nor what they held together
    r = run("stats", "fake://seed")
    assert r.stdout.splitlines()[-1] == (
        "10 VMs, 10 running, 0 with stale figures; running: configured 160 GiB, current 160 GiB, ballooned 0 B"
    )
    r = run("stats", "fake://seed", "web01", "db01")
    assert r.stdout.splitlines()[-1].startswith(
        "2 VMs, 2 running, 0 with stale figures; running: configured 32 GiB"
    )


def test_stats_json_validates() -> None:
    r = run("stats", "fake://seed", "--json")
    data = json.loads(r.stdout)
    assert len(data) == 10
    for item in data:
        validate(item, "MemoryStats")
    r = run("stats", "fake://seed?flavor=hyperv", "web01", "db01", "--json")
    data = json.loads(r.stdout)
    assert [d["vm"]["name"] for d in data] == ["web01", "db01"]
    assert data[0]["guest_used_bytes"] is None and data[0]["demand_bytes"] is not None


def test_vms_and_config_and_capabilities_json() -> None:
    for item in json.loads(run("vms", "fake://seed", "--json").stdout):
        validate(item, "VM")
    validate(json.loads(run("config", "fake://seed", "web01", "--json").stdout), "MemoryConfig")
    validate(json.loads(run("capabilities", "fake://seed", "--json").stdout), "Capabilities")
    validate(
        json.loads(run("capabilities", "fake://seed?flavor=hyperv", "db01", "--json").stdout), "Capabilities"
    )


def test_set_below_floor_is_refused_with_numbers() -> None:
    r = run("set", "fake://seed", "web01", "1GiB")
    assert r.returncode == 8
    assert "below the safe floor 4.6 GiB" in r.stderr and "guest uses 3 GiB" in r.stderr
    r = run("set", "fake://seed", "web01", "1GiB", "--json")
    err = json.loads(r.stdout)
    assert err["code"] == "below_floor" and err["details"]["floor_bytes"] > err["details"]["target_bytes"]


def test_set_forced_applies() -> None:
    r = run("set", "fake://seed", "web01", "1GiB", "--force", "--json")
    assert r.returncode == 0, r.stderr
    change = json.loads(r.stdout)
    validate(change, "Change")
    assert change["changed"] and change["after"]["target_bytes"] == 2**30 and change["warnings"]
    r = run("set", "fake://seed", "web01", "6GiB", "--wait", "--json")
    out = json.loads(r.stdout)
    validate(out["change"], "Change")
    validate(out["stats"], "MemoryStats")
    assert out["stats"]["current_bytes"] == 6 * 2**30


@pytest.mark.parametrize("size", ["4 gigs", "4G", "-1GiB", "0", "lots"])
def test_bad_size_names_accepted_spellings(size: str) -> None:
    r = run("set", "fake://seed", "web01", "--", size)
    assert r.returncode == 2
    assert "Accepted:" in r.stderr and "GiB" in r.stderr and "GB" in r.stderr


def test_dry_run_human_output() -> None:
    r = run("set", "fake://seed", "web01", "6GiB", "--dry-run")
    assert r.returncode == 0 and "would change" in r.stdout and "16 GiB -> 6 GiB" in r.stdout


def test_config_change() -> None:
    r = run(
        "config", "fake://seed?flavor=esxi", "db01", "--reservation", "4GiB", "--limit", "unlimited", "--json"
    )
    assert r.returncode == 0, r.stderr
    validate(json.loads(r.stdout), "Change")
    r = run("config", "fake://seed?flavor=hyperv", "web01", "--maximum", "8GiB")
    assert r.returncode == 10 and "can only be raised" in r.stderr
    r = run("config", "fake://seed", "web01", "--buffer-percent", "20")
    assert r.returncode == 9


def test_an_unlimited_limit_reads_unlimited_on_both_sides_of_the_change() -> None:
    r = run("config", "fake://esxi-limits", "web02", "--limit", "unlimited", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["web02: unchanged (limit)", "  limit: unlimited (unchanged)"]
    r = run("config", "fake://esxi-limits", "web01", "--limit", "unlimited", "--dry-run")
    assert r.stdout.splitlines() == ["web01: would change (limit)", "  limit: 6 GiB -> unlimited"]


def test_esxi_shares_level_and_reservation_lock() -> None:
    uri = "fake://seed?flavor=esxi"
    r = run("config", uri, "db01", "--shares-level", "high", "--memory-reservation-lock", "--json")
    assert r.returncode == 0, r.stderr
    change = json.loads(r.stdout)
    validate(change, "Change")
    # ESXi's own ratio: 20 shares per MB of 16 GiB; the locked reservation is the memory size
    assert change["after"] == {
        "shares_level": "high",
        "memory_reservation_lock": True,
        "shares": 20 * 16384,
        "reservation_bytes": 16 * 2**30,
    }
    r = run("config", uri, "db01", "--shares-level", "extreme", "--json")
    assert r.returncode == 2
    error = json.loads(r.stdout or r.stderr)
    assert error["code"] == "invalid_request" and "low, normal, high, custom" in error["message"]
    r = run("config", uri, "db01", "--shares", "100", "--shares-level", "low", "--json")
    assert r.returncode == 2
    assert json.loads(r.stdout or r.stderr)["details"]["rule"] == "shares_need_custom_level"
    r = run("config", uri, "db01", "--json")
    assert json.loads(r.stdout)["shares_level"] == "normal"  # ESXi's default, not "custom"


def test_hyperv_dynamic_memory_target_raises_the_maximum_up_to_the_host() -> None:
    r = run("set", "fake://seed?flavor=hyperv", "web01", "24GiB", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["after"] == {"target_bytes": 24 * 2**30}
    r = run("set", "fake://seed?flavor=hyperv", "web01", "121GiB", "--dry-run", "--force")
    assert r.returncode == 8 and "maximum 120 GiB" in r.stderr  # the simulated host's memory
    r = run("set", "fake://seed?flavor=hyperv", "web01", "12GiB", "--dry-run", "--json")
    assert r.returncode == 10
    assert json.loads(r.stdout or r.stderr)["details"]["rule"] == "maximum_only_up_while_running"


def test_errors_exit_codes() -> None:
    assert run("stats", "fake://seed", "nope").returncode == 7
    assert run("stats", "xen://h").returncode == 2
    r = run("stats", "esxi://root:pw@h")
    assert r.returncode == 2 and "pw@" not in r.stderr


def test_backends_and_scenarios() -> None:
    r = run("backends", "--json")
    rows = {b["name"]: b for b in json.loads(r.stdout)}
    assert rows["fake"]["status"] == "installed"
    for row in rows.values():
        if row["status"] == "missing":
            assert row["install"].startswith("pip install hvballoon-")
    assert "seed" in run("scenarios").stdout
    # the generated ones are named too (the --json list holds the built-ins only)
    assert "waves-<seed>-esxi" in run("scenarios").stdout
    assert {s["name"] for s in json.loads(run("scenarios", "--json").stdout)} >= {"seed"}


def test_password_from_stdin_is_never_printed() -> None:
    r = run("stats", "fake://seed", "--password-stdin", "--json", stdin="hunter2\n")
    assert r.returncode == 0 and "hunter2" not in r.stdout + r.stderr


def test_schema_and_help() -> None:
    schemas = json.loads(run("schema").stdout)
    assert set(schemas) >= set(SCHEMAS)  # the data models, and the other outputs (test_cli_schemas)
    r = run("set", "--help")
    assert "Examples:" in r.stdout and "--force" in r.stdout


@pytest.mark.parametrize("size", ["-1GiB", "-1", "-0.5GiB", "- 6GiB", "-  .5GiB"])
def test_a_negative_size_is_refused_as_negative_not_as_an_option(size: str) -> None:
    r = run("set", "fake://seed", "web01", size)
    assert r.returncode == 2
    assert "cannot be negative" in r.stderr and "No such option" not in r.stderr
    r = run("set", "--json", "fake://seed", "web01", size)
    err = json.loads(r.stdout)
    assert r.returncode == 2 and err["code"] == "invalid_size" and err["details"]["value"] == size


def test_options_still_parse_around_a_negative_argument() -> None:
    r = run("set", "fake://seed", "--timeout", "10s", "web01", "-1GiB", "--dry-run")
    assert r.returncode == 2 and "cannot be negative" in r.stderr
    r = run("set", "fake://seed", "web01", "-1GiB", "--no-such-option")
    assert r.returncode == 2 and "No such option" in r.stderr
    r = run("fake", "advance", "fake://seed", "-5m")
    assert r.returncode == 2 and "cannot be negative" in r.stderr and "No such option" not in r.stderr


def test_iec_short_units_are_accepted_on_the_command_line() -> None:
    r = run("set", "fake://seed", "web01", "6 Gi", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["after"]["target_bytes"] == 6 * 2**30


@pytest.mark.parametrize("flavor", ["esxi", "hyperv"])
def test_set_wait_on_an_unobservable_target_applies_warns_and_succeeds(flavor: str) -> None:
    size = "12GiB" if flavor == "esxi" else "16GiB"
    r = run("set", f"fake://seed?flavor={flavor}", "web01", size, "--wait")
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stdout and "cannot observe 'web01'" in r.stdout
    r = run("set", f"fake://seed?flavor={flavor}", "web01", size, "--wait", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    validate(out["change"], "Change")
    validate(out["stats"], "MemoryStats")
    assert any("cannot observe" in w for w in out["change"]["warnings"])
    assert out["stats"]["target_bytes"] == int(size.removesuffix("GiB")) * 2**30


def test_no_verify_warns_once_cleanly() -> None:
    r = run("stats", "fake://seed", "web01", "--no-verify")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("TLS certificate verification is OFF") == 1, r.stderr
    assert r.stderr.startswith("warning: TLS certificate verification is OFF for fake://seed")
    assert "UserWarning" not in r.stderr and ".py" not in r.stderr and "hvballoon.connect(" not in r.stderr
    r = run("stats", "fake://seed", "fake://seed?flavor=esxi", "--no-verify", "--json")
    assert r.returncode == 0, r.stderr
    for uri in ("fake://seed:", "fake://seed?flavor=esxi:"):
        assert r.stderr.count(f"OFF for {uri}") == 1, r.stderr
    assert ".py" not in r.stderr


def test_library_log_lines_never_reach_the_terminal_on_their_own() -> None:
    """A warning the CLI shows its own way is not printed again by logging's last resort."""
    r = run("set", "fake://seed?flavor=esxi", "web01", "12GiB", "--wait")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.count("cannot observe") == 1


def test_hints_name_the_command_line_s_own_options() -> None:
    r = run("set", "fake://seed", "web01", "1GiB")
    assert r.returncode == 8
    assert "hint: add --force to override" in r.stderr and "force=True" not in r.stderr, r.stderr
    err = json.loads(run("set", "fake://seed", "web01", "1GiB", "--json").stdout)
    assert err["hint"] == {"kind": "force", "text": "add --force to override"}
    r = run("stats", "esxi://root@127.0.0.2")
    assert r.returncode == 2, r.stderr
    assert "--password-stdin" in r.stderr and "HVBALLOON_PASSWORD" in r.stderr and "password=" not in r.stderr
    r = run("stats", "esxi://root:pw@h")
    assert r.returncode == 2 and "--password-stdin" in r.stderr and "pw@" not in r.stderr


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"])
def test_an_empty_password_on_stdin_is_refused(stdin: str) -> None:
    for args in (["stats", "fake://seed"], ["stats", "fake://seed", "fake://seed?flavor=esxi"]):
        r = run(*args, "--password-stdin", stdin=stdin)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "empty password" in r.stderr and "--password-stdin" in r.stderr
    r = run("stats", "fake://seed", "--password-stdin", "--json", stdin="")
    assert r.returncode == 2 and json.loads(r.stdout)["code"] == "invalid_request"


def test_stats_reports_what_exists_and_names_what_is_missing() -> None:
    r = run("stats", "fake://seed", "web01", "web99", "db01", "nope")
    assert r.returncode == 7, r.stderr
    assert "web01" in r.stdout and "db01" in r.stdout
    assert (
        "error: no VM named or with id 'web99' (did you mean 'web01', 'web02', 'web03'?), 'nope' on fake://seed"
        in r.stderr
    ), r.stderr
    r = run("stats", "fake://seed", "web01", "web99", "--json")
    assert r.returncode == 7
    found = json.loads(r.stdout)
    assert [s["vm"]["name"] for s in found] == ["web01"]
    validate(found[0], "MemoryStats")
    err = json.loads(r.stderr)
    assert err["code"] == "vm_not_found" and err["details"]["missing_vms"] == ["web99"]
    # several hosts: the same facts, the same exit code, the same key
    r = run("stats", "fake://seed", "fake://seed?flavor=esxi", "web01", "web99", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 7 and out["missing_vms"] == ["web99"]
    assert [len(h["stats"]) for h in out["hosts"]] == [1, 1]
    r = run("stats", "fake://seed", "web99")
    assert r.returncode == 7 and "web99" in r.stderr
    assert r.stdout == ""  # nothing exists to show: no empty table, no "0 VMs" summary
    r = run("stats", "fake://seed", "web99", "--json")
    assert r.returncode == 7 and json.loads(r.stdout) == []
    r = run("stats", "fake://seed", "fake://seed?flavor=esxi", "web99")  # several hosts: theirs only
    assert r.returncode == 7 and "hosts" in r.stdout and "guest used" not in r.stdout


def test_set_several_vms_checks_all_before_changing_any(tmp_path: Any) -> None:
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    r = run("set", uri, "web01=7GiB", "web02=1GiB", "nosuch=3GiB", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 8 and out["exit_code"] == 8  # the first refusal's code: a guard rail
    assert not out["applied"] and not out["changed"] and out["error"]["code"] == "below_floor"
    assert [x["vm"] for x in out["results"]] == ["web01", "web02", "nosuch"]
    first, floor, missing = out["results"]
    validate(first["change"], "Change")
    assert first["ok"] and first["change"]["dry_run"] and not first["changed"]
    assert floor["error"]["code"] == "below_floor" and missing["error"]["code"] == "vm_not_found"
    assert targets(uri)["web01"] == 16 * 2**30  # nothing was applied
    r = run("set", uri, "web01=7GiB", "web02=1GiB", "--skip-invalid", "--wait")
    assert r.returncode == 12, r.stderr  # partial_change
    assert "web01: changed" in r.stdout and "web02: failed (below_floor)" in r.stdout
    assert "changed 1 of 2 VMs (web01)" in r.stderr
    r = run("set", uri, "web01=7GiB", "web02=8GiB", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["ok"] and out["changed"] and out["error"] is None
    # web01's balloon is at 7 GiB (another session set it: libvirt cannot tell the target)
    assert [x["changed"] for x in out["results"]] == [False, True]


@pytest.mark.parametrize(
    ("asked", "timeout"), [(("web01", "6GiB"), "0"), (("web01=6GiB", "web02=5GiB"), "0ms")]
)
def test_a_wait_that_cannot_wait_is_refused_before_anything_changes(
    tmp_path: Any, asked: tuple[str, str], timeout: str
) -> None:
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    r = run("set", uri, *asked, "--wait", "--wait-timeout", timeout, "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["code"] == "invalid_request"
    assert "--wait-timeout" in json.loads(r.stdout)["message"]
    targets_now = targets(uri)
    assert targets_now["web01"] == targets_now["web02"] == 16 * 2**30  # nothing was applied


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("watch", "fake://seed", "--count", "0"), "--count"),
        (("set", "fake://seed"), "Missing argument"),
        (("nosuch",), "No such command"),
        (("fake", "advance"), "Missing argument 'URI'"),
        (("stats", "fake://seed", "--bogus"), "No such option"),
    ],
)
def test_a_usage_error_with_json_is_an_error_report(args: tuple[str, ...], problem: str) -> None:
    r = run(*args, "--json")
    assert r.returncode == 2
    out = json.loads(r.stdout)
    schemas.validate(out, output_schemas()["ErrorReport"])
    assert out["code"] == "invalid_request" and problem in out["message"]
    r = run(*args)  # without --json, click's usage text as before
    assert r.returncode == 2 and "Usage:" in r.stderr and not r.stdout


def test_set_several_vms_with_wait_says_what_was_applied_before_it_waits() -> None:
    # it printed nothing until every memory had arrived; one VM's --wait says what it set first
    r = run("set", "fake://seed", "web01=7GiB", "web02=8GiB", "nosuch=4GiB", "--skip-invalid", "--wait")
    assert r.returncode == 12, r.stderr
    assert r.stdout.splitlines() == [
        "web01: changed (balloon)",
        "  target: 16 GiB -> 7 GiB",
        "web02: changed (balloon)",
        "  target: 16 GiB -> 8 GiB",
        "nosuch: failed (vm_not_found): no VM named or with id 'nosuch' [backend=fake, vm=nosuch]",
        "waiting up to 1m for the memory of web01, web02 to reach their targets…",
        "web01: reached 7 GiB",
        "web02: reached 8 GiB",
    ], r.stdout
    assert r.stderr.startswith("error: changed 2 of 3 VMs (web01, web02); not changed: nosuch")
    # --json: one document on stdout, after the wait, as with one VM; nothing on stderr
    r = run("set", "fake://seed", "web01=7GiB", "web02=8GiB", "--wait", "--json")
    assert r.returncode == 0 and r.stderr == "" and json.loads(r.stdout)["ok"]


def test_set_several_vms_waits_or_warns() -> None:
    r = run("set", "fake://seed", "web01=7GiB", "web02=8GiB", "--wait", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and all(x["stats"] for x in out["results"])
    validate(out["results"][0]["stats"], "MemoryStats")
    r = run("set", "fake://seed?flavor=esxi", "web01=7GiB", "db01=12GiB", "--wait")
    assert r.returncode == 0 and r.stdout.count("cannot observe") == 2
    assert "reached" not in r.stdout  # not seen to move: not said to have arrived, as with one VM


@pytest.mark.parametrize(
    "args",
    [
        ("web01", "7GiB", "web02"),  # neither form
        ("web01=7GiB", "web02"),
        ("=7GiB",),
        ("web01=",),
        ("web01=7GiB", "web01=8GiB"),  # the same VM twice
        ("web01=7 gigs",),
    ],
)
def test_set_malformed_pairs_are_refused(args: tuple[str, ...]) -> None:
    r = run("set", "fake://seed", *args)
    assert r.returncode == 2, r.stderr
    assert "error:" in r.stderr


def test_set_a_name_with_an_equals_sign(tmp_path: Any) -> None:
    path = tmp_path / "eq.yaml"
    path.write_text("name: eq\nhost: {physical: 32GiB}\nvms:\n  - {name: 'a=b', memory: 8GiB, used: 1GiB}\n")
    r = run("set", f"fake://{path}", "a=b=6GiB", "--json")  # split at the last '='
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["change"]["after"]["target_bytes"] == 6 * 2**30
    assert run("set", f"fake://{path}", "a=b", "6GiB").returncode == 0  # the one-VM form still works


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("stats", "test:///default", "--timeout", "1e20"), "--timeout"),
        (("stats", "fake://seed", "fake://seed", "--host-timeout", "1e20"), "--host-timeout"),
        (("watch", "fake://seed", "--interval", "1e20", "--count", "2"), "--interval"),
        (("watch", "fake://seed", "--interval", "inf", "--count", "2"), "--interval"),
        (
            (
                "autoballoon",
                "test:///default",
                "--policy",
                "static",
                "--rounds",
                "2",
                "--interval",
                "1e20",
                "--dry-run",
            ),
            "--interval",
        ),
    ],
)
def test_a_duration_past_ten_years_is_refused_with_exit_2(args: tuple[str, ...], option: str) -> None:
    # above threading.TIMEOUT_MAX each of these raised OverflowError from a thread's wait
    for extra in ((), ("--json",)):
        r = run(*args, *extra)
        assert r.returncode == 2, r.stdout + r.stderr
        text = json.loads(r.stdout)["message"] if extra else r.stderr
        assert f"invalid {option} " in text and ("at most 3650d" in text or "finite" in text), text


def test_config_changes_several_vms_all_or_nothing() -> None:
    uri = "fake://seed?flavor=hyperv"
    r = run("config", uri, "web01", "web02", "--buffer-percent", "30")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "web01: changed (dynamic_memory)",
        "  buffer_percent: 20 -> 30",
        "web02: changed (dynamic_memory)",
        "  buffer_percent: 20 -> 30",
    ]
    # one refused (nosuch): nothing changed, the others reported as a dry run
    r = run("config", uri, "web01", "nosuch", "--buffer-percent", "40", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 7 and not report["applied"] and report["exit_code"] == 7
    assert [(x["vm"], x["ok"]) for x in report["results"]] == [("web01", True), ("nosuch", False)]
    assert report["results"][0]["change"]["dry_run"] is True
    r = run("config", uri, "web01", "--json")
    assert json.loads(r.stdout)["buffer_percent"] == 20  # a fresh world each invocation
    r = run("config", uri, "web01", "nosuch", "--buffer-percent", "40", "--skip-invalid", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 12 and report["applied"] and report["error"]["code"] == "partial_change"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["web01", "web01", "--buffer-percent", "30"], "named twice"),
        (["web01", "--buffer-percent", "30", "--skip-invalid"], "several VMs"),
        (["web01", "web02", "--skip-invalid"], "a change"),
    ],
)
def test_config_of_several_vms_refuses_a_request_that_contradicts_itself(
    args: list[str], message: str
) -> None:
    r = run("config", "fake://seed?flavor=hyperv", *args, "--json")
    assert r.returncode == 2 and message in json.loads(r.stdout)["message"]


def test_config_shows_several_vms() -> None:
    r = run("config", "fake://seed?flavor=esxi", "web01", "db01", "--json")
    assert r.returncode == 0, r.stderr
    assert [c["vm"]["name"] for c in json.loads(r.stdout)] == ["web01", "db01"]
    r = run("config", "fake://seed?flavor=esxi", "web01", "db01")
    assert r.stdout.startswith("web01 (limit)\n") and "\ndb01 (limit)\n" in r.stdout


def test_a_field_asked_for_that_already_holds_its_value_reads_unchanged_not_moved() -> None:
    r = run("config", "fake://seed?flavor=hyperv", "web01", "--buffer-percent", "20", "--priority", "80")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "web01: changed (dynamic_memory)",
        "  buffer_percent: 20 (unchanged)",
        "  priority: 50 -> 80",
    ]
