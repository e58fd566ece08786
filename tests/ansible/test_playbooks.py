"""The collection through the real ``ansible-playbook``: forks, idempotence, check mode, diff,
errors and secrets. Five playbook runs in all (each costs a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hvballoon
from hvballoon.units import GiB, parse_size
from tests.support.ansible import VMS, Ansible, recap
from tests.support.policies import targets

SIZES = {
    "web01": "6GiB",
    "web02": "6.5GiB",
    "web03": "5GiB",
    "app01": "8GiB",
    "app02": 8 * GiB,  # an integer of bytes works too
    "db01": "12GiB",
    "jvm01": "10GiB",
    "cache01": "9GiB",
    "batch01": "4GiB",
    "ci01": "5000MiB",
}
PASSWORD = "Tr0ub4dor&3-never-printed"

pytestmark = pytest.mark.slow  # each playbook run takes seconds


def write_sizes(tmp: Path, name: str, sizes: dict[str, object]) -> str:
    path = tmp / name
    path.write_text(json.dumps({"sizes": sizes, "hv_password": PASSWORD}), encoding="utf-8")
    return f"@{path}"


@pytest.fixture(scope="module")
def applied(ansible: Ansible) -> Ansible:
    """First run: ten VMs, forks 8, each host sets its VM's target."""
    r = ansible.playbook("targets.yml", "-e", write_sizes(ansible.tmp, "sizes.json", SIZES))
    assert r.returncode == 0, r.stdout + r.stderr
    rc = recap(r.stdout)
    assert set(rc) == set(VMS)
    assert all(rc[vm]["changed"] == 1 and rc[vm]["failed"] == 0 for vm in VMS), rc
    return ansible


def test_targets_are_set_in_the_shared_world(applied: Ansible) -> None:
    got = targets(applied.kvm_uri)
    assert got == {vm: parse_size(size) for vm, size in SIZES.items()}


def test_second_run_changes_nothing(applied: Ansible) -> None:
    r = applied.playbook("targets.yml", "-e", write_sizes(applied.tmp, "sizes.json", SIZES))
    assert r.returncode == 0, r.stdout + r.stderr
    rc = recap(r.stdout)
    assert all(rc[vm]["changed"] == 0 and rc[vm]["ok"] == 2 for vm in VMS), rc


def test_check_mode_and_diff_change_nothing_and_never_print_the_password(applied: Ansible) -> None:
    before = targets(applied.kvm_uri)
    bigger = {vm: "11GiB" for vm in VMS}
    extra = write_sizes(applied.tmp, "bigger.json", bigger)
    r = applied.playbook("targets.yml", "-e", extra, "--check", "--diff", "-vvv")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    # predicted, shown, not applied
    assert all(recap(r.stdout)[vm]["changed"] == 1 for vm in VMS)
    assert targets(applied.kvm_uri) == before
    assert "--- before: web01" in r.stdout and "+++ after: web01" in r.stdout
    assert '-    "target": "6 GiB",' in r.stdout and '+    "target": "11 GiB",' in r.stdout
    assert '"dry_run": true' in r.stdout
    # the password was passed (Ansible shows it masked) and never printed
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in r.stdout
    assert PASSWORD not in r.stdout + r.stderr


def test_errors_fail_with_code_and_clear_message(applied: Ansible) -> None:
    r = applied.playbook("errors.yml")
    assert r.returncode == 2, r.stdout + r.stderr
    assert recap(r.stdout)["web01"]["failed"] == 1
    fatal = r.stdout.split("TASK [A size nobody can read]", 1)[1]
    assert "FAILED!" in fatal
    assert "invalid size '4 gigs': unknown unit 'gigs'. Accepted:" in fatal
    assert '"code": "invalid_size"' in fatal and '"retryable": false' in fatal
    # the refused and the failed tasks changed nothing
    assert targets(applied.kvm_uri)["web01"] == parse_size(SIZES["web01"])


def test_config_and_info_modules(ansible: Ansible) -> None:
    r = ansible.playbook("config.yml")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    rc = recap(r.stdout)
    assert set(rc) == {"web01", "db01", "jvm01"} and all(v["failed"] == 0 for v in rc.values()), rc
    with hvballoon.connect(ansible.esxi_uri) as hv:
        for vm in VMS:
            cfg = hv.get_config(vm)
            if vm == "db01":  # then locked, unlimited, high shares (20 per MB of 16 GiB)
                assert (cfg.reservation_bytes, cfg.limit_bytes, cfg.shares) == (16 * GiB, None, 20 * 16384)
                assert (cfg.shares_level, cfg.memory_reservation_lock) == ("high", True)
            elif vm in rc:
                assert (cfg.reservation_bytes, cfg.limit_bytes, cfg.shares) == (2 * GiB, 12 * GiB, 2000)
            else:  # untouched
                assert cfg.limit_bytes is None and cfg.shares != 2000, vm
