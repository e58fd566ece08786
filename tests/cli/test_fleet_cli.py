"""Several hosts at once, ``watch`` and shell completion, through the real entry point."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from hvballoon.errors import InvalidRequestError
from hvballoon.fleet import read_inventory
from hvballoon.models import json_schemas
from tests.support.schemas import Lazy, validate

SCHEMAS = Lazy(json_schemas)
HANG = "slowtest://hang1?sleep=30"
DOWN = "slowtest://down1?fail=auth_failed"


def hosts_by_uri(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["uri"]: h for h in out["hosts"]}


def test_two_uris_with_vm_names(run: Any) -> None:
    r = run("stats", "fake://seed", "fake://seed?flavor=hyperv", "web01", "db01", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["exit_code"] == 0 and out["missing_vms"] == []
    assert [h["uri"] for h in out["hosts"]] == ["fake://seed", "fake://seed?flavor=hyperv"]
    for host in out["hosts"]:
        assert host["ok"] and host["error"] is None and host["backend"] == "fake"
        assert [s["vm"]["name"] for s in host["stats"]] == ["web01", "db01"]
        for s in host["stats"]:
            validate(s, SCHEMAS["MemoryStats"])
    # hyperv fills demand, not guest used; kvm the other way round
    hyperv = hosts_by_uri(out)["fake://seed?flavor=hyperv"]["stats"][0]
    assert hyperv["guest_used_bytes"] is None and hyperv["demand_bytes"] is not None


def test_one_hung_and_one_failing_host_do_not_stop_the_others(run: Any) -> None:
    started = time.monotonic()
    r = run("stats", "fake://seed", DOWN, HANG, "fake://seed?flavor=esxi", "--host-timeout", "0.5s", "--json")
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"a hung host delayed the sweep beyond its timeout ({elapsed:.1f} s)"
    out = json.loads(r.stdout)
    hosts = hosts_by_uri(out)
    assert hosts["fake://seed"]["ok"] and len(hosts["fake://seed"]["stats"]) == 10
    assert hosts["fake://seed?flavor=esxi"]["ok"] and len(hosts["fake://seed?flavor=esxi"]["stats"]) == 10
    assert hosts[DOWN]["error"]["code"] == "auth_failed" and hosts[DOWN]["error"]["retryable"] is False
    assert hosts[HANG]["error"]["code"] == "timeout" and hosts[HANG]["error"]["retryable"] is True
    assert hosts[HANG]["stats"] == [] and not out["ok"]
    # the first failed host in the order given decides the exit code: auth_failed -> 6
    assert r.returncode == out["exit_code"] == 6


def test_a_uri_given_twice_is_one_host(run: Any, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.txt"
    inventory.write_text("# lab\n\nfake://seed\nfake://seed?flavor=esxi\n  fake://seed  \n")
    r = run("stats", "fake://seed", "-i", str(inventory), "fake://seed?flavor=esxi", "web01", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [h["uri"] for h in out["hosts"]] == ["fake://seed", "fake://seed?flavor=esxi"]
    assert [len(h["stats"]) for h in out["hosts"]] == [1, 1]


def test_failing_host_in_the_table(run: Any) -> None:
    r = run("stats", DOWN, "fake://seed", "web01")
    assert r.returncode == 6
    assert "web01" in r.stdout and "auth_failed" in r.stdout
    assert f"error: {DOWN}: auth_failed" in r.stderr


def test_inventory_text_and_yaml(run: Any, tmp_path: Path) -> None:
    text = tmp_path / "hosts.txt"
    text.write_text("# lab\nfake://seed\n\nfake://seed?flavor=esxi\n", encoding="utf-8")
    yml = tmp_path / "hosts.yaml"
    yml.write_text("- fake://seed\n- uri: 'fake://seed?flavor=esxi'\n", encoding="utf-8")
    for inv in (text, yml):
        r = run("stats", "--inventory", str(inv), "db01", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert [h["uri"] for h in out["hosts"]] == ["fake://seed", "fake://seed?flavor=esxi"]
        assert all(len(h["stats"]) == 1 for h in out["hosts"])


def test_a_text_inventory_takes_comments_after_a_uri_as_yaml_does(tmp_path: Path) -> None:
    text = tmp_path / "hosts.txt"
    text.write_text(
        "# lab\nfake://seed   # the KVM one\n\tfake://seed?flavor=esxi\t# ESXi\n  # indented comment\n",
        encoding="utf-8",
    )
    yml = tmp_path / "hosts.yaml"
    yml.write_text("- fake://seed   # the KVM one\n- fake://seed?flavor=esxi  # ESXi\n", encoding="utf-8")
    assert read_inventory(text) == read_inventory(yml) == ["fake://seed", "fake://seed?flavor=esxi"]
    # a '#' inside a URI is still a fragment, refused with its own message when connecting
    text.write_text("fake://seed#frag\n", encoding="utf-8")
    assert read_inventory(text) == ["fake://seed#frag"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfe\x00garbage\n", "not UTF-8"),
        pytest.param(b"[" * 1000, "nested too deeply", id="nested-too-deeply"),
        (b"uri: fake://seed\n", "is a mapping"),
        (b"- uri: fake://seed\n  password: hunter2\n", "unknown key(s) password"),
        (b"- host: lab1\n  password: hunter2\n", "a mapping with keys host, password"),
        (b"- [fake://seed]\n", "expected a URI"),
        # a key given twice: the second URI would win without a word
        (b"- uri: fake://seed\n  uri: fake://java\n", "the key 'uri' is given twice in one mapping (line 2"),
        (b"# only a comment\n", "lists no URI"),
        pytest.param(
            # PyYAML's own message would quote the line, password and all
            b"- fake://seed\n- @fake://u@h?password=hunter2\n",
            "a YAML list that cannot be read: found character '@' that cannot start any token (line 2",
            id="broken-yaml-list",
        ),
    ],
)
def test_a_malformed_inventory_is_refused_clearly_without_echoing_secrets(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    inv = tmp_path / "hosts.yaml"
    inv.write_bytes(content)
    with pytest.raises(InvalidRequestError) as info:
        read_inventory(inv)
    assert problem in str(info.value) and str(inv) in str(info.value)
    assert "hunter2" not in str(info.value)


def test_vm_named_nowhere_and_no_uri(run: Any) -> None:
    r = run("stats", "fake://seed", "fake://seed?flavor=esxi", "nope", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 7 and out["missing_vms"] == ["nope"]
    r = run("stats", "web01")
    assert r.returncode == 2 and "://" in r.stderr
    r = run("stats", "-i", "/nonexistent/hosts.txt")
    assert r.returncode == 2 and "cannot read the inventory" in r.stderr


def test_vms_named_nowhere_are_named_ten_and_counted_beyond(run: Any) -> None:
    # every name went into the one line, as the one-host form no longer did
    unknown = [f"nope{i:02d}" for i in range(12)]
    r = run("stats", "fake://seed", "fake://seed?flavor=esxi", *unknown)
    assert r.returncode == 7
    named = ", ".join(repr(n) for n in unknown[:10])
    assert f"error: no host has a VM named or with id {named}, and 2 more\n" in r.stderr, r.stderr
    r = run("stats", "fake://seed", "fake://seed?flavor=esxi", *unknown, "--json")
    assert json.loads(r.stdout)["missing_vms"] == unknown  # every one, where a program reads them


def test_password_is_shared_and_never_printed(run: Any) -> None:
    r = run("stats", "fake://seed", DOWN, "--password-stdin", "--json", stdin="hunter2\n")
    assert r.returncode == 6
    assert "hunter2" not in r.stdout + r.stderr


def test_watch_json_lines(run: Any) -> None:
    r = run(
        "watch",
        "fake://seed",
        HANG,
        "web01",
        "--interval",
        "0.2s",
        "--count",
        "2",
        "--host-timeout",
        "0.5s",
        "--json",
    )
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [line["sweep"] for line in lines] == [1, 2]
    for line in lines:
        hosts = hosts_by_uri(line)
        assert [s["vm"]["name"] for s in hosts["fake://seed"]["stats"]] == ["web01"]
        assert hosts[HANG]["error"]["code"] == "timeout"
    # the hung host is still busy in the second sweep: reported at once, not queried twice
    assert "still busy" in hosts_by_uri(lines[1])[HANG]["error"]["message"]
    assert r.returncode == 5


def test_watch_table(run: Any) -> None:
    r = run("watch", "fake://seed", "--interval", "0.1s", "--count", "2")
    assert r.returncode == 0, r.stderr
    assert "sweep 1" in r.stdout and "sweep 2" in r.stdout and r.stdout.count("jvm01") == 2


def test_shell_completion(run: Any) -> None:
    script = run(env={"_HVBALLOON_COMPLETE": "bash_source"})
    assert "_hvballoon_completion" in script.stdout and "complete " in script.stdout
    env: dict[str, str | None] = {
        "_HVBALLOON_COMPLETE": "bash_complete",
        "COMP_WORDS": "hvballoon wa",
        "COMP_CWORD": "1",
    }
    assert "watch" in run(env=env).stdout
    env = {**env, "COMP_WORDS": "hvballoon set fake://seed web01 6GiB --dr", "COMP_CWORD": "5"}
    assert "--dry-run" in run(env=env).stdout


@pytest.mark.slow
def test_a_third_party_backend_is_found_through_its_entry_point(plugin_env: dict[str, str]) -> None:
    """In a subprocess whose environment has the ``slowtest`` distribution installed: the
    registry finds it through the ``hvballoon.backends`` entry-point group, nothing registers it."""
    from tests.support.cli import run as run_subprocess

    r = run_subprocess("stats", "slowtest://up1", "fake://seed", "db01", "--json", env=plugin_env)
    assert r.returncode == 0, r.stderr
    hosts = hosts_by_uri(json.loads(r.stdout))
    assert [s["vm"]["name"] for s in hosts["slowtest://up1"]["stats"]] == ["db01"]
    assert hosts["slowtest://up1"]["backend"] == "slowtest"


def test_every_command_has_examples_and_json(run: Any) -> None:
    import click

    from hvballoon.cli import main

    leaves: list[tuple[str, ...]] = []
    context = click.Context(main)
    for name in main.list_commands(context):
        cmd = main.get_command(context, name)
        assert cmd is not None and cmd.name == name, name
        if isinstance(cmd, click.Group):
            leaves.extend((name, sub) for sub in cmd.commands)
        else:
            leaves.append((name,))
    assert {("stats",), ("watch",), ("exporter",), ("set",), ("config",), ("vms",)} <= set(leaves)
    for path in leaves:
        h = run(*path, "--help")
        assert h.returncode == 0 and "Example" in h.stdout, path
    for name in ("stats", "watch", "set", "config", "vms", "backends", "scenarios", "capabilities"):
        assert "--json" in run(name, "--help").stdout, name


def test_a_third_party_backend_adds_a_config_rule_on_the_typed_plan(run: Any) -> None:
    """The third-party backend (registered here as its entry point registers it in a process of
    its own, see the test above) overrides ``plan_config``: it gets the caller's
    ``ConfigUpdate``, the kind's plan back from ``super()``, and refuses on ``plan.changed()`` — a
    change on a read-only host is refused before anything is sent, a request that changes
    nothing is not."""
    uri = "slowtest://ro1?read_only=1"
    refused = run("config", uri, "db01", "--stats-period", "7", "--json")
    assert refused.returncode == 6, refused.stderr  # permission_denied
    error = json.loads(refused.stdout)
    assert error["code"] == "permission_denied" and error["details"]["rule"] == "read_only"
    assert error["details"]["fields"] == ["stats_period_seconds"]
    period = json.loads(run("config", uri, "db01", "--json").stdout)
    same = run("config", uri, "db01", "--stats-period", str(period["stats_period_seconds"]), "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["changed"] is False
    writable = run("config", "slowtest://rw1", "db01", "--stats-period", "7", "--json")
    assert writable.returncode == 0, writable.stderr
    change = json.loads(writable.stdout)
    assert change["changed"] is True and change["after"] == {"stats_period_seconds": 7}
