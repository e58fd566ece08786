"""The ``hvballoon.memory.autoballoon`` role, run by the real ``ansible-playbook`` on this host
with ``hvballoon_service_manager: none``: nothing is installed or started, and everything else is
done for real — the settings file written after ``hvballoon autoballoon --check-settings``
accepted it, the service's own command run with ``--check`` against a persisted fake world, the
unit rendered (and checked by ``systemd-analyze verify``). The unit shipped in
``contrib/systemd/`` is the role's, rendered with its defaults."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ansible import ROOT, Ansible, recap
from tests.support.cli import Running
from tests.support.require import require

pytestmark = pytest.mark.slow

UNIT = "hvballoon-autoballoon.service"
HARDENING = (
    "DynamicUser=yes",
    "StateDirectory=hvballoon",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "SystemCallFilter=@system-service",
)


def play(ansible: Ansible, tmp: Path, **extra: Any) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """Run the role with its paths under ``tmp``; returns the run, the config and unit dirs."""
    config, units = tmp / "etc" / "hvballoon", tmp / "units"
    variables: dict[str, Any] = {
        "hvballoon_install": "none",
        "hvballoon_executable": shutil.which("hvballoon"),
        "hvballoon_config_dir": str(config),
        "hvballoon_unit_dir": str(units),
        "hvballoon_service_manager": "none",
        "hvballoon_uri": f"fake://seed?state={tmp / 'world.db'}",
        "hvballoon_settings": {"interval_seconds": 10, "vms": {"db01": {"self_managed": True}}},
        "hvballoon_metrics_address": "127.0.0.1:10178",
        **extra,
    }
    path = tmp / "vars.json"
    path.write_text(json.dumps(variables))
    # the state directory a journal would go to: the test's own, never this machine's
    here = dataclasses.replace(ansible, env={**ansible.env, "XDG_STATE_HOME": str(tmp / "state")})
    return here.playbook("autoballoon_role.yml", "-e", f"@{path}"), config, units


def exec_start(unit: str) -> list[str]:
    line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))  # "…" with \\ and \" as systemd reads them


def test_the_role_writes_checked_settings_and_a_hardened_unit_and_is_idempotent(
    ansible: Ansible, tmp_path: Path
) -> None:
    r, config, units = play(ansible, tmp_path)
    assert r.returncode == 0, r.stdout[-4000:]
    assert recap(r.stdout)["localhost"]["failed"] == 0
    assert "Check the service's command" in r.stdout
    # the check's advice is shown: the seed's KVM VMs have no deflate-on-OOM (db01 is self-managed)
    advice = [line for line in r.stdout.splitlines() if "no deflate-on-OOM" in line]
    assert advice and "db01" not in advice[0] and "web01" in advice[0], r.stdout[-4000:]
    settings = yaml.safe_load((config / "autoballoon.yaml").read_text())
    assert settings == {"interval_seconds": 10, "vms": {"db01": {"self_managed": True}}}
    unit = (units / UNIT).read_text()
    assert exec_start(unit) == [
        shutil.which("hvballoon"), "autoballoon", f"fake://seed?state={tmp_path / 'world.db'}", "--serve",
        "--policy", "hvballoon", "--settings", str(config / "autoballoon.yaml"), "--log-format", "json",
        "--release-on-exit", "--metrics-address", "127.0.0.1:10178",
    ]  # fmt: skip
    for line in HARDENING:
        assert line in unit.splitlines(), line
    assert "SupplementaryGroups" not in unit and "StandardInput" not in unit  # not KVM, no password
    assert not (config / "autoballoon.password").exists()
    again, _, _ = play(ansible, tmp_path)
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0
    assert not (tmp_path / "state").exists()  # the check opens no journal: that is the service's


def test_the_role_runs_again_while_the_controller_runs(ansible: Ansible, tmp_path: Path) -> None:
    uri = f"fake://seed?state={tmp_path / 'world.db'}"
    ctl = Running("autoballoon", uri, "--serve", env={"XDG_STATE_HOME": str(tmp_path / "state")})
    try:
        ctl.wait_for(lambda r: any("controlling" in line for line in r.stderr))
        r, _, _ = play(ansible, tmp_path)  # the same URI, the same default journal
        assert r.returncode == 0, r.stdout[-4000:]
        assert ctl.proc.poll() is None
    finally:
        ctl.kill()


def test_the_rendered_unit_passes_systemd_analyze_verify(ansible: Ansible, tmp_path: Path) -> None:
    verify = shutil.which("systemd-analyze")
    require(verify is not None, "systemd-analyze is not installed (apt-get install systemd)")
    assert verify is not None
    r, _, units = play(ansible, tmp_path, hvballoon_password="s3cr3t", hvballoon_user="hvballoon")
    assert r.returncode == 0, r.stdout[-4000:]
    v = subprocess.run(
        [verify, "verify", "--man=no", str(units / UNIT)], capture_output=True, text=True, timeout=60
    )
    assert v.returncode == 0 and UNIT not in v.stderr, v.stderr
    # and what it says of a unit that is wrong: the check can fail
    broken = units / "broken.service"
    broken.write_text((units / UNIT).read_text().replace("ProtectSystem=strict", "ProtectSystem=sometimes"))
    v = subprocess.run(
        [verify, "verify", "--man=no", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert "broken.service:" in v.stderr and "sometimes" in v.stderr, v.stderr


def test_bad_settings_are_refused_by_the_validator_and_the_old_file_kept(
    ansible: Ansible, tmp_path: Path
) -> None:
    r, config, _ = play(ansible, tmp_path)
    assert r.returncode == 0, r.stdout[-4000:]
    before = (config / "autoballoon.yaml").read_text()
    r, _, _ = play(
        ansible, tmp_path, hvballoon_settings={"interval_seconds": -1, "vms": {"db01": {"flor": "4GiB"}}}
    )
    assert r.returncode != 0
    assert "failed to validate" in r.stdout and "interval_seconds" in r.stdout and "flor" in r.stdout
    assert (config / "autoballoon.yaml").read_text() == before


def test_a_command_that_cannot_run_stops_the_role_before_the_unit(ansible: Ansible, tmp_path: Path) -> None:
    r, _, units = play(
        ansible, tmp_path, hvballoon_uri=f"fake://seed?state={tmp_path / 'no' / 'dir' / 'w.db'}"
    )
    assert r.returncode != 0 and "Check the service's command" in r.stdout
    assert not (units / UNIT).exists()
    r, _, units = play(ansible, tmp_path, hvballoon_policy="magic")
    assert r.returncode != 0 and "magic" in r.stdout  # the role's argument spec says no first
    assert not (units / UNIT).exists()


def test_a_remote_uri_gets_a_root_only_password_file_read_on_stdin_and_never_shown(
    ansible: Ansible, tmp_path: Path
) -> None:
    secret = "s3cr3t-role-password"
    r, config, units = play(
        ansible,
        tmp_path,
        hvballoon_password=secret,
        hvballoon_extra_args=["--interval", "30s", "--max-changes", "3"],
        hvballoon_max_failed_rounds=12,
        hvballoon_release_on_exit=False,
        hvballoon_metrics_address="",
    )
    assert r.returncode == 0, r.stdout[-4000:]
    password = config / "autoballoon.password"
    assert password.read_text() == secret + "\n" and password.stat().st_mode & 0o777 == 0o600
    unit = (units / UNIT).read_text()
    assert f"StandardInput=file:{password}" in unit and secret not in unit
    args = exec_start(unit)
    assert args[-7:] == [
        "--max-failed-rounds",
        "12",
        "--password-stdin",
        "--interval",
        "30s",
        "--max-changes",
        "3",
    ]
    assert "--release-on-exit" not in args and "--metrics-address" not in args
    assert secret not in r.stdout + r.stderr
    r, _, _ = play(ansible, tmp_path)  # no password any more: the file goes
    assert r.returncode == 0 and not password.exists()


def test_only_local_kvm_joins_the_libvirt_group_and_systemd_quoting_holds(
    ansible: Ansible, tmp_path: Path
) -> None:
    out = tmp_path / "unit"
    r = ansible.playbook(
        "autoballoon_unit.yml",
        "-e", f"out={out}", "-e", f"collections_root={ROOT}",
        "-e", json.dumps({"hvballoon_uri": "vcenter://ops@vc01/?datacenter=DC 1&cluster=50%"}),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-4000:]
    unit = out.read_text()
    assert '"vcenter://ops@vc01/?datacenter=DC 1&cluster=50%%"' in unit
    assert "SupplementaryGroups" not in unit


def test_contrib_ships_the_roles_unit_rendered_with_its_defaults(ansible: Ansible, tmp_path: Path) -> None:
    out = tmp_path / "unit"
    r = ansible.playbook("autoballoon_unit.yml", "-e", f"out={out}", "-e", f"collections_root={ROOT}")
    assert r.returncode == 0, r.stdout[-4000:]
    shipped = ROOT / "contrib" / "systemd" / UNIT
    assert shipped.read_text() == out.read_text(), "re-render contrib/systemd/ from the role (see its README)"
    unit = shipped.read_text()
    assert exec_start(unit)[:4] == [
        "/opt/hvballoon/bin/hvballoon",
        "autoballoon",
        "qemu:///system",
        "--serve",
    ]
    assert "SupplementaryGroups=libvirt" in unit
    for line in HARDENING:
        assert line in unit.splitlines(), line
