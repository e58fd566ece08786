"""Testing automation against the simulator: the tests of ``rightsize.py``.

hvballoon's pytest plugin gives each test a fresh simulated host (``hvballoon_world``; every
``connect("fake://seed")`` made during the test reaches it) and a session on it
(``hvballoon_session``). The world's clock moves only when the test says so, faults are
scripted, and the ``hvballoon_scenario`` marker picks another scenario or hypervisor flavour.
Run them with ``python -m pytest examples``.
"""

from __future__ import annotations

import json
from functools import partial

import pytest
import rightsize

import hvballoon
from hvballoon import PartialChangeError, RetryPolicy, parse_size
from hvballoon.errors import OperationTimeoutError

URI = "fake://seed"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = rightsize.main([URI, "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_a_dry_run_changes_nothing(hvballoon_world, hvballoon_session, capsys) -> None:  # type: ignore[no-untyped-def]
    before = {s.vm.name: s.current_bytes for s in hvballoon_session.get_stats()}
    code, out = run(capsys)
    assert code == 0 and out["applied"] is False
    assert out["moves"] and all(m["change"]["dry_run"] and not m["changed"] for m in out["moves"])
    hvballoon_world.advance(120)  # two minutes of simulated time: a balloon would have moved
    assert {s.vm.name: s.current_bytes for s in hvballoon_session.get_stats()} == before


def test_each_vm_is_left_its_use_plus_headroom_and_a_second_run_moves_nothing(  # type: ignore[no-untyped-def]
    hvballoon_world, hvballoon_session, capsys
) -> None:
    used = {s.vm.name: s.used_bytes for s in hvballoon_session.get_stats()}
    code, out = run(capsys, "--apply", "--headroom", "2GiB")
    assert code == 0 and out["moves"] and all(m["changed"] for m in out["moves"])
    asked = {m["vm"]: m["change"]["after"]["target_bytes"] for m in out["moves"]}
    for name, target in asked.items():
        assert abs(target - (used[name] + parse_size("2GiB"))) <= parse_size("2MiB"), name  # aligned
    hvballoon_world.advance(120)  # the balloons inflate over some seconds
    assert {s.vm.name: s.current_bytes for s in hvballoon_session.get_stats()} == asked
    code, out = run(capsys, "--apply", "--headroom", "2GiB")
    assert code == 0 and out["moves"] == []
    assert {s["why"] for s in out["skipped"]} == {"already within 512 MiB of its goal"}


def test_a_vm_the_account_may_not_change_is_reported_and_the_others_still_move(  # type: ignore[no-untyped-def]
    hvballoon_world, capsys
) -> None:
    hvballoon_world.faults.add(op="set_target", kind="permission_denied", count=1)
    code, out = run(capsys, "--apply")
    refused = [m for m in out["moves"] if not m["ok"]]
    assert [m["error"]["code"] for m in refused] == ["permission_denied"]
    assert code == PartialChangeError.exit_code  # some moves made, one refused
    assert sum(m["changed"] for m in out["moves"]) == len(out["moves"]) - 1


def test_excluded_and_stopped_vms_are_left_alone(hvballoon_world, capsys) -> None:  # type: ignore[no-untyped-def]
    hvballoon_world.power_off(hvballoon_world.guest("ci01").id)
    code, out = run(capsys, "--exclude", "db01")
    assert code == 0
    why = {s["vm"]: s["why"] for s in out["skipped"]}
    assert why == {"db01": "excluded", "ci01": "not running (stopped)"}
    assert not {"db01", "ci01"} & {m["vm"] for m in out["moves"]}


@pytest.mark.hvballoon_scenario("seed", flavor="hyperv")
def test_on_hyperv_dynamic_memory_vms_are_left_to_hyperv(hvballoon_world, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out = run(capsys, "--apply")
    assert code == 0
    dynamic = {s["vm"] for s in out["skipped"] if s["why"] == "Dynamic Memory balances it"}
    assert dynamic and not dynamic & {m["vm"] for m in out["moves"]}


def test_a_host_that_does_not_answer_is_one_line_and_the_errors_exit_code(  # type: ignore[no-untyped-def]
    hvballoon_world, capsys
) -> None:
    hvballoon_world.faults.add(op="get_stats", kind="timeout", count=100)
    # the session retries a timeout, waiting between attempts: the same attempts without the waits
    instant = RetryPolicy(sleep=lambda seconds: None)
    code = rightsize.main([URI], connect=partial(hvballoon.connect, retry=instant))
    err = capsys.readouterr().err
    assert code == OperationTimeoutError.exit_code
    assert err.startswith("rightsize: ") and err.count("\n") == 1


def test_a_malformed_size_is_refused_before_connecting(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        rightsize.main([URI, "--headroom", "lots"])
    assert exc.value.code == 2 and "invalid --headroom 'lots'" in capsys.readouterr().err


def test_a_size_without_a_unit_too_small_to_be_memory_is_refused(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        rightsize.main([URI, "--headroom", "2"])  # 2 bytes: the unit left out
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid --headroom '2': a number without a unit is bytes" in err


def test_an_empty_name_to_exclude_is_refused_before_connecting(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        rightsize.main([URI, "--exclude", ""])  # --exclude "$VM" with VM unset: nothing excluded
    assert exc.value.code == 2 and "--exclude takes a VM's name, got an empty one" in capsys.readouterr().err


@pytest.mark.parametrize("args", [("--headroom", "-1GiB"), ("--min-step", "-512MiB"), ("--headroom=-1GiB",)])
def test_a_negative_size_is_named_as_negative_not_as_a_missing_value(capsys, args) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        rightsize.main([URI, *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "a size cannot be negative" in err and "expected one argument" not in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--headroom", "-1GiB"), "a size cannot be negative"),
        (("--headroom", "lots"), "invalid --headroom 'lots'"),
        (("--exclude", ""), "--exclude takes a VM's name"),
        (("--no-such-option",), "unrecognized arguments: --no-such-option"),
    ],
)
def test_with_json_a_bad_argument_is_a_json_error_report(capsys, args, says) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        rightsize.main([URI, "--json", *args])
    out = capsys.readouterr().out
    report = json.loads(out)
    assert exc.value.code == 2 and report["code"] == "invalid_request" and says in report["message"], report


def test_with_json_a_host_that_does_not_answer_is_a_json_error_report(  # type: ignore[no-untyped-def]
    hvballoon_world, capsys
) -> None:
    hvballoon_world.faults.add(op="get_stats", kind="timeout", count=100)
    instant = RetryPolicy(sleep=lambda seconds: None)
    code = rightsize.main([URI, "--json"], connect=partial(hvballoon.connect, retry=instant))
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == OperationTimeoutError.exit_code and report["code"] == "timeout" and not captured.err
