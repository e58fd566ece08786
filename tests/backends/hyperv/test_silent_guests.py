"""Guests that tell the host nothing, through the real Hyper-V backend and the loopback WinRM
peer: a VM without integration services (or with them off, or still booting) shows MemoryDemand 0
and an empty MemoryStatus, and Dynamic Memory cannot balance it. Its use reads as unknown, never
as 0; the controller holds it with its reason; and the backend and the fake flavour agree on it."""

from __future__ import annotations

from typing import Any

import pytest

import hvballoon
from hvballoon.errors import InvalidStateError, StatsUnavailableError
from hvballoon.policy import Controller, ControllerSettings
from tests.support.hyperv import scenarios
from tests.support.hyperv.fakehost import hyperv_world
from tests.support.hyperv.peer import Peer
from tests.support.policies import Fixed

pytestmark = pytest.mark.peer  # every test talks to the loopback WinRM server

GiB = 1024**3
SKIP = {"vm", "collected_at"}


def both(peer: Peer) -> tuple[Any, Any, Any]:
    """A session on the peer and one on the fake flavour, both over one ``silent`` world."""
    world = hyperv_world(scenarios.silent())
    peer.host.world = world
    return world, peer.connect(), hvballoon.connect("fake://?flavor=hyperv", world=world)


def test_demand_zero_reads_as_unknown_like_the_fake_flavour(peer: Peer) -> None:
    world, real, fake = both(peer)
    with real as hv, fake:
        for _ in range(2):
            mine = {s.vm.name: s for s in hv.get_stats()}
            theirs = {s.vm.name: s for s in fake.get_stats()}
            for name, st in theirs.items():
                assert mine[name].model_dump(exclude=SKIP) == st.model_dump(exclude=SKIP), name
            for name in ("dm-silent", "static-silent"):
                st = mine[name]
                assert st.stale and st.demand_bytes is None and st.used_bytes is None
                assert st.guest_available_bytes is None and st.pressure_ratio is None
                assert st.extra["memory_status"] is None
                assert "integration services do not report" in st.extra["stats_note"]
            # Dynamic Memory cannot balance it: it keeps its startup memory, its use above that
            # paged out, while the VM beside it is given its demand plus buffer
            assert mine["dm-silent"].current_bytes == 2 * GiB
            assert mine["dm-talks"].current_bytes > 3 * GiB and not mine["dm-talks"].stale
            assert "stats_note" not in mine["dm-talks"].extra
            # the host's figures agree too; what the VMs hold (MemoryAssigned) is summed, what
            # their guests use is not (WMI gives free memory in whole KB: the sub-KiB rest is lost)
            (host,), (fake_host,) = hv.get_host_stats(), fake.get_host_stats()
            skip = {"collected_at", "extra", "host", "backend", "free_bytes", "used_bytes"}
            assert host.model_dump(exclude=skip) == fake_host.model_dump(exclude=skip)
            assert host.free_bytes is not None and fake_host.free_bytes is not None
            assert abs(host.free_bytes - fake_host.free_bytes) < 1024
            assert host.vm_current_bytes == sum(s.current_bytes for s in mine.values())
            world.advance(600)


def test_bulk_targets_are_refused_unforced_and_change_nothing_dynamic_memory_would_undo(peer: Peer) -> None:
    world, real, fake = both(peer)
    with real as hv, fake:
        peer.host.calls.clear()
        # the safe floor of a guest whose use is unknown is unknown: refused, nothing sent
        results = hv.set_targets({"dm-silent": "12GiB", "static-silent": "2GiB"}, skip_invalid=True)
        assert all(isinstance(results[n], StatsUnavailableError) for n in ("dm-silent", "static-silent"))
        assert not results.made and peer.host.calls["set_targets"] == 0
        assert hv.get_config("static-silent").startup_bytes == 4 * GiB
        # forced, a Dynamic Memory maximum rises (configuration) in one bulk command, yet the VM
        # keeps its startup memory: Dynamic Memory does not balance it
        results = hv.set_targets({"dm-silent": "12GiB", "dm-talks": "10GiB"}, force=True)
        assert results.made == {"dm-silent", "dm-talks"} and peer.host.calls["set_targets"] == 1
        world.advance(600)
        (st,) = hv.get_stats(["dm-silent"])
        assert st.current_bytes == 2 * GiB and st.target_bytes == 12 * GiB and st.stale
        assert fake.get_stats(["dm-silent"])[0].model_dump(exclude=SKIP) == st.model_dump(exclude=SKIP)
        # lowering the running Dynamic Memory VM's maximum stays the live rule's refusal
        with pytest.raises(InvalidStateError):
            hv.set_target("dm-silent", "4GiB", force=True)


def test_the_controller_holds_them_with_the_reason(peer: Peer) -> None:
    _, real, fake = both(peer)
    with real as hv, fake:
        settings = ControllerSettings(host_memory_bytes=64 * GiB)
        for session in (hv, fake):
            by_vm = {d.vm: d for d in Controller(session, Fixed(GiB), settings).step()}
            for name in ("dm-silent", "static-silent"):
                d = by_vm[name]
                assert d.action == "hold" and d.rule == "controller.stale_figures", (name, d)
                assert not d.applied
            assert "integration services" in by_vm["dm-silent"].reason
            by_vm = {d.vm: d for d in Controller(session, "hvballoon", settings).step()}
            assert {by_vm[n].rule for n in ("dm-silent", "static-silent")} == {"hvballoon.no_stats"}
        assert hv.get_config("dm-silent").maximum_bytes == 8 * GiB
        assert hv.get_config("static-silent").startup_bytes == 4 * GiB
