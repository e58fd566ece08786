"""A VM name that matches no VM names the closest ones the session knows ("did you mean"), and
the same VM named twice in a read is reported once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hvballoon
from hvballoon.errors import AmbiguousVMError, InvalidRequestError, VMNotFoundError
from hvballoon.models import VM
from tests.support.ansible import run_module
from tests.support.calls import counted
from tests.support.cli import invoke
from tests.support.policies import INSTANT


def _missing(hv: hvballoon.Hypervisor, ref: str) -> VMNotFoundError:
    with pytest.raises(VMNotFoundError) as caught:
        hv.get_stats([ref])
    return caught.value


@pytest.mark.parametrize("flavor", ["kvm", "esxi", "hyperv"])
def test_a_name_matching_no_vm_names_up_to_three_close_ones_on_a_fresh_session(flavor: str) -> None:
    with hvballoon.connect(f"fake://seed?flavor={flavor}") as hv:
        err = _missing(hv, "web1")
        assert err.details["close_matches"] == ["web01", "web02", "web03"]
        assert "did you mean 'web01', 'web02', 'web03'?" in err.message and err.vm == "web1"
        # case does not hide a close name; at most three are named
        assert _missing(hv, "DB01x").details["close_matches"][0] == "db01"
        assert len(_missing(hv, "Web0").details["close_matches"]) == 3
        # nothing close: nothing suggested
        err = _missing(hv, "zzzzzz")
        assert err.details["close_matches"] == [] and "did you mean" not in err.message


def test_suggestions_cost_at_most_one_listing_and_none_when_the_session_has_listed() -> None:
    with hvballoon.connect("fake://seed") as hv:
        calls = counted(hv)
        assert _missing(hv, "web1").details["close_matches"]
        assert calls["list_vms"] == 1  # the one listing the names come from, on the error path
        calls.clear()
        assert _missing(hv, "web2x").details["close_matches"]
        assert calls["list_vms"] == 0  # the listing just made still stands
    with hvballoon.connect("fake://seed") as hv:
        hv.list_vms()
        calls = counted(hv)
        assert _missing(hv, "app1").details["close_matches"] == ["app01", "app02"]
        assert calls["list_vms"] == 0
        calls.clear()
        hv.get_stats(["web01"])  # a name found costs no listing
        assert calls["list_vms"] == 0


def test_a_lookup_that_sweeps_every_vm_is_the_listing_suggestions_use() -> None:
    with hvballoon.connect("fake://seed") as hv:
        backend = hv.backend
        every = backend.list_vms()
        backend.lookup_lists_every_vm = True  # as vSphere's look-up, which sweeps every VM
        backend.lookup_vms = lambda refs: list(every)  # type: ignore[method-assign]
        calls = counted(hv)
        assert _missing(hv, "web1").details["close_matches"] == ["web01", "web02", "web03"]
        assert calls["list_vms"] == 0


def test_a_listing_that_fails_leaves_the_not_found_error_as_it_was() -> None:
    with hvballoon.connect("fake://seed", retry=INSTANT) as hv:  # the listing's retries, without waits

        def broken() -> list[VM]:
            raise hvballoon.errors.HVConnectionError("the host went away")

        hv.backend.list_vms = broken  # type: ignore[method-assign]
        err = _missing(hv, "web1")
        assert err.details["close_matches"] == [] and "did you mean" not in err.message


TWINS = """
name: twins
host: {physical: 64GiB}
vms:
  - {name: twin, id: a1, memory: 8GiB, used: 2GiB}
  - {name: twin, id: b2, memory: 8GiB, used: 2GiB}
