"""Marks on KVM domains, on libvirt's test driver: an element per mark in the running domain's
``<metadata>`` (libvirt's formatdomain, "Metadata"), which lasts the domain's run; the fake's
``kvm`` flavour keeps them the same way; the controller and ``hvballoon release --from-marks``
use them as on ESXi."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.errors import BackendError, InvalidStateError, PermissionDeniedError
from hvballoon.fake.scenario import parse_scenario
from hvballoon.policy import Controller, ControllerSettings
from hvballoon.session import Hypervisor
from tests.support.cli import invoke
from tests.support.libvirt_xml import domain_xml, write_node_xml
from tests.support.policies import Fixed

libvirt = pytest.importorskip("libvirt")

KEY = "hvballoon.controller.before"
#: Where the mark is, as libvirt's domain XML shows it (written here, not imported: the test
#: checks what the backend writes).
NS = "https://hvballoon.dev/xmlns/marks/1/" + KEY
GiB = 2**30


def _marks_in(xml: str) -> list[dict[str, str]]:
    """The hvballoon marks in a domain's XML: each element's attributes, with its namespace."""
    out = []
    for el in ET.fromstring(xml).iterfind("./metadata/*"):
        ns, _, tag = el.tag[1:].partition("}")
        out.append({"ns": ns, "tag": tag, **el.attrib})
    return out


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Hypervisor]:
    uri = write_node_xml(
        tmp_path / "marks.xml",
        [
            domain_xml("web01", memory_mib=4096, period=2),
            domain_xml("db01", memory_mib=8192, current_mib=6144, period=2),
            domain_xml("paused01", memory_mib=4096, period=2, runstate=3),
            domain_xml("off01", memory_mib=4096, running=False),
        ],
    )
    with hvballoon.connect(uri, persist=True) as hv:
        yield hv


def test_a_mark_is_an_element_of_the_running_domains_live_metadata(host: Hypervisor) -> None:
    hv = host
    assert hv.capabilities.marks
    ids = {v.name: v.id for v in hv.list_vms()}
    assert hv.get_marks(KEY) == {} and hv.get_marks(KEY).complete
    hv.set_mark("web01", KEY, str(4 * GiB))
    hv.set_mark("paused01", KEY, "unlimited")
    hv.set_mark("web01", "hvballoon.other", "a <b> & 'c'")
    assert hv.get_marks(KEY) == {ids["web01"]: str(4 * GiB), ids["paused01"]: "unlimited"}
    assert hv.get_marks("hvballoon.other") == {ids["web01"]: "a <b> & 'c'"}
    web01 = hv.native.lookupByName("web01")
    assert _marks_in(web01.XMLDesc(0)) == [
        {"ns": NS, "tag": "mark", "key": KEY, "value": str(4 * GiB)},
        {
            "ns": NS.replace(KEY, "hvballoon.other"),
            "tag": "mark",
            "key": "hvballoon.other",
            "value": "a <b> & 'c'",
        },
    ]
    # the live definition only, even with persist=True: the mark must not outlive the run
    assert _marks_in(web01.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) == []
    hv.set_mark("web01", KEY, "12345")  # replaced, not added beside the old value
    assert [m["value"] for m in _marks_in(web01.XMLDesc(0)) if m["key"] == KEY] == ["12345"]
    hv.set_mark("web01", KEY, None)
    assert hv.get_marks(KEY) == {ids["paused01"]: "unlimited"}
    assert hv.get_marks("hvballoon.other") == {ids["web01"]: "a <b> & 'c'"}  # the other mark stays
    hv.set_mark("web01", KEY, None)  # removing what is not there changes nothing
    # a mark leaves the domain's memory alone
    assert hv.get_config("web01").maximum_bytes == 4 * GiB


def _parity_world() -> fake.World:
    vms = [
        {"name": "web01", "memory": "4GiB", "used": "1GiB", "stats_period": 2},
        {"name": "paused01", "memory": "4GiB", "used": "1GiB", "stats_period": 2, "power_state": "paused"},
        {"name": "off01", "memory": "4GiB", "used": "1GiB", "power_state": "stopped"},
    ]
    return fake.world(
        parse_scenario({"name": "parity-marks", "flavor": "kvm", "host": {"physical": "64GiB"}, "vms": vms})
    )


def test_a_mark_lasts_one_run_on_libvirt_and_on_the_fake(host: Hypervisor) -> None:
    """Marked while it runs, a domain that stops has no mark, and starts again without it; a
    stopped domain is not marked (the kind's rule), and removing its mark changes nothing.
    The fake's kvm flavour answers the same, call for call."""
    real = host
    with _parity_world() as w, hvballoon.connect("fake://", world=w) as sim:
        for hv, stop, start in (
            (real, lambda: real.native.lookupByName("web01").destroy(), lambda: real.native.lookupByName("web01").create()),
            (sim, lambda: w.power_off(w.guest("web01").id), lambda: w.power_on(w.guest("web01").id)),
        ):  # fmt: skip
            name = hv.backend_name
            hv.set_mark("web01", KEY, "1")
            hv.set_mark("paused01", KEY, "2")
            assert sorted(hv.get_marks(KEY).values()) == ["1", "2"], name
            stop()
            marks = hv.get_marks(KEY)
            assert marks.complete and sorted(marks.values()) == ["2"], name
            hv.set_mark("web01", KEY, None)  # nothing to remove
            for vm in ("web01", "off01"):
                with pytest.raises(InvalidStateError, match="powered off") as info:
                    hv.set_mark(vm, KEY, "3")
                assert info.value.details["rule"] == "marks_only_while_running", name
                assert info.value.vm == vm
            start()
            assert sorted(hv.get_marks(KEY).values()) == ["2"], name  # a new run starts unmarked


def test_a_read_only_session_reads_marks_and_writes_none() -> None:
    with hvballoon.connect("test:///default") as rw:
        rw.set_mark("test", KEY, "1")
        try:
            with hvballoon.connect("test:///default", read_only=True) as ro:
                assert ro.capabilities.marks
                assert ro.get_marks(KEY) == {rw.resolve("test").id: "1"}
                for value in ("2", None):
                    with pytest.raises(PermissionDeniedError):
                        ro.set_mark("test", KEY, value)
            assert rw.get_marks(KEY) == {rw.resolve("test").id: "1"}
        finally:
            rw.set_mark("test", KEY, None)  # libvirt's default host outlives the connection


def test_metadata_under_the_marks_namespace_that_is_no_mark_is_unreadable(host: Hypervisor) -> None:
    """Another program's element under the mark's namespace: that domain's mark is not known
    (``unreadable``, a typed error naming it), the others are read."""
    hv = host
    ids = {v.name: v.id for v in hv.list_vms()}
    hv.set_mark("db01", KEY, "7")
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
    hv.native.lookupByName("web01").setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, "<other/>", "x", NS, flags
    )
    marks = hv.get_marks(KEY)
    assert marks == {ids["db01"]: "7"} and not marks.complete
    error = marks.unreadable[ids["web01"]]
    assert (
        isinstance(error, BackendError) and error.vm == "web01" and "not an hvballoon mark" in error.message
    )


