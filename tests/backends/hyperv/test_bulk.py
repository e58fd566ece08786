"""The Hyper-V backend's bulk paths on the loopback WinRM peer: many targets in one command
(split at the command-line limit), each VM's refusal its own, names looked up in one Get-VM."""

from __future__ import annotations

from typing import Any

import pytest

from hvballoon.backends.hyperv._scripts import MAX_COMMAND_LINE, SET_TARGETS, data_of, data_pattern
from hvballoon.backends.hyperv.backend import HyperVBackend
from hvballoon.errors import (
    InvalidStateError,
    PartialChangeError,
    TargetNotObservableWarning,
    VMNotFoundError,
)
from hvballoon.models import ConfigUpdate
from hvballoon.units import GiB
from tests.support.hyperv import scenarios
from tests.support.hyperv.fakehost import hyperv_world
from tests.support.hyperv.peer import Peer
from tests.support.winrm.server import decode_command_line

pytestmark = pytest.mark.peer


def moves(hv: Any) -> dict[str, int]:
    """A target every VM accepts: Dynamic Memory VMs' maximum raised by 2 GiB, static VMs 12 GiB."""
    out = {}
    for st in hv.get_stats():
        dynamic = st.vm.extra["dynamic"]
        out[st.vm.name] = (st.target_bytes or 0) + 2 * GiB if dynamic else 12 * GiB
    return out


def sent_batches(peer: Peer) -> list[list[dict[str, Any]]]:
    pattern = data_pattern(SET_TARGETS)
    return [
        SET_TARGETS.decode(data_of(SET_TARGETS, r.script))["t"]
        for r in peer.server.history
        if pattern.fullmatch(r.script)
    ]


def test_fifty_vms_move_in_one_command(basic_peer: Peer) -> None:
    basic_peer.host.world = hyperv_world(scenarios.sweep(50))
    with basic_peer.connect() as hv:
        wanted = moves(hv)
        basic_peer.server.reset_counts()
        res = hv.set_targets(wanted, force=True)
        counts = basic_peer.server.counts()
        assert res.ok and res.made == set(wanted)
        # one READ (stats and configs of the 50) and one SET_TARGETS: Command, Receive, Signal each
        assert counts == {"Command": 2, "Receive": 2, "Signal": 2}
        assert basic_peer.host.calls["set_targets"] == 1 and basic_peer.host.calls["set_memory"] == 0
        after = {s.vm.name: s.target_bytes for s in hv.get_stats()}
        assert after == wanted


def test_more_than_fit_are_split_at_the_command_line_limit(basic_peer: Peer) -> None:
    basic_peer.host.world = hyperv_world(scenarios.sweep(130))
    with basic_peer.connect() as hv:
        wanted = moves(hv)
        res = hv.set_targets(wanted, force=True)
        assert res.ok and res.made == set(wanted)
        batches = sent_batches(basic_peer)
        assert len(batches) == 3 and sum(len(b) for b in batches) == 130
        for record in basic_peer.server.history:
            assert len(record.command_line) <= MAX_COMMAND_LINE
        assert {s.vm.name: s.target_bytes for s in hv.get_stats()} == wanted


def test_a_refusal_on_the_host_is_that_vms_alone(basic_peer: Peer) -> None:
    basic_peer.host.world = hyperv_world(scenarios.rules())
    with basic_peer.connect() as hv:
        backend: HyperVBackend = hv.backend
        static, dm = hv.resolve_many(["static-on", "dm-on"])
        before = hv.get_config(dm).maximum_bytes
        assert before is not None
        # past the session's checks, as a caller of the backend could: the host refuses the
        # static resize it cannot back, and applies the other
        from hvballoon.backend import TargetRequest

        answers = backend.apply_targets(
            [TargetRequest(static, 60 * GiB), TargetRequest(dm, before + 2 * GiB)]
        )  # 60 GiB: below the host's 64 GiB, more than it has free
        assert isinstance(answers[0], InvalidStateError) and answers[0].vm == "static-on"
        assert answers[0].native_code is not None and answers[1] is None
        assert hv.get_config(dm).maximum_bytes == before + 2 * GiB
        # through the session: the refusal and the change, told apart
        res = hv.set_targets({"static-on": "60GiB", "dm-on": before + 4 * GiB}, force=True)
        assert res.made == {"dm-on"} and isinstance(res["static-on"], InvalidStateError)
        assert isinstance(res.error, PartialChangeError)


