"""Options that would be dropped or settled silently: one given twice, both sides of an on/off
pair, a wait option without the wait, a settings file rendered empty. Each is a usage error
naming them (exit 2, a JSON report with --json), and nothing is changed."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import click
import pytest

from tests.support.cli import invoke


def _commands() -> list[tuple[tuple[str, ...], click.Command]]:
    from hvballoon.cli.app import COMMANDS

    out: list[tuple[tuple[str, ...], click.Command]] = []
    for name, (module, attribute) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        if isinstance(command, click.Group):
            out.extend(((name, sub), c) for sub, c in command.commands.items())
        else:
            out.append(((name,), command))
    return out


@pytest.mark.parametrize(
    ("words", "command"), _commands(), ids=lambda w: " ".join(w) if isinstance(w, tuple) else ""
)
def test_every_command_refuses_a_single_valued_option_given_twice(
    words: tuple[str, ...], command: click.Command
) -> None:
    from hvballoon.cli.common import OptionsCommand

    assert isinstance(command, OptionsCommand), words


def _targets(uri: str) -> list[object]:
    r = invoke("stats", uri, "web01", "web02", "--json")
    return [s["target_bytes"] for s in json.loads(r.stdout)]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--minimum", "2GiB", "--minimum", "4GiB"), "--minimum is given 2 times ('2GiB', then '4GiB')"),
        (("--minimum=2GiB", "--minimum", "2GiB"), "--minimum is given 2 times"),
        (("--dynamic", "--static"), "--dynamic and --static contradict each other"),
        (("--static", "--minimum", "2GiB", "--dynamic"), "--dynamic and --static contradict each other"),
        (("--timeout", "5s", "--timeout", "10s"), "--timeout is given 2 times"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_config_refuses_an_option_given_twice_or_a_flag_and_its_opposite(
    tmp_path: Path, args: tuple[str, ...], says: str, as_json: bool
) -> None:
    uri = f"fake://seed?flavor=hyperv&state={tmp_path / 'w.db'}"
    before = invoke("config", uri, "web01", "--json").stdout
    r = invoke("config", uri, "web01", *args, *(["--json"] if as_json else []))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    if as_json:
        report = json.loads(r.stdout)
        assert report["code"] == "invalid_request" and says in report["message"], report
    else:
        assert says in r.stderr and not r.stdout, r.stderr
    assert invoke("config", uri, "web01", "--json").stdout == before  # nothing changed


@pytest.mark.parametrize(
    "args",
    [
        ("set", "fake://seed", "web01", "6GiB", "--dry-run", "--dry-run"),
        ("autoballoon", "fake://seed", "--once", "--dry-run", "--exclude", "a", "--exclude", "b"),
        ("config", "fake://seed?flavor=hyperv", "web01", "--dry-run", "--dynamic", "--dynamic"),
    ],
)
def test_a_flag_written_twice_and_repeatable_options_are_still_taken(args: tuple[str, ...]) -> None:
    r = invoke(*args)
    assert r.returncode == 0, r.stderr


def test_an_option_s_value_that_looks_like_the_option_is_not_counted_as_a_use() -> None:
    # the value of --exclude is '--exclude'-like text; only the real uses count
    r = invoke(
        "autoballoon", "fake://seed", "--once", "--dry-run", "--interval", "5s", "--exclude=--interval"
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("web01", "6GiB", "--wait-timeout", "5s"), "--wait-timeout applies to --wait"),
        (("web01=6GiB", "web02=7GiB", "--wait-timeout", "5s"), "--wait-timeout applies to --wait"),
        (("web01", "6GiB", "--dry-run", "--wait"), "--wait with --dry-run"),
        (("web01=6GiB", "web02=7GiB", "--dry-run", "--wait"), "--wait with --dry-run"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_set_refuses_a_wait_option_that_would_be_ignored(
    tmp_path: Path, args: tuple[str, ...], says: str, as_json: bool
) -> None:
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    before = _targets(uri)
    r = invoke("set", uri, *args, *(["--json"] if as_json else []))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    if as_json:
        report = json.loads(r.stdout)
        assert report["code"] == "invalid_request" and says in report["message"], report
    else:
        assert says in r.stderr and not r.stdout, r.stderr
    assert _targets(uri) == before  # nothing changed


def test_set_with_wait_and_its_timeout_is_still_taken() -> None:
    r = invoke("set", "fake://seed", "web01", "6GiB", "--wait", "--wait-timeout", "10m", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["change"]["changed"] is True


@pytest.mark.parametrize("text", ["", "\n", "# rendered from a template\n", "null\n", "~\n"])
@pytest.mark.parametrize("how", ["check-settings", "settings"])
def test_an_empty_or_null_settings_file_is_refused(tmp_path: Path, text: str, how: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    if how == "check-settings":
        r = invoke("autoballoon", "--check-settings", str(path), "--json")
    else:
        r = invoke("autoballoon", "fake://seed", "--settings", str(path), "--once", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["code"] == "invalid_request" and str(path) in report["message"], report
    assert "the settings file is empty" in report["message"] or "holds no settings" in report["message"]
    assert "write {} for all the defaults" in report["message"], report


def test_an_empty_json_settings_file_is_refused_and_an_explicit_empty_mapping_is_taken(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "settings.json"
    empty.write_text("")
    r = invoke("autoballoon", "--check-settings", str(empty))
    assert r.returncode == 2 and f"{empty}: the settings file is empty" in r.stderr, r.stderr
    for name, text in (("braces.yaml", "{}\n"), ("braces.json", "{}")):
        path = tmp_path / name
        path.write_text(text)
        r = invoke("autoballoon", "--check-settings", str(path))
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("vms", "fake://seed", "--ca-file", ""), "--ca-file"),
        (("set", "fake://seed", "web01", "6GiB", "--dry-run", "--ca-file="), "--ca-file"),
        (("autoballoon", "fake://seed", "--once", "--dry-run", "--ca-file", " "), "--ca-file"),
        (("stats", "fake://seed", "--inventory", ""), "--inventory"),
        (("watch", "fake://seed", "--count", "1", "-i", ""), "--inventory"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_an_empty_ca_file_or_inventory_is_refused_not_read_as_none(
    args: tuple[str, ...], option: str, as_json: bool
) -> None:
    r = invoke(*args, *(["--json"] if as_json else []))
    assert r.returncode == 2, r.stdout + r.stderr
    said = json.loads(r.stdout)["message"] if as_json else r.stderr
    assert f"'{option}'" in said and "an empty path" in said, said


@pytest.mark.parametrize(
    "command",
    [
        ("stats", "fake://seed"),
        ("stats", "fake://seed", "fake://dense"),
        ("set", "fake://seed", "web01", "6GiB"),
        ("autoballoon", "fake://seed", "--once"),
        ("release", "fake://seed"),
    ],
    ids=" ".join,
)
def test_no_verify_with_a_ca_file_is_refused_before_connecting(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # the CA would be ignored (nothing is verified): a command line that names one meant verification
    ca = tmp_path / "ca.pem"
    ca.write_text("not read\n")
    r = invoke(*command, "--no-verify", "--ca-file", str(ca), "--json")
    assert r.returncode == 2, r.stdout
    err = json.loads(r.stdout)
    assert err["code"] == "invalid_request" and err["backend"] is None
    assert err["message"].startswith("--no-verify and --ca-file contradict each other")
    assert "verification is OFF" not in r.stderr  # refused before the session's warning


@pytest.mark.parametrize(
    "command",
    [
        ("vms", "fake://seed"),
        ("stats", "fake://seed?flavor=esxi"),
        ("set", "fake://seed", "web01", "6GiB"),
        ("autoballoon", "fake://seed", "--once"),
        ("release", "fake://seed"),
    ],
    ids=" ".join,
)
def test_a_ca_file_that_is_not_there_is_refused_on_the_fake_as_on_a_real_hypervisor(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # the fake has no TLS, but a mistyped path is caught in CI against it as in production
    missing = str(tmp_path / "corp-ca.pem")
    r = invoke(*command, "--ca-file", missing, "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    err = json.loads(r.stdout)
    assert (err["code"], err["backend"]) == ("invalid_request", "fake")
    # the real backends' own check, before they connect: the same error, the same exit code
    for uri in ("esxi://root@127.0.0.1:9/", "hyperv://root@127.0.0.1:9/"):
        real = invoke("vms", uri, "--ca-file", missing, "--json", env={"HVBALLOON_PASSWORD": "pw"})
        assert real.returncode == 2, real.stdout + real.stderr
        assert {k: v for k, v in json.loads(real.stdout).items() if k not in ("backend", "uri")} == {
            k: v for k, v in err.items() if k not in ("backend", "uri")
        }
    assert err["message"] == f"the CA file {missing!r} is not a file: no such file or directory"
    # a CA file that is there is read by nothing here, and accepted
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate: nothing reads it on the fake\n")
    accepted = invoke(
        *command, "--ca-file", str(ca), *(() if command[0] in ("vms", "stats") else ("--dry-run",))
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
