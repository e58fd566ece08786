"""Ctrl-C: a real SIGINT to the real command. Every long-running command stops with exit code 130
(128 + SIGINT, the shell's convention; in the exit-code table) and says what was done. Linux
(the command's CPU time is read from /proc)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import Running


def interrupt(cmd: Running) -> tuple[int, str, str]:
    """SIGINT, as Ctrl-C sends it; then the exit code and everything the command printed."""
    code = cmd.signal(signal.SIGINT)
    return code, "".join(cmd.stdout), "".join(cmd.stderr)


def stopped_asleep(
    running: Callable[..., Running], tmp_path: Path, scenario_text: str, command: str, *args: str
) -> tuple[str, str]:
    """``hvballoon COMMAND fake://SCENARIO?speed=1 ARGS…`` on a scenario of ``scenario_text``,
    sent Ctrl-C once it sleeps (in a slow call the scenario scripts); it must exit 130.
    Returns what it printed (stdout, stderr)."""
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(scenario_text)
    cmd = running(command, f"fake://{scenario}?speed=1", *args)
    cmd.wait_for(lambda r: r.asleep())
    code, out, err = interrupt(cmd)
    assert code == 130, err
    return out, err


@pytest.mark.slow
def test_watch_stops_with_130_and_a_summary(running: Callable[..., Running]) -> None:
    cmd = running("watch", "fake://seed", "fake://seed?flavor=esxi", "--interval", "0.2s", "--json")
    cmd.wait_for(lambda r: len(r.stdout) >= 2)
    code, out, err = interrupt(cmd)
    assert code == 130, err
    sweeps = [json.loads(line) for line in out.splitlines()]
    assert len(sweeps) >= 2 and all(s["ok"] for s in sweeps)
    assert f"interrupted: {len(sweeps)} sweeps of 2 hosts" in err, err
    assert "Traceback" not in err and "Aborted" not in err


@pytest.mark.slow
def test_autoballoon_stops_with_130_and_says_what_it_changed(running: Callable[..., Running]) -> None:
    cmd = running("autoballoon", "fake://seed", "--json")  # virtual clock: rounds come fast
    cmd.wait_for(lambda r: len(r.stdout) >= 30)
    code, out, err = interrupt(cmd)
    assert code == 130, err
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    applied = sum(1 for r in rows if r["applied"])
    assert applied > 0
    assert "interrupted: after " in err and f"{applied} targets changed" in err, err
    assert "Traceback" not in err


@pytest.mark.slow
def test_set_wait_stops_with_130_and_says_the_target_was_applied(running: Callable[..., Running]) -> None:
    # a clock a thousand times slower than real time: the balloon takes hours to arrive
    cmd = running("set", "fake://seed?speed=0.001", "web01", "8GiB", "--wait")
    cmd.wait_for(lambda r: any("waiting" in line for line in r.stdout))
    code, out, err = interrupt(cmd)
    assert code == 130, err
    assert "web01: changed (balloon)" in out and "16 GiB -> 8 GiB" in out
    assert "interrupted: the target of web01 was set to 8 GiB" in err and "stopped waiting" in err, err
    assert "Traceback" not in err and "Aborted" not in err


@pytest.mark.slow
def test_bulk_set_wait_stops_with_130_and_says_which_targets_were_applied(
    running: Callable[..., Running],
) -> None:
    # what was applied is said before the wait, then what the wait came to
    cmd = running("set", "fake://seed?speed=0.001", "web01=8GiB", "web02=7GiB", "--wait")
    cmd.wait_for(lambda r: any("waiting" in line for line in r.stdout))
    code, out, err = interrupt(cmd)
    assert code == 130, err
    assert out.splitlines() == [
        "web01: changed (balloon)",
        "  target: 16 GiB -> 8 GiB",
        "web02: changed (balloon)",
        "  target: 16 GiB -> 7 GiB",
        "waiting up to 1m for the memory of web01, web02 to reach their targets…",
        "web01: not reached yet: stopped waiting",
        "web02: not reached yet: stopped waiting",
    ], out
    assert (
        "interrupted: the targets of 2 of 2 VMs were applied (web01, web02); "
        "stopped waiting for the memory of web01, web02 to reach them"
    ) in err, err
    assert "Traceback" not in err and "Aborted" not in err


@pytest.mark.slow
def test_bulk_set_wait_json_stops_with_130_and_a_report_of_what_was_applied(
    running: Callable[..., Running],
) -> None:
    # web03 already has 16 GiB: reached at the first look; the others are still on their way
    pairs = ("web01=8GiB", "web03=16GiB", "nosuch=4GiB")
    cmd = running("set", "fake://seed?speed=0.001", *pairs, "--wait", "--skip-invalid", "--json")
    cmd.wait_for(lambda r: r.asleep())
    code, out, err = interrupt(cmd)
    assert code == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True and report["exit_code"] == 130
    assert report["applied"] is True and report["changed"] is True
    assert report["error"]["code"] == "partial_change"
    by_vm = {r["vm"]: r for r in report["results"]}
    assert list(by_vm) == ["web01", "web03", "nosuch"]
    assert by_vm["web01"]["changed"] and by_vm["web01"]["stats"] is None
    assert by_vm["web01"]["change"]["after"]["target_bytes"] == 8 * 2**30
    assert not by_vm["web03"]["changed"] and by_vm["web03"]["stats"]["current_bytes"] > 15 * 2**30
    assert by_vm["nosuch"]["error"]["code"] == "vm_not_found"
    assert (
        "interrupted: the targets of 2 of 3 VMs were applied (web01, web03); "
        "stopped waiting for the memory of web01 to reach it; failed: nosuch"
    ) in err, err
    assert "Traceback" not in err


#: Three VMs whose targets are sent in one call: web02's takes 4 s of real time (a slow
#: hypervisor), web03's fails once with a timeout, which the session would send again.
SLOW_APPLY = """\
name: slow-apply
host: {physical: 64GiB}
vms:
  - {name: web01, memory: 16GiB, used: 3GiB}
  - {name: web02, memory: 16GiB, used: 3GiB}
  - {name: web03, memory: 16GiB, used: 3GiB}