def test_a_vm_removed_on_the_host_fails_alone(basic_peer: Peer) -> None:
    basic_peer.host.world = hyperv_world(scenarios.sweep(4))
    with basic_peer.connect() as hv:
        vms = hv.resolve_many(["vm0000", "vm0001"])
        basic_peer.host.world.vanish(vms[1].id)
        from hvballoon.backend import TargetRequest

        answers = hv.backend.apply_targets([TargetRequest(vm, 20 * GiB) for vm in vms])
        assert answers[0] is None and isinstance(answers[1], VMNotFoundError)


def test_names_are_looked_up_in_one_filtered_get_vm(basic_peer: Peer) -> None:
    basic_peer.host.world = hyperv_world(scenarios.sweep(30))
    with basic_peer.connect() as hv:
        some = hv.backend.list_vms()[7]
        basic_peer.server.reset_counts()
        basic_peer.host.calls.clear()
        found = hv.backend.lookup_vms(["vm0003", "VM0004", some.id, "nosuch"])
        # the host compares names without case; the backend keeps exact matches only
        assert sorted(v.name for v in found) == ["vm0003", some.name]
        assert basic_peer.host.calls == {"read": 1}
        # a new session resolves a name without listing every VM
        with basic_peer.connect() as fresh:
            basic_peer.server.reset_counts()
            basic_peer.host.calls.clear()
            fresh.set_target("vm0001", 12 * GiB, force=True)  # a static VM
            assert basic_peer.host.calls == {"read": 2, "set_targets": 1}


def test_hostile_names_and_ids_travel_as_data_in_a_batch(basic_peer: Peer) -> None:
    basic_peer.host.world = hyperv_world(scenarios.hostile())
    with basic_peer.connect() as hv:
        stats = hv.get_stats()
        wanted = {st.vm.id: (st.target_bytes or 0) + 2 * GiB for st in stats if st.vm.extra["dynamic"]}
        assert len(wanted) >= 2
        res = hv.set_targets(wanted, force=True)
        assert res.ok and res.made == set(wanted)
        for record in basic_peer.server.history:
            script = decode_command_line(record.command_line)
            for name in (*scenarios.HOSTILE_NAMES[1:], scenarios.HOSTILE_ID):
                assert name not in script


def test_a_vm_whose_dynamic_memory_was_switched_since_it_was_read_is_refused(basic_peer: Peer) -> None:
    basic_peer.host.world = hyperv_world(scenarios.rules())
    with basic_peer.connect() as hv:
        from hvballoon.backend import TargetRequest

        stale = hv.resolve("static-off")  # read as static: its target is the startup size
        assert stale.extra["dynamic"] is False
        world = basic_peer.host.world
        world.set_config(
            stale.id, ConfigUpdate(dynamic=True, minimum_bytes=512 * 2**20, maximum_bytes=8 * GiB)
        )
        (answer,) = hv.backend.apply_targets([TargetRequest(stale, 4 * GiB)])
        assert isinstance(answer, InvalidStateError) and answer.native_code == "HVBalloonStateChanged"
        cfg = hv.get_config("static-off")
        assert cfg.dynamic and cfg.maximum_bytes == 8 * GiB  # nothing was changed


def test_targets_of_vms_that_do_not_run_are_not_waited_for(basic_peer: Peer) -> None:
    # the host applies them (configuration), and nothing moves the memory until the VM runs
    basic_peer.host.world = hyperv_world(scenarios.idle())
    idle = [f"static-{state}" for state in ("stopped", "paused", "suspended")]
    with basic_peer.connect() as hv:
        res = hv.set_targets(dict.fromkeys(idle, 10 * GiB), wait=True, wait_timeout=3)
        assert res.ok, res
        for name in idle:
            assert any("nothing to wait for" in w for w in res[name].warnings), res[name]
        with pytest.warns(TargetNotObservableWarning, match="is paused"):
            stats = hv.wait_for_target("static-paused", timeout=3)
        assert stats.target_bytes == 10 * GiB


def test_a_vm_id_written_in_upper_case_or_braced_is_found(basic_peer: Peer) -> None:
    # Get-VM writes an Id in lower case; WMI and the VM's files write the same GUID in upper case
    with basic_peer.connect() as hv:
        vm = hv.list_vms()[0]
    for ref in (vm.id.upper(), "{" + vm.id.upper() + "}"):
        with basic_peer.connect() as hv:  # a new session: the look-up goes to the host
            assert hv.resolve(ref).id == vm.id
            assert [s.vm.id for s in hv.get_stats([ref])] == [vm.id]
