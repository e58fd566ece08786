"""The collection's modules run in this process against a persisted fake world: several VMs
changed all or nothing, and an empty VM name refused by every module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon.fake.store import WorldStore
from hvballoon.units import GiB
from tests.support.ansible import run_module

pytest.importorskip("ansible")

EMPTY = "vm or vms must name at least one VM (got an empty or null value)"


@pytest.fixture
def esxi(tmp_path: Path) -> str:
    """A persisted ESXi-flavoured seed world, created by a first connection."""
    uri = f"fake://seed?state={tmp_path / 'esxi.db'}&flavor=esxi"
    with hvballoon.connect(uri) as hv:
        hv.list_vms()
    return uri


def _reservations(uri: str, *names: str) -> dict[str, int | None]:
    with hvballoon.connect(uri) as hv:
        return {c.vm.name: c.reservation_bytes for c in hv.get_configs(list(names))}


def _config(uri: str, check_mode: bool = False, **args: Any) -> dict[str, Any]:
    return run_module("config", {"uri": uri, **args}, check_mode=check_mode)


@pytest.mark.parametrize("check_mode", [False, True])
def test_config_with_an_unknown_vm_changes_none(esxi: str, check_mode: bool) -> None:
    r = _config(esxi, check_mode, vms=["web01", "web02", "web99"], reservation="2GiB")
    assert r["failed"] and r["code"] == "vm_not_found" and r["changed"] is False
    assert "nothing was changed" in r["msg"] and "web99" in r["msg"]
    assert r["changes"] == []
    assert [(x["vm"], x["ok"], x["changed"]) for x in r["results"]] == [
        ("web01", True, False),
        ("web02", True, False),
        ("web99", False, False),
    ]
    assert r["results"][2]["error"]["code"] == "vm_not_found"
    # the others' changes are reported as a plan that was not applied
    assert all(x["change"]["dry_run"] for x in r["results"][:2])
    assert _reservations(esxi, "web01", "web02") == {"web01": 0, "web02": 0}


def test_config_refused_by_one_vms_rules_changes_none(esxi: str) -> None:
    with hvballoon.connect(esxi) as hv:
        hv.set_config("web02", limit="1GiB")  # a reservation of 2 GiB would be above it
    r = _config(esxi, vms=["web01", "web02", "web03"], reservation="2GiB")
    assert r["failed"] and r["changed"] is False
    assert r["code"] == r["results"][1]["error"]["code"]
    assert r["results"][1]["error"]["details"]["rule"] == "reservation_le_limit"
    assert "nothing was changed" in r["msg"] and "web02" in r["msg"]
    assert _reservations(esxi, "web01", "web02", "web03") == {"web01": 0, "web02": 0, "web03": 0}


def test_config_remote_failure_midway_is_a_partial_change(esxi: str) -> None:
    store = WorldStore(esxi.split("state=")[1].split("&")[0], lambda: pytest.fail("the world exists"))
    with store.transaction() as w:
        w.faults.add(op="set_config", kind="permission_denied", vm="web02")
    store.close()
    r = _config(esxi, vms=["web01", "web02", "web03"], reservation="2GiB")
    assert r["failed"] and r["code"] == "partial_change" and r["changed"] is True
    assert r["error"]["details"]["applied"] == ["web01", "web03"]
    assert r["error"]["details"]["not_applied"] == ["web02"]
    assert "web01, web03" in r["msg"] and "web02" in r["msg"]
    assert [(x["vm"], x["ok"], x["changed"]) for x in r["results"]] == [
        ("web01", True, True),
        ("web02", False, False),
        ("web03", True, True),
    ]
    assert r["results"][1]["error"]["code"] == "permission_denied"
    assert _reservations(esxi, "web01", "web02", "web03") == {"web01": 2 * GiB, "web02": 0, "web03": 2 * GiB}


def test_config_check_mode_reports_the_plan_and_changes_nothing(esxi: str) -> None:
    with hvballoon.connect(esxi) as hv:
        hv.set_config("web02", reservation="2GiB")
    r = _config(esxi, True, vms=["web01", "web02"], reservation="2GiB")
    assert not r.get("failed") and r["changed"] is True
    assert [(c["vm"]["name"], c["changed"], c["dry_run"]) for c in r["changes"]] == [
        ("web01", True, True),
        ("web02", False, True),
    ]
    assert _reservations(esxi, "web01", "web02") == {"web01": 0, "web02": 2 * GiB}
    applied = _config(esxi, vms=["web01", "web02"], reservation="2GiB")
    assert not applied.get("failed") and applied["changed"] is True
    assert [c["changed"] for c in applied["changes"]] == [True, False]
    assert [x["changed"] for x in applied["results"]] == [True, False]
    assert _reservations(esxi, "web01", "web02") == {"web01": 2 * GiB, "web02": 2 * GiB}


def test_config_with_a_vm_named_twice_changes_none(esxi: str) -> None:
    with hvballoon.connect(esxi) as hv:
        web01 = hv.resolve("web01").id
    for vms in (["web01", "web02", "web01"], ["web01", "web02", web01]):
        r = _config(esxi, vms=vms, reservation="2GiB")
        assert r["failed"] and r["code"] == "invalid_request" and r["changed"] is False
        assert "give each VM once" in r["msg"]
    assert _reservations(esxi, "web01", "web02") == {"web01": 0, "web02": 0}


def test_config_bad_value_fails_once_before_any_vm(esxi: str) -> None:
    r = _config(esxi, vms=["web01", "web99"], reservation="2G")
    assert r["failed"] and r["code"] == "invalid_size" and r["changed"] is False
    assert "web99" not in r["msg"]


@pytest.mark.parametrize(
    "names", [{"vm": ""}, {"name": ""}, {"vms": []}, {"vms": [""]}, {"vms": ["web01", ""]}]
)
def test_memory_info_refuses_an_empty_vm_name_as_the_changing_modules_do(
    esxi: str, names: dict[str, Any]
) -> None:
    info = run_module("memory_info", {"uri": esxi, **names}, check_mode=False)
    target = run_module("target", {"uri": esxi, **names, "size": "8GiB"}, check_mode=False)
    for r in (info, target):
        assert r["failed"] and r["code"] == "invalid_request" and r["changed"] is False
        assert r["msg"] == EMPTY and "vms" not in r
    assert info["error"] == target["error"]


def test_memory_info_without_vm_or_vms_still_reads_every_vm(esxi: str) -> None:
    r = run_module("memory_info", {"uri": esxi, "gather": ["config"]}, check_mode=False)
    assert not r.get("failed") and len(r["vms"]) == 10


@pytest.mark.parametrize("vms", [None, ["web03", "web01", "db01"]])
def test_memory_info_reads_the_configurations_in_one_call(esxi: str, vms: list[str] | None) -> None:
    # a call per VM is a round trip per VM (a vCenter of 2,000 VMs); the world answers one
    # configuration read and refuses the next, so only one bulk read gets through
    store = WorldStore(esxi.split("state=")[1].split("&")[0], lambda: pytest.fail("the world exists"))
    with store.transaction() as w:
        w.faults.add(op="get_config", kind="permission_denied", after=1, count=1000)
    store.close()
    args: dict[str, Any] = {"uri": esxi, "gather": ["config"]} | ({"vms": vms} if vms else {})
    r = run_module("memory_info", args, check_mode=False)
    assert not r.get("failed"), r.get("msg")
    names = [v["name"] for v in r["vms"]]
    assert names == vms if vms else len(names) == 10
    assert {v["name"]: v["config"]["reservation_bytes"] for v in r["vms"]} == dict.fromkeys(names, 0)
    assert all(v["config"]["mechanism"] == "limit" for v in r["vms"])


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("target", {"vm": "web01", "size": "12GiB"}),
        ("target", {"vm": "web01", "size": "twelve"}),  # refused before connecting
        ("config", {"vm": "web01", "limit": "8GiB"}),
        ("memory_info", {}),
    ],
)
def test_a_password_in_the_uri_is_masked_in_the_whole_result(module: str, args: dict[str, Any]) -> None:
    uri = "fake://admin:Hunt%65r2pw@seed?flavor=esxi&token=Tok3nValue"
    r = run_module(module, {"uri": uri, **args}, False)
    assert r["failed"] and r.get("changed") is not True
    shown = repr(r)
    for secret in ("Hunt%65r2pw", "Hunter2pw", "Tok3nValue"):
        assert secret not in shown, (secret, r)
    # the rest of the URI stays readable, in the task's echo of its arguments too
    assert r["invocation"]["module_args"]["uri"].startswith("fake://admin:")
    assert "flavor=esxi" in r["invocation"]["module_args"]["uri"]


SECRET_URI = "esxi://root:Secr3tPw@esx1.example?token=Tok3nValue"


@pytest.mark.parametrize(
    ("module", "args"),
    [
        # refused by the argument spec: a wrong type, an unknown option, two exclusive options
        ("target", {"uri": SECRET_URI, "vm": "web01", "size": "12GiB", "wait": "perhaps"}),
        ("config", {"uri": SECRET_URI, "vm": "web01", "limit": "8GiB", "bogus_option": 1}),
        ("memory_info", {"uri": SECRET_URI, "vm": "web01", "vms": ["web02"]}),
        ("memory_info", {"uri": SECRET_URI, "timeout": "soon"}),
        # the URI given to another option (a known one, an unknown one, nested)
        ("memory_info", {"uri": "fake://seed", "vm": SECRET_URI}),
        ("target", {"uri": "fake://seed", "vms": ["web01", SECRET_URI], "size": "2GiB"}),
        ("config", {"uri": "fake://seed", "vm": "web01", "limit": "8GiB", "url": SECRET_URI}),
        ("target", {"uri": "fake://seed", "vm": "web01", "size": "2GiB", "extra": {"a": [SECRET_URI]}}),
    ],
)
def test_a_uri_password_is_masked_whichever_option_holds_it_and_however_the_task_ends(
    module: str, args: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ansible.module_utils import basic

    logged: list[str] = []
    monkeypatch.setattr(basic.AnsibleModule, "log", lambda self, msg, *a, **k: logged.append(msg))
    r = run_module(module, {**args, "_ansible_diff": True}, False)
    assert r["failed"] and r.get("changed") is not True
    shown = repr(r) + repr(logged)
    for secret in ("Secr3tPw", "Tok3nValue"):
        assert secret not in shown, (secret, r, logged)
    assert "esx1.example" in repr(r["invocation"]["module_args"])  # the rest stays readable


#: A passphrase with blanks, a backslash and both quotes: each part is a secret, however quoted.
PASSPHRASE = "Correct horse\\Battery 'st\"aple"
PASSPHRASE_PARTS = ("Correct", "Battery", "aple")


@pytest.mark.parametrize(
    ("module", "args"),
    [
        # written in the URI: refused, and the URI echoed with every word of it masked
        ("memory_info", {"uri": f"esxi://root:{PASSPHRASE}@esx1.example"}),
        ("memory_info", {"uri": f"fake://seed?flavor=esxi&password={PASSPHRASE}"}),
        # a URI given to another option, quoted by the error (with !r: backslash doubled)
        ("memory_info", {"uri": "fake://seed", "vm": f"esxi://root:{PASSPHRASE}@esx1.example"}),
        ("target", {"uri": "fake://seed", "vms": [f"esxi://root:{PASSPHRASE}@esx1.example"], "size": "6GiB"}),
        # the password option's value templated into another option by mistake
        ("target", {"uri": "fake://seed", "password": PASSPHRASE, "vm": "web01", "size": PASSPHRASE}),
        (
            "config",
            {"uri": "fake://seed", "password": PASSPHRASE, "vm": f"{PASSPHRASE}-vm", "stats_period": 5},
        ),
    ],
)
def test_a_secret_with_blanks_backslashes_or_quotes_is_masked_as_messages_quote_it(
    module: str, args: dict[str, Any]
) -> None:
    r = run_module(module, {**args, "_ansible_diff": True}, False)
    assert r["failed"] and r.get("changed") is not True
    shown = json.dumps(r, ensure_ascii=False)
    for part in PASSPHRASE_PARTS:
        assert part not in shown, (part, r)
    assert "********" in shown


@pytest.mark.parametrize(
    ("names", "got"),
    [
        (
            {"vm": ["web01"]},
            "vm must name VMs by name or id (strings), got a list; name several VMs with vms",
        ),
        ({"name": {"id": "web01"}}, "vm must name VMs by name or id (strings), got a dict"),
        ({"vms": ["web01", ["web02"]]}, "vms must name VMs by name or id (strings), got a list"),
        ({"vms": [{"name": "hunter2"}]}, "vms must name VMs by name or id (strings), got a dict"),
        ({"vm": True}, "got a bool"),
        ({"vm": 1.5}, "got a float"),
    ],
)
def test_a_vm_that_is_no_name_is_refused_by_type_not_looked_up(
    esxi: str, names: dict[str, Any], got: str
) -> None:
    for module, extra in (
        ("memory_info", {}),
        ("target", {"size": "8GiB"}),
        ("config", {"reservation": "1GiB"}),
    ):
        r = run_module(module, {"uri": esxi, **names, **extra}, check_mode=False)
        assert r["failed"] and r["code"] == "invalid_request" and r["changed"] is False, r
        assert got in r["msg"] and "hunter2" not in r["msg"], r["msg"]
    assert _reservations(esxi, "web01", "web02") == {"web01": 0, "web02": 0}


def test_a_vm_name_yaml_read_as_a_number_is_still_a_name(esxi: str) -> None:
    r = run_module("target", {"uri": esxi, "vm": 5, "size": "8GiB"}, check_mode=False)
    assert r["failed"] and r["code"] == "vm_not_found" and "'5'" in r["msg"]
    r = run_module("memory_info", {"uri": esxi, "vms": ["web01", "web02"]}, check_mode=False)
    assert not r.get("failed") and [v["name"] for v in r["vms"]] == ["web01", "web02"]


def _targets(uri: str, *names: str) -> dict[str, int | None]:
    with hvballoon.connect(uri) as hv:
        return {s.vm.name: s.target_bytes for s in hv.get_stats(list(names))}


@pytest.mark.parametrize("module", ["target", "config"])
def test_check_mode_says_per_vm_what_would_change_as_the_whole_does(esxi: str, module: str) -> None:
    # a check-mode task with changed=true whose every result said changed=false told nothing
    ask: dict[str, Any] = {"size": "6GiB"} if module == "target" else {"reservation": "2GiB"}
    with hvballoon.connect(esxi) as hv:  # web02 already there: it would not change
        if module == "target":
            hv.set_target("web02", "6GiB")
        else:
            hv.set_config("web02", reservation="2GiB")
    before = (_targets(esxi, "web01", "web02"), _reservations(esxi, "web01", "web02"))
    r = run_module(
        module, {"uri": esxi, "vms": ["web01", "web02"], "_ansible_diff": True, **ask}, check_mode=True
    )
    assert not r.get("failed") and r["changed"] is True
    assert [(x["vm"], x["changed"]) for x in r["results"]] == [("web01", True), ("web02", False)]
    assert [c["changed"] for c in r["changes"]] == [True, False]
    assert [(d["before"] != d["after"]) for d in r["diff"]] == [True, False]
    assert (_targets(esxi, "web01", "web02"), _reservations(esxi, "web01", "web02")) == before
    # the run itself then reports the same, per VM and as a whole
    done = run_module(module, {"uri": esxi, "vms": ["web01", "web02"], **ask}, check_mode=False)
    assert done["changed"] is True
    assert [(x["vm"], x["changed"]) for x in done["results"]] == [("web01", True), ("web02", False)]


def test_check_mode_with_wait_plans_without_waiting(esxi: str) -> None:
    # the SDK refuses wait=True with dry_run=True (nothing would move): a check-mode task that
    # asks to wait plans the change and does not wait, as Ansible's check mode expects
    before = _targets(esxi, "web01")
    args = {"uri": esxi, "vm": "web01", "size": "6GiB", "wait": True, "wait_timeout": 5}
    r = run_module("target", args, check_mode=True)
    assert not r.get("failed"), r
    assert r["changed"] is True and [x["changed"] for x in r["results"]] == [True]
    assert _targets(esxi, "web01") == before


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_check_mode_with_a_refused_vm_says_what_the_run_would_do(esxi: str, skip_invalid: bool) -> None:
    args = {"uri": esxi, "vms": ["web01", "web99"], "size": "6GiB", "skip_invalid": skip_invalid}
    check = run_module("target", args, check_mode=True)
    assert check["failed"]
    assert [(x["vm"], x["changed"]) for x in check["results"]] == [("web01", skip_invalid), ("web99", False)]
    assert check["changed"] is skip_invalid
    run = run_module("target", args, check_mode=False)
    assert run["changed"] is check["changed"]
    assert [(x["vm"], x["changed"]) for x in run["results"]] == [
        (x["vm"], x["changed"]) for x in check["results"]
    ]
    # and the task fails as the run does: some VMs changed and others not is a partial change
    assert check["code"] == run["code"] == ("partial_change" if skip_invalid else "vm_not_found")
    assert check["error"]["details"].get("applied") == run["error"]["details"].get("applied")


@pytest.mark.parametrize(("option", "value"), [("reservation", 4), ("limit", 512), ("reservation", "4")])
def test_config_takes_a_size_without_a_unit_as_the_target_module_does(
    esxi: str, option: str, value: Any
) -> None:
    """``reservation: 4`` (a YAML integer) meant 4GiB: refused as a unit left out, as the
    ``target`` module's ``size: 4`` is, before any VM is changed."""
    r = _config(esxi, vm="web01", **{option: value})
    assert r["failed"] and r["code"] == "invalid_size" and r["changed"] is False
    assert "write the unit" in r["msg"]
    assert _reservations(esxi, "web01") == {"web01": 0}


