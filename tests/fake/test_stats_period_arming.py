"""The fake's kvm flavour switches a running guest's stats period on at a session's first read,
as the kvm and qmp backends do (the KVM kind's ``stats_period_to_arm``): libvirt and QEMU leave
it off unless told, and a period that is off freezes the guest's report."""

from __future__ import annotations

from typing import Any

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.errors import InvalidRequestError
from hvballoon.fake.scenario import parse_scenario
from hvballoon.kinds.kvm import DEFAULT_STATS_PERIOD


def _scenario(**vms: dict[str, Any]) -> Any:
    return parse_scenario(
        {
            "name": "arming",
            "host": {"physical": "16GiB"},
            "vms": [{"name": n, "memory": "2GiB", "used": "512MiB", **v} for n, v in vms.items()],
        }
    )


def _periods(hv: hvballoon.Hypervisor) -> dict[str, int | None]:
    return {c.vm.name: c.stats_period_seconds for c in hv.get_configs()}


def test_the_first_read_switches_an_off_period_on_where_the_real_backends_would() -> None:
    scenario = _scenario(
        run={"stats_period": 0},
        paused={"stats_period": 0, "power_state": "paused"},
        stopped={"stats_period": 0, "power_state": "stopped"},
        suspended={"stats_period": 0, "power_state": "suspended"},
        nodevice={"stats_period": 0, "balloon_device": False},
        set5={"stats_period": 5},
    )
    with fake.world(scenario) as w, hvballoon.connect("fake://", world=w) as hv:
        before = _periods(hv)  # reading configurations is not a sighting
        assert before == {
            "run": 0, "paused": 0, "stopped": 0, "suspended": 0, "nodevice": None, "set5": 5,
        }  # fmt: skip
        stats = {s.vm.name: s for s in hv.get_stats()}
        # a period just switched on: no guest figure until the guest reports again
        assert stats["run"].stale and stats["run"].guest_used_bytes is None
        assert _periods(hv) == {**before, "run": DEFAULT_STATS_PERIOD, "paused": DEFAULT_STATS_PERIOD}
        w.advance(DEFAULT_STATS_PERIOD + 1)
        (st,) = hv.get_stats([hv.resolve("run")])
        assert not st.stale and st.guest_used_bytes is not None


def test_a_period_the_caller_set_on_the_running_vm_is_never_switched_back_on() -> None:
    with fake.world(_scenario(a={"stats_period": 10})) as w, hvballoon.connect("fake://", world=w) as hv:
        hv.set_config("a", stats_period=0)
        hv.get_stats()
        assert _periods(hv) == {"a": 0}
        # another session (a later CLI call) sees it off for the first time: it switches it on
        with hvballoon.connect("fake://", world=w) as other:
            other.get_stats()
        assert _periods(hv) == {"a": DEFAULT_STATS_PERIOD}


def test_the_report_frozen_before_the_period_was_switched_on_does_not_count() -> None:
    """A guest that reported, then had its period turned off by another session: the next
    session switches it on and waits for a report newer than the frozen one."""
    with fake.world(_scenario(a={"stats_period": 2})) as w:
        with hvballoon.connect("fake://", world=w) as first:
            w.advance(3)
            first.set_config("a", stats_period=0)
        with hvballoon.connect("fake://", world=w) as hv:
            (st,) = hv.get_stats()
            assert st.guest_report_age_seconds is not None  # the frozen report is there
            assert st.stale and st.guest_used_bytes is None
            w.advance(DEFAULT_STATS_PERIOD)
            (st,) = hv.get_stats()
            assert not st.stale and st.guest_used_bytes is not None


def test_other_flavours_have_no_stats_period_to_switch_on() -> None:
    with fake.world("seed", flavor="esxi") as w, hvballoon.connect("fake://", world=w) as hv:
        hv.get_stats()
        assert {c.stats_period_seconds for c in hv.get_configs()} == {None}


def test_the_stats_period_option_is_the_period_switched_on() -> None:
    with fake.world(_scenario(a={"stats_period": 0}, b={"stats_period": 0})) as w:
        with hvballoon.connect("fake://", world=w, stats_period=0) as hv:
            (st,) = hv.get_stats(["a"])
            assert _periods(hv) == {"a": 0, "b": 0}  # 0: never switched on
            assert st.guest_used_bytes is None
        with hvballoon.connect("fake://", world=w, stats_period=2) as hv:
            hv.get_stats()
            assert _periods(hv) == {"a": 2, "b": 2}
            w.advance(3)
            assert all(s.guest_used_bytes is not None for s in hv.get_stats())


@pytest.mark.parametrize("value", [-1, 2**31, True, "10", 1.5, None])
def test_a_stats_period_option_the_kvm_backend_would_refuse_is_refused(value: object) -> None:
    with fake.world(_scenario(a={"stats_period": 0})) as w:
        with pytest.raises(InvalidRequestError, match="option stats_period must be a whole number"):
            hvballoon.connect("fake://", world=w, stats_period=value)
        with hvballoon.connect("fake://", world=w) as hv:  # nothing armed by the refused session
            assert _periods(hv) == {"a": 0}


@pytest.mark.parametrize("flavor", ["esxi", "hyperv"])
def test_flavours_whose_backend_has_no_stats_period_option_refuse_it(flavor: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"{flavor} flavour takes no stats_period option"):
        hvballoon.connect(f"fake://seed?flavor={flavor}", stats_period=10)