"""


def test_an_ambiguous_name_is_still_refused_and_a_twin_name_suggested_once(tmp_path: Path) -> None:
    path = tmp_path / "twins.yaml"
    path.write_text(TWINS)
    with hvballoon.connect(f"fake://{path}") as hv:
        with pytest.raises(AmbiguousVMError):
            hv.get_stats(["twin"])
        assert _missing(hv, "twinn").details["close_matches"] == ["twin"]


def test_cli_stats_and_set_name_the_close_vms() -> None:
    r = invoke("stats", "fake://seed", "web01", "web1")
    assert r.returncode == 7 and "did you mean 'web01', 'web02', 'web03'?" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = invoke("stats", "fake://seed", "web1", "--json")
    report = json.loads(r.stderr)
    assert r.returncode == 7 and report["details"]["close_matches"] == {"web1": ["web01", "web02", "web03"]}
    r = invoke("set", "fake://seed", "db1", "4GiB")
    assert r.returncode == 7 and "did you mean 'db01'?" in r.stderr


def test_ansible_names_the_close_vms() -> None:
    r = run_module("target", {"uri": "fake://seed", "vm": "web1", "size": "4GiB"}, True)
    assert r["failed"] and r["code"] == "vm_not_found"
    assert "did you mean 'web01'" in r["msg"]


def test_a_vm_named_twice_in_a_read_is_reported_once_where_first_named() -> None:
    with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        web01 = hv.resolve("web01")
        for refs in (["web01", "web01"], ["web01", web01.id], [web01, "db01", "web01", web01.id.upper()]):
            stats = hv.get_stats(refs)
            assert len({s.vm.id for s in stats}) == len(stats) and stats[0].vm.id == web01.id, refs
            configs = hv.get_configs(refs)
            assert [c.vm.id for c in configs] == [s.vm.id for s in stats], refs
        assert [s.vm.name for s in hv.get_stats(["db01", "web01", "db01"])] == ["db01", "web01"]
        found, missing = hv.find_vms(["web01", web01.id, "nope", "nope"])
        assert [v.name for v in found] == ["web01"] and missing == ["nope"]


def test_cli_and_ansible_report_a_vm_named_twice_once() -> None:
    r = invoke("stats", "fake://seed", "web01", "web01", "db01", "--json")
    assert r.returncode == 0 and [s["vm"]["name"] for s in json.loads(r.stdout)] == ["web01", "db01"]
    r = invoke("config", "fake://seed", "web01", "web01", "--json")
    assert r.returncode == 0 and [c["vm"]["name"] for c in json.loads(r.stdout)] == ["web01"]
    # a change still refuses a VM named twice
    r = invoke("config", "fake://seed", "web01", "web01", "--buffer-percent", "30")
    assert r.returncode != 0 and "named twice" in r.stderr
    with hvballoon.connect("fake://seed") as hv:
        web01 = hv.resolve("web01")
    r = run_module("memory_info", {"uri": "fake://seed", "vms": ["web01", web01.id, "web01"]}, False)
    assert not r.get("failed") and [v["name"] for v in r["vms"]] == ["web01"], r


def test_several_hosts_report_a_vm_named_twice_once_and_name_a_missing_one_once() -> None:
    r = invoke(
        "stats", "fake://seed", "fake://seed?flavor=esxi", "web01", "web01", "web99", "web99", "--json"
    )
    report = json.loads(r.stdout)
    assert r.returncode == 7 and report["missing_vms"] == ["web99"]
    assert [[s["vm"]["name"] for s in h["stats"]] for h in report["hosts"]] == [["web01"], ["web01"]]


def test_one_name_given_alone_to_a_read_of_several_is_one_vm_not_its_letters() -> None:
    with hvballoon.connect("fake://seed") as hv:
        assert [c.vm.name for c in hv.get_configs("web01")] == ["web01"]
        assert [v.name for v in hv.resolve_many("web01")] == ["web01"]
        found, missing = hv.find_vms("web01")
        assert [v.name for v in found] == ["web01"] and missing == []
        web01 = found[0]
        assert [c.vm.id for c in hv.get_configs(web01)] == [web01.id]
        assert hv.find_vms("nosuch") == ([], ["nosuch"])


@pytest.mark.parametrize("refs", [42, 4.5, b"web01", object()])
def test_a_read_given_no_name_nor_list_of_names_is_a_typed_error(refs: object) -> None:
    with hvballoon.connect("fake://seed") as hv:
        for read in (hv.get_stats, hv.get_configs, hv.find_vms, hv.resolve_many):
            with pytest.raises(
                InvalidRequestError, match=r"VMs are named by a name, an id or a VM, or a list"
            ):
                read(refs)  # type: ignore[operator]