def test_config_takes_a_yaml_integer_of_bytes_and_minus_one_as_no_limit(esxi: str) -> None:
    r = _config(esxi, vm="web01", reservation=2 * GiB, limit=-1)
    assert not r.get("failed"), r.get("msg")
    assert _reservations(esxi, "web01") == {"web01": 2 * GiB}


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("target", {"vm": "web01", "size": "6GiB"}),
        ("config", {"vm": "web01", "reservation": "2GiB"}),
        ("memory_info", {}),
    ],
)
def test_an_empty_password_is_refused_by_every_module_before_connecting(
    esxi: str, module: str, args: dict[str, Any]
) -> None:
    # password: "{{ vault_password | default('') }}" with the vault variable missing
    r = run_module(module, {"uri": esxi, "password": "", **args}, check_mode=False)
    assert r["failed"] and r["code"] == "invalid_request" and not r.get("changed")
    assert "password is empty" in r["msg"] and "set the password option" in r["msg"]
    assert _reservations(esxi, "web01") == {"web01": 0}


def _undocumented(spec: dict[str, Any], value: Any, path: str) -> list[str]:
    """The keys of ``value`` (a module's result, at any depth) that its RETURN ``spec`` lacks."""
    if isinstance(value, list):
        return [k for item in value for k in _undocumented(spec, item, path + "[]")]
    if not isinstance(value, dict):
        return []
    out = [f"{path}.{k}" for k in value if k not in spec]
    for key, doc in spec.items():
        if key in value and "contains" in doc:
            out += _undocumented(doc["contains"], value[key], f"{path}.{key}")
    return out


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("memory_info", {"gather": ["stats", "config", "capabilities", "host"]}),
        ("target", {"vms": ["web01", "web02"], "size": "9GiB", "wait": True}),
        ("target", {"vms": ["web01", "web99"], "size": "9GiB"}),
        ("config", {"vms": ["web01", "web02"], "reservation": "1GiB"}),
    ],
)
def test_every_key_a_module_returns_is_in_its_return_documentation(
    esxi: str, module: str, args: dict[str, Any]
) -> None:
    import importlib

    import yaml

    doc = yaml.safe_load(
        importlib.import_module(f"ansible_collections.hvballoon.memory.plugins.modules.{module}").RETURN
    )
    r = run_module(module, {"uri": esxi, **args, "_ansible_diff": True}, False)
    common = {"invocation", "warnings", "deprecations", "failed", "msg", "changed", "diff"}
    assert _undocumented(doc, {k: v for k, v in r.items() if k not in common}, "") == []