def test_the_controller_marks_on_kvm_and_a_release_from_the_marks_alone_gives_back() -> None:
    """The controller lowers the running domain and marks it with what it had; a controller
    that lost its journal adopts it from the mark (in the run it is in); ``hvballoon release
    --from-marks`` finds it by its mark alone and gives it back, mark removed."""
    with hvballoon.connect("test:///default") as hv:
        vm = hv.resolve("test")
        before = hv.get_stats([vm])[0].current_bytes
        assert before == 2 * GiB
        try:
            _lower_adopt_release(hv, vm.id, before)
        finally:  # libvirt's default host outlives the connection: leave it as it was
            hv.set_mark("test", KEY, None)
            hv.native.lookupByName("test").setMemoryFlags(before // 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE)


def _lower_adopt_release(hv: Hypervisor, vm_id: str, before: int) -> None:
    """Lower and mark, adopt from the mark, release from the mark alone."""
    ctl = Controller(hv, Fixed(GiB + GiB // 2), ControllerSettings(host_memory_bytes="64GiB"))
    (decision,) = ctl.step()
    assert decision.action == "lower" and decision.applied, decision.reason
    assert hv.get_marks(KEY) == {vm_id: str(before)}
    lost = Controller(hv, "static", ControllerSettings(host_memory_bytes="64GiB"))  # moves nothing
    (held,) = lost.step()
    assert held.action == "hold"
    (entry,) = lost.journal.lowered()
    assert (entry.vm, entry.before_bytes, entry.marked) == ("test", before, True)
    assert entry.run == str(hv.native.lookupByName("test").ID())
    r = invoke("release", "test:///default", "--from-marks", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [(v["vm"], v["action"], v["source"]) for v in report["vms"]] == [("test", "released", "marks")]
    assert hv.get_stats([vm_id])[0].current_bytes == before
    assert hv.get_marks(KEY) == {}