faults:
  - {op: set_target, kind: slow, latency: 4, vm: web02}
  - {op: set_target, kind: timeout, vm: web03}
"""


@pytest.mark.slow
@pytest.mark.parametrize("as_json", [False, True])
def test_bulk_set_stopped_while_applying_says_what_the_call_in_flight_applied(
    running: Callable[..., Running], tmp_path: Path, as_json: bool
) -> None:
    # it said "stopped before the command finished", with web01 and web02 applied
    pairs = ("web01=8GiB", "web02=7GiB", "web03=6GiB")
    # Ctrl-C in web02's slow call, the only wait before the apply ends
    out, err = stopped_asleep(
        running, tmp_path, SLOW_APPLY, "set", *pairs, "--wait", *(["--json"] if as_json else [])
    )
    assert (
        "interrupted: the targets of 2 of 3 VMs were applied (web01, web02); stopped while applying "
        "them, before waiting; not sent again after a retryable failure: web03"
    ) in err, err
    assert "Traceback" not in err and "waiting up to" not in out
    if as_json:
        report = json.loads(out)
        assert report["interrupted"] is True and report["exit_code"] == 130
        assert report["error"]["code"] == "partial_change"
        by_vm = {r["vm"]: r for r in report["results"]}
        assert by_vm["web01"]["changed"] and by_vm["web02"]["changed"] and not by_vm["web03"]["changed"]
        assert by_vm["web02"]["change"]["after"]["target_bytes"] == 7 * 2**30
        assert by_vm["web03"]["error"]["code"] == "timeout"
    else:
        assert out.splitlines()[:4] == [
            "web01: changed (balloon)",
            "  target: 16 GiB -> 8 GiB",
            "web02: changed (balloon)",
            "  target: 16 GiB -> 7 GiB",
        ], out
        assert "web03: failed (timeout)" in out and "not reached" not in out


@pytest.mark.slow
def test_set_of_one_vm_stopped_while_applying_says_its_target_was_applied(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    out, err = stopped_asleep(running, tmp_path, SLOW_APPLY, "set", "web02", "7GiB", "--wait")
    assert "interrupted: the target of web02 was applied; stopped while it was sent, before waiting" in err, (
        err
    )
    assert "Traceback" not in err and "waiting up to" not in out


@pytest.mark.slow
@pytest.mark.parametrize("wait", [False, True])
def test_set_of_one_vm_json_stopped_while_applying_prints_what_was_applied(
    running: Callable[..., Running], tmp_path: Path, wait: bool
) -> None:
    # it printed its stderr line and no JSON document at all
    out, err = stopped_asleep(
        running, tmp_path, SLOW_APPLY, "set", "web02", "7GiB", "--json", *(["--wait"] if wait else [])
    )
    report = json.loads(out)  # as an interrupted wait prints it
    assert report["interrupted"] is True and report["stats"] is None
    assert report["change"]["changed"] and report["change"]["after"]["target_bytes"] == 7 * 2**30
    assert "interrupted: the target of web02 was applied; stopped while it was sent" in err, err
    assert "Traceback" not in err


@pytest.mark.slow
def test_set_of_one_vm_json_stopped_while_its_call_fails_prints_the_failure(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    # web03's call times out after 2 s; the Ctrl-C in it keeps it from being sent again
    scenario = SLOW_APPLY.replace("kind: timeout", "kind: slow, latency: 10")
    out, err = stopped_asleep(
        running, tmp_path, scenario, "set", "web03", "6GiB", "--json", "--timeout", "2s"
    )
    report = json.loads(out)
    assert report["code"] == "timeout" and report["vm"] == "web03"
    assert (
        "interrupted: the target of web03 was not applied; stopped while it was sent; "
        "not sent again after a retryable failure: web03"
    ) in err, err


@pytest.mark.slow
def test_bulk_set_stopped_while_reading_says_no_target_was_applied(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    slow_read = SLOW_APPLY.replace("op: set_target, kind: slow", "op: get_stats, kind: slow")
    # Ctrl-C in the read of the VMs, before anything is sent
    out, err = stopped_asleep(running, tmp_path, slow_read, "set", "web01=8GiB", "web02=7GiB")
    assert "interrupted: no target was applied: stopped before the targets of 2 VMs were sent" in err, err
    assert out == "" and "Traceback" not in err


#: Three ESXi VMs whose configurations are changed one by one: web02's change takes 4 s of
#: real time (a slow vCenter task).
SLOW_CONFIG = """\
name: slow-config
flavor: esxi
host: {physical: 64GiB}
vms:
  - {name: web01, memory: 16GiB, used: 3GiB}
  - {name: web02, memory: 16GiB, used: 3GiB}
  - {name: web03, memory: 16GiB, used: 3GiB}