def test_a_vm_name_utf8_cannot_hold_does_not_fail_the_task(tmp_path: Path) -> None:
    # Hyper-V's names are UTF-16, read through PowerShell's \uXXXX escapes: an unpaired surrogate
    # reaches the result as it is, and Ansible's controller refuses a result UTF-8 cannot hold
    # ("Refusing to deserialize an invalid UTF8 string value"): every VM's read failed for one
    uri = f"fake://seed?state={tmp_path / 'hyperv.db'}&flavor=hyperv"
    with hvballoon.connect(uri) as hv:
        hv.list_vms()
    store = WorldStore(uri.split("state=")[1].split("&")[0], lambda: pytest.fail("the world exists"))
    with store.transaction() as w:
        w.rename(next(g.id for g in w.guests.values() if g.name == "web01"), "web\udc80 01")
    store.close()
    r = run_module("memory_info", {"uri": uri, "gather": ["stats", "config"]}, check_mode=False)
    assert not r.get("failed"), r.get("msg")
    json.dumps(r, ensure_ascii=False).encode("utf-8")  # what the controller reads back
    names = [v["name"] for v in r["vms"]]
    assert "web\ufffd 01" in names and len(names) == 10


def test_a_vm_named_twice_fails_target_and_config_alike(esxi: str) -> None:
    target = run_module("target", {"uri": esxi, "vms": ["web01", "web01"], "size": "6GiB"}, check_mode=False)
    config = run_module("config", {"uri": esxi, "vms": ["web01", "web01"], "limit": "6GiB"}, check_mode=False)
    assert target["code"] == config["code"] == "invalid_request"
    assert target["msg"] == config["msg"] and target["msg"].endswith("vm=web01]"), (target, config)
    assert target["error"]["backend"] == config["error"]["backend"] == "fake"
