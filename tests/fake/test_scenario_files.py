"""Scenario files as people write them: a key given twice, a number or a date that cannot be
read, a directory named for a file. Each is a ScenarioError naming the file and the problem
(exit 2 from the command line, no traceback), never a scenario the last duplicate won."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hvballoon
from hvballoon._yamltext import load_json, load_yaml
from hvballoon.errors import InvalidRequestError, ScenarioError
from hvballoon.fake.scenario import load_scenario
from hvballoon.units import GiB
from tests.support.cli import invoke

_HOST = "host: {physical: 32GiB}\n"
_VM = "vms: [{name: a, memory: 1GiB}]\n"


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        # the first list of VMs would vanish without a word
        (
            "twice.yaml",
            "name: t\n" + _HOST + _VM + "vms: [{name: b, memory: 2GiB}]\n",
            "the key 'vms' is given twice",
        ),
        (
            "vm.yaml",
            "name: t\n" + _HOST + "vms:\n  - name: a\n    memory: 1GiB\n    memory: 2GiB\n",
            "'memory' is given twice",
        ),
        (
            "host.yaml",
            "name: t\nhost: {physical: 32GiB, physical: 64GiB}\n" + _VM,
            "'physical' is given twice",
        ),
        (
            "twice.json",
            json.dumps({"name": "t"})[:-1] + ', "name": "u", "host": {"physical": "8GiB"}}',
            "the key 'name' is given twice",
        ),
        # int() refuses more than 4300 digits: a ValueError, not a YAML error
        (
            "long.yaml",
            "name: t\nseed: " + "9" * 5000 + "\n" + _HOST + _VM,
            "a number too long to read (line 2, column 7)",
        ),
        ("long.json", '{"name": "t", "seed": ' + "9" * 5000 + "}", "a number too long to read"),
        ("date.yaml", "name: t\ndescription: 2024-02-30\n" + _HOST + _VM, "not a date (line 2, column 14)"),
    ],
    ids=[
        "vms-twice",
        "vm-key-twice",
        "host-key-twice",
        "json-key-twice",
        "long-number",
        "long-json-number",
        "bad-date",
    ],
)
def test_what_the_parser_would_settle_silently_or_crash_on_is_refused(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert problem in str(info.value) and str(path) in str(info.value), info.value
    r = invoke("stats", f"fake://{path}")
    assert r.returncode == 2 and problem in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_merge_keys_and_aliases_still_work_and_a_merged_key_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "name: t\n" + _HOST + "vms:\n"
        "  - &base {name: a, memory: 1GiB, used: 512MiB}\n"
        "  - <<: *base\n    name: b\n    memory: 2GiB\n"
    )
    vms = load_scenario(path).vms
    assert [(v.name, v.memory, v.used) for v in vms] == [("a", GiB, GiB // 2), ("b", 2 * GiB, GiB // 2)]


def test_the_strict_loaders_read_what_the_plain_ones_read() -> None:
    text = "a: 1\nA: 2\n'1': x\n1: y\nl: [1, 2]\nd: 2024-02-03\n"
    import yaml

    assert load_yaml(text) == yaml.safe_load(text)
    assert load_json('{"a": {"b": [1, 2]}, "c": null}') == {"a": {"b": [1, 2]}, "c": None}
    with pytest.raises(RecursionError):
        load_yaml("[" * 1000)


def test_a_directory_is_named_as_one_not_as_a_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "world.yaml"
    folder.mkdir()
    with pytest.raises(ScenarioError, match="it is a directory") as info:
        load_scenario(folder)
    assert "no such file" not in str(info.value)
    with pytest.raises(InvalidRequestError, match="it is a directory"):
        hvballoon.connect(f"fake://{folder}")
    r = invoke("simulate", str(folder), "--duration", "1m")
    assert r.returncode == 2 and "it is a directory" in r.stderr


def test_text_that_is_not_utf8_names_the_byte_and_nothing_of_the_text(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9-hunter2\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert "not UTF-8 text (byte 9)" in str(info.value) and "hunter2" not in str(info.value)


def test_vm_names_a_scenario_gives_are_shown_as_text_never_as_terminal_codes(tmp_path: Path) -> None:
    names = ["web\x1b[31m01", "line\nbreak", "we'b\"01 [bold]x[/bold]", "wéb—01 🚀", "a/b c", "nul\x00\x9b"]
    path = tmp_path / "names.json"
    vms = [{"name": n, "memory": "1GiB"} for n in names]
    path.write_text(json.dumps({"name": "t", "host": {"physical": "8GiB"}, "vms": vms}))
    for command in ("vms", "stats"):
        r = invoke(command, f"fake://{path}")
        assert r.returncode == 0, r.stderr
        shown = r.stdout
        assert not any(c in shown for c in "\x1b\x00\x9b"), repr(shown)
        for seen in (
            "web\\x1b[31m01",
            "line\\nbreak",
            "we'b\"01 [bold]x[/bold]",
            "wéb—01 🚀",
            "a/b c",
            "nul\\x00\\x9b",
        ):
            assert seen in shown, (seen, shown)
    # JSON keeps the names as they are
    r = invoke("vms", f"fake://{path}", "--json")
    assert [vm["name"] for vm in json.loads(r.stdout)] == names