faults:
  - {op: set_config, kind: slow, latency: 4, vm: web02}
"""


@pytest.mark.slow
@pytest.mark.parametrize("as_json", [False, True])
def test_bulk_config_stopped_while_applying_says_which_vms_were_changed_and_which_not_sent(
    running: Callable[..., Running], tmp_path: Path, as_json: bool
) -> None:
    # it said "stopped before the command finished", with web01 and web02 changed
    vms = ("web01", "web02", "web03")
    # Ctrl-C in web02's slow change, the only wait in the command
    out, err = stopped_asleep(
        running,
        tmp_path,
        SLOW_CONFIG,
        "config",
        *vms,
        "--reservation",
        "2GiB",
        *(["--json"] if as_json else []),
    )
    assert (
        "interrupted: the configurations of 2 of 3 VMs were changed (web01, web02); "
        "stopped while changing them; not sent: web03"
    ) in err, err
    assert "Traceback" not in err
    if as_json:
        report = json.loads(out)
        assert report["interrupted"] is True and report["exit_code"] == 130 and report["applied"] is True
        by_vm = {r["vm"]: r for r in report["results"]}
        assert list(by_vm) == list(vms)
        assert by_vm["web01"]["changed"] and by_vm["web02"]["changed"] and not by_vm["web03"]["changed"]
        assert by_vm["web02"]["change"]["after"]["reservation_bytes"] == 2 * 2**30
        web03 = by_vm["web03"]["change"]
        assert web03["dry_run"] and web03["warnings"] == [
            "not applied: interrupted (Ctrl-C) before it was sent"
        ]
    else:
        assert out.splitlines() == [
            "web01: changed (limit)",
            "  reservation: 0 B -> 2 GiB",
            "web02: changed (limit)",
            "  reservation: 0 B -> 2 GiB",
            "web03: would change (limit)",
            "  reservation: 0 B -> 2 GiB",
            "  warning: not applied: interrupted (Ctrl-C) before it was sent",
        ], out


@pytest.mark.slow
def test_simulate_stops_with_130_and_reports_the_part_simulated(running: Callable[..., Running]) -> None:
    cmd = running("simulate", "dense", "--duration", "3650d", "--json")
    # interrupted once it is simulating: starting up costs it about 0.5 s of its own CPU time
    cmd.wait_for(lambda r: r.cpu_seconds() >= 1.5)
    code, out, err = interrupt(cmd)
    assert code == 130, err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert 0 < summary["duration_seconds"] < 3650 * 86400
    assert summary["scenario"] == "dense" and len(summary["vms"]) == 14
    assert "interrupted: simulated " in err and "of 3650d" in err, err
    assert "Traceback" not in err and "Aborted" not in err
