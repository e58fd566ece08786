"""A newcomer's likely mistakes on the command line: each gets one clear line, the documented
exit code, and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import invoke

SECRET = "Pa55wordNearTheMistake"


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            f"name: mine\nhost: {{physical: 64GiB}}\nvms:\n  - {{name: web01, memory: 8GiB, note: {SECRET}\n",
            "line 5",
        ),
        (f"name: mine\n  host: {SECRET}\n vms: []\n", "line 2"),
        (f"name: mine\nvms: [\n  {{name: {SECRET}: x}}\n]\n", "line 3"),
    ],
)
def test_a_scenario_file_that_is_not_yaml_is_named_in_one_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    r = invoke("stats", f"fake://{path}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: invalid scenario {path}: not valid YAML: "), lines
    assert where in lines[0] and SECRET not in r.stderr  # where it broke; not the file's text


def test_a_settings_file_that_is_not_yaml_is_named_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(f"interval: 10s\n  password: {SECRET}\n bad: [\n")
    r = invoke("autoballoon", "--check-settings", str(path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not valid YAML: " in lines[0] and "(line 2, column" in lines[0], lines
    assert SECRET not in r.stderr


@pytest.mark.parametrize(
    ("args", "option", "command"),
    [
        (("--json", "stats", "fake://seed"), "--json", "stats"),
        (("--dry-run", "set", "fake://seed", "web01", "6GiB"), "--dry-run", "set"),
        (("--count=2", "watch", "fake://seed"), "--count", "watch"),
    ],
)
def test_a_command_s_option_written_before_the_command_says_where_it_goes(
    args: tuple[str, ...], option: str, command: str
) -> None:
    r = invoke(*args)
    assert r.returncode == 2 and not r.stdout and "Traceback" not in r.stderr
    assert f"{option} is an option of '{command}': write it after the command" in r.stderr
    assert "--version" not in r.stderr  # not click's guess among the group's own options


def test_an_option_no_command_has_is_still_click_s_no_such_option() -> None:
    r = invoke("--bogus", "stats", "fake://seed")
    assert r.returncode == 2 and "No such option '--bogus'" in r.stderr


def test_a_size_split_by_a_space_says_to_quote_it() -> None:
    r = invoke("set", "fake://seed", "web01", "6", "GiB")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "a size holding a space is quoted: '6 GiB', or written 6GiB" in r.stderr
    r = invoke("set", "fake://seed", "web01", "6", "web02")  # not a size: the forms only
    assert r.returncode == 2 and "quoted" not in r.stderr and "give VM SIZE" in r.stderr


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "name: x\nhost: {physical: 64GiB}\nvms:\n  - {name: a, memory: 8GiB, usd: 2GiB}\n",
            "vms.0.usd: Extra inputs are not permitted (did you mean 'used'?)",
        ),
        (
            "name: x\nhots: {physical: 64GiB}\nvms: []\n",
            "hots: Extra inputs are not permitted (did you mean 'host'?)",
        ),
        (
            "name: x\nhost: {physicl: 64GiB}\nvms: []\n",
            "host.physicl: Extra inputs are not permitted (did you mean 'physical'?)",
        ),
        (
            "name: x\nhost: {physical: 64GiB}\nvms:\n  - {name: a, memory: 8GiB, workload: {kindd: steady}}\n",
            "vms.0.workload.kindd: Extra inputs are not permitted (did you mean 'kind'?)",
        ),
        ("name: x\nhost: {physical: 64GiB}\nvms: []\nzzqqx: 1\n", "zzqqx: Extra inputs are not permitted ["),
    ],
)
def test_a_misspelt_scenario_key_names_the_key_it_looks_like(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    r = invoke("stats", f"fake://{path}")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert said in r.stderr, r.stderr


@pytest.mark.parametrize("args", [("web01", "4"), ("web01=4", "web02=6GiB"), ("web01", " 512 ")])
def test_a_target_without_a_unit_too_small_to_be_memory_is_refused_before_connecting(
    args: tuple[str, ...],
) -> None:
    r = invoke("set", "fake://nosuch-scenario", *args)  # refused before the URI is even opened
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "a number without a unit is bytes" in r.stderr and "write the unit, e.g. '" in r.stderr


def test_a_target_in_whole_bytes_or_a_small_one_with_a_unit_is_still_taken() -> None:
    r = invoke("set", "fake://seed", "web01", "6442450944", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    r = invoke("set", "fake://seed", "web01", "512KiB", "--dry-run")
    assert r.returncode == 8 and "below the safe floor" in r.stderr  # a unit: taken as asked


@pytest.mark.parametrize("size", [4, "4", "1000"])
def test_ansible_refuses_a_target_without_a_unit_too_small_to_be_memory(size: object) -> None:
    from tests.support.ansible import run_module

    r = run_module("target", {"uri": "fake://seed", "vm": "web01", "size": size}, False)
    assert r["failed"] and r["code"] == "invalid_size" and "a number without a unit is bytes" in r["msg"]


@pytest.mark.parametrize(
    ("vm", "where"),
    [
        ("{name: a, memory: 8}", "vms.0.memory: invalid size 8"),
        ("{name: a, memory: 8GiB, used: 3}", "vms.0.used: invalid size 3"),
        ("{name: a, memory: 8GiB, cache: '512'}", "vms.0.cache: invalid size '512'"),
        (
            "{name: a, memory: 8GiB, workload: {kind: diurnal, params: {amplitude: 1}}}",
            "vms.0.workload: diurnal workload: params.amplitude: invalid size 1",
        ),
    ],
)
def test_a_scenario_size_without_a_unit_too_small_to_be_memory_is_refused(
    tmp_path: Path, vm: str, where: str
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(f"name: x\nhost: {{physical: 64GiB}}\nvms:\n  - {vm}\n")
    r = invoke("stats", f"fake://{path}")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert f"error: invalid scenario {path}: {where}: a number without a unit is bytes" in r.stderr, r.stderr
    assert "write the unit, e.g. '" in r.stderr


def test_a_scenario_s_zero_or_whole_bytes_without_a_unit_and_a_program_s_integers_are_still_taken(
    tmp_path: Path,
) -> None:
    from hvballoon.fake.scenario import load_scenario, parse_scenario

    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: x\nhost: {physical: 64GiB}\nvms:\n  - {name: a, memory: 8589934592, used: 0, swap: 0}\n"
    )
    assert load_scenario(path).vms[0].memory == 8 * 2**30
    data = {
        "name": "x",
        "host": {"physical": 64 * 2**30},
        "vms": [{"name": "a", "memory": 8 * 2**30, "used": 3}],
    }
    assert parse_scenario(data).vms[0].used == 3  # a program's integer is bytes, as everywhere


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (("--host-memory", "128"), "invalid host memory '128'"),
        (("--host-reserve", "8"), "invalid host reserve '8'"),
        (("--floor", "web01=4"), "invalid floor '4'"),
        (("--max-lower", "1"), "invalid max lower '1'"),
    ],
)
def test_an_autoballoon_size_without_a_unit_too_small_to_be_memory_is_refused(
    option: tuple[str, str], said: str
) -> None:
    # --host-memory 128 read as 128 bytes would have the controller squeeze every VM
    r = invoke("autoballoon", "fake://seed", "--once", "--dry-run", *option)
    assert r.returncode == 2 and not r.stdout and "Traceback" not in r.stderr, r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and said in r.stderr, r.stderr
    assert "a number without a unit is bytes" in r.stderr and "write the unit, e.g. '" in r.stderr


def _leaf_commands() -> list[tuple[str, ...]]:
    import importlib

    import click

    from hvballoon.cli.app import COMMANDS

    out: list[tuple[str, ...]] = []
    for name, (module, attribute) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        if isinstance(command, click.Group):
            out.extend((name, sub) for sub in command.commands)
        else:
            out.append((name,))
    return out


#: commands without --json, and why
NO_JSON = {("exporter",): "it serves its figures over HTTP, prints nothing to parse"}


@pytest.mark.parametrize("words", _leaf_commands(), ids=" ".join)
def test_every_command_takes_json_as_the_docs_say(words: tuple[str, ...]) -> None:
    import importlib

    from hvballoon.cli.app import COMMANDS

    command = getattr(importlib.import_module(COMMANDS[words[0]][0]), COMMANDS[words[0]][1])
    for word in words[1:]:
        command = command.commands[word]
    takes = any("--json" in p.opts for p in command.params)
    assert takes is (words not in NO_JSON), words


def test_schema_takes_json_and_an_unknown_model_is_a_json_error_naming_the_models() -> None:
    r = invoke("schema", "VM", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["title"] == "VM"
    r = invoke("schema", "Nosuch", "--json")
    err = json.loads(r.stdout or r.stderr)
    assert r.returncode == 2 and err["code"] == "invalid_request" and "MemoryStats" in err["message"], err


def test_a_vm_of_several_left_without_its_size_is_named() -> None:
    r = invoke("set", "fake://nosuch-scenario", "web01=6GiB", "web02")  # refused before connecting
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "'web02' has no size: give VM=SIZE for each of several VMs" in r.stderr, r.stderr
    r = invoke("set", "fake://seed", "web01=6GiB", "7GiB")  # a size: still the one-VM form
    assert r.returncode == 7 and "did you mean 'web01'" in r.stderr


@pytest.mark.parametrize(
    ("text", "held"),
    [
        ("", "nothing (it is empty)"),
        ("# a comment\n", "nothing (it is empty)"),
        ("- a\n", "a list"),
        ("x\n", "a string"),
    ],
)
def test_a_scenario_file_that_is_no_mapping_says_what_it_holds(tmp_path: Path, text: str, held: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    r = invoke("stats", f"fake://{path}")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (
        f"invalid scenario {path}: it holds {held}; a scenario is a mapping with name, host and vms"
        in r.stderr
    )


def test_a_settings_key_named_as_its_option_or_misspelt_names_the_key_it_looks_like(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("host_memory: 128GiB\nvms: {web01: {flor: 4GiB}}\n")
    r = invoke("autoballoon", "--check-settings", str(path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "host_memory: Extra inputs are not permitted (did you mean 'host_memory_bytes'?)" in r.stderr
    assert "vms.web01.flor: Extra inputs are not permitted (did you mean 'floor'?)" in r.stderr


@pytest.mark.parametrize(
    ("key", "says"),
    [
        # the options --exclude VM, --floor VM=SIZE … are each VM's settings in the file, under vms
        (
            "exclude: [db01]",
            "(exclude is a setting of each VM: write it under vms, e.g. vms: {web01: {exclude: true}}",
        ),
        (
            "floors: {web01: 4GiB}",
            "(floor is a setting of each VM: write it under vms, e.g. vms: {web01: {floor: 4GiB}}",
        ),
        ("self-managed: [jvm01]", "(self_managed is a setting of each VM: write it under vms"),
        ("max_lower: 2GiB", "(did you mean 'max_lower_bytes_per_round'?)"),
        ("session_margins: true", "(--session-margins is policy_guard_rails: false in the file)"),
        # not policy_options, the guess the key looked like: the policy is the command line's
        ("policy: mom", "(the policy is chosen by the command line's --policy; the file holds its options"),
        ("journal: /var/lib/j.db", "(--journal is an option of the command line, not a setting of the file)"),
    ],
)
def test_a_settings_key_written_as_an_option_says_where_it_goes(tmp_path: Path, key: str, says: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(key + "\n")
    r = invoke("autoballoon", "--check-settings", str(path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert f"{key.split(':')[0]}: Extra inputs are not permitted {says}" in r.stderr, r.stderr
    assert "policy_options'?" not in r.stderr


def test_every_autoballoon_option_is_a_settings_key_or_says_where_it_goes() -> None:
    from hvballoon.cli.autoballoon import autoballoon_cmd
    from hvballoon.cli.autoballoon_settings import option_key_note
    from hvballoon.policy import ControllerSettings

    # an option added to the command says where it is in the file, or that it is not there
    for param in autoballoon_cmd.params:
        for opt in param.opts:
            if opt.startswith("--") and opt[2:].replace("-", "_") not in ControllerSettings.model_fields:
                assert option_key_note(opt), opt


@pytest.mark.parametrize(
    "option",
    [
        ("--minimum", "4"),
        ("--maximum", "16"),
        ("--startup", "8"),
        ("--reservation", "512"),
        ("--limit", "4"),
        ("--balloon-cap", "100"),
    ],
)
def test_a_config_size_without_a_unit_too_small_to_be_memory_is_refused_by_the_size_rule(
    option: tuple[str, str],
) -> None:
    # refused for the unit left out, whichever flavour: not by a 2 MiB alignment (Hyper-V) or a
    # field the VM cannot take (the others), which only happened to catch it
    for flavor in ("hyperv", "esxi", "kvm"):
        r = invoke("config", f"fake://seed?flavor={flavor}", "web01", *option, "--dry-run")
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert (
            f"invalid {option[0][2:].replace('-', '_')} '{option[1]}': a number without a unit is bytes"
            in r.stderr
        )
        assert "write the unit, e.g. '" in r.stderr, r.stderr


def test_a_policy_size_option_without_a_unit_too_small_to_be_memory_is_refused() -> None:
    r = invoke(
        "autoballoon", "fake://seed", "--once", "--dry-run", "--policy", "proxmox",
        "--policy-option", "deadband_bytes=4",
    )  # fmt: skip
    assert r.returncode == 2 and not r.stdout and "Traceback" not in r.stderr, r.stdout
    assert "invalid policy option deadband_bytes '4': a number without a unit is bytes" in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("stats", "fake://seed", "--timeout", ""), "invalid --timeout ''"),  # was the default 30s
        (("stats", "fake://seed", "--timeout", "0"), "--timeout must be above zero"),
        (("set", "fake://seed", "web01", "6GiB", "--dry-run", "--timeout", ""), "invalid --timeout ''"),
        (("stats", "fake://seed", "fake://seed-spike", "--timeout", ""), "invalid --timeout ''"),
        (("stats", "fake://seed", "fake://seed-spike", "--host-timeout", ""), "invalid --host-timeout ''"),
        (("stats", "fake://seed", "--host-timeout", ""), "invalid --host-timeout ''"),  # one host: ignored
        (("stats", "fake://seed", "--host-timeout", "abc"), "invalid --host-timeout 'abc'"),
        (("stats", "fake://seed", "--host-timeout", "0"), "--host-timeout must be above zero"),
        (("autoballoon", "fake://seed", "--once", "--dry-run", "--timeout", ""), "invalid --timeout ''"),
    ],
)
def test_an_empty_or_bad_timeout_is_named_not_taken_for_the_default(args: tuple[str, ...], says: str) -> None:
    r = invoke(*args)
    assert r.returncode == 2 and not r.stdout and "Traceback" not in r.stderr, r.stderr
    assert says in r.stderr
    r = invoke(*args, "--json")
    assert r.returncode == 2 and json.loads(r.stdout or r.stderr)["code"] == "invalid_request"


def test_a_good_host_timeout_with_one_host_is_still_taken() -> None:
    assert invoke("stats", "fake://seed", "--host-timeout", "5s").returncode == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--host-overhead", ""), "invalid host overhead ''"),  # was no overhead at all
        (("--host-reserve", ""), "invalid host reserve ''"),
        (("--exclude", ""), "--exclude takes a VM's name or id, got an empty one"),  # excluded nothing
        (("--self-managed", " "), "--self-managed takes a VM's name or id, got an empty one"),
        (("--interval", "soon"), "invalid --interval 'soon'"),
    ],
)
def test_an_autoballoon_option_given_empty_is_refused_not_dropped(args: tuple[str, ...], says: str) -> None:
    r = invoke("autoballoon", "fake://seed", "--once", "--dry-run", *args)
    assert r.returncode == 2 and not r.stdout and "Traceback" not in r.stderr, r.stderr
    assert says in r.stderr


def test_an_empty_recording_interval_of_a_simulation_is_refused() -> None:
    r = invoke("simulate", "seed", "--duration", "1m", "--every", "")
    assert r.returncode == 2 and "invalid --every ''" in r.stderr
