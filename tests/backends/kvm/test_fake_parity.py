"""The fake's ``kvm`` flavour against libvirt's test driver, VM for VM: the same shapes.

Each host has a running domain with a balloon, one without (``<memballoon model='none'>``) and
a paused one; what the real backend leaves ``None`` the fake must leave ``None`` too, and the
fake reads a guest's report as stale exactly when the shared rule does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.fake.scenario import parse_scenario
from hvballoon.models import PowerState
from hvballoon.session import Hypervisor
from hvballoon.virtio_balloon import Freshness
from tests.support.libvirt_xml import domain_xml, write_node_xml

pytest.importorskip("libvirt")

CONFIG_FIELDS = ("deflate_on_oom", "free_page_reporting", "stats_period_seconds")
STATS_FIELDS = ("configured_bytes", "current_bytes", "ballooned_bytes")


@pytest.fixture
def real(tmp_path: Path) -> Iterator[Hypervisor]:
    uri = write_node_xml(
        tmp_path / "node.xml",
        [
            domain_xml("on01", memory_mib=4096, period=2),
            domain_xml("plain01", memory_mib=4096, balloon="none"),
            domain_xml("paused01", memory_mib=4096, period=2, runstate=3),
        ],
    )
    with hvballoon.connect(uri) as hv:
        yield hv


@pytest.fixture
def world() -> Iterator[fake.World]:
    scenario = parse_scenario(
        {
            "name": "parity",
            "flavor": "kvm",
            "host": {"physical": "64GiB"},
            "vms": [
                {"name": "on01", "memory": "4GiB", "used": "1GiB", "stats_period": 2},
                {"name": "plain01", "memory": "4GiB", "used": "1GiB", "balloon_device": False},
                {
                    "name": "paused01",
                    "memory": "4GiB",
                    "used": "1GiB",
                    "stats_period": 2,
                    "power_state": "paused",
                },
            ],
        }
    )
    with fake.world(scenario) as w:
        yield w


@pytest.fixture
def simulated(world: fake.World) -> Iterator[Hypervisor]:
    with hvballoon.connect("fake://", world=world) as hv:
        yield hv


@pytest.mark.parametrize("name", ["on01", "plain01", "paused01"])
def test_the_same_config_fields_are_known(real: Hypervisor, simulated: Hypervisor, name: str) -> None:
    want, got = real.get_config(name), simulated.get_config(name)
    for field in CONFIG_FIELDS:
        assert (getattr(got, field) is None) == (getattr(want, field) is None), (
            name,
            field,
            getattr(got, field),
        )
    assert got.extra["balloon_model"] == want.extra["balloon_model"]


@pytest.mark.parametrize("name", ["on01", "plain01", "paused01"])
def test_the_same_stats_fields_are_known(real: Hypervisor, simulated: Hypervisor, name: str) -> None:
    (want,), (got,) = real.get_stats([name]), simulated.get_stats([name])
    assert got.vm.power_state is want.vm.power_state
    for field in STATS_FIELDS:
        assert (getattr(got, field) is None) == (getattr(want, field) is None), (name, field)


def test_a_paused_guest_keeps_its_balloon_and_its_report_ages(
    world: fake.World, simulated: Hypervisor
) -> None:
    # QEMU keeps the guest's last stats and serves them whatever the run state; it asks for the
    # next from a timer on the virtual clock, which stops with the vCPUs (virtio-balloon.c): the
    # report made before the pause is what libvirt reads, and it ages until the VM runs again
    (st,) = simulated.get_stats(["paused01"])
    assert st.vm.power_state is PowerState.PAUSED and st.current_bytes == 4 * 2**30
    assert st.ballooned_bytes == 0
    assert st.guest_used_bytes == 2**30 and st.guest_report_age_seconds == 0 and not st.stale
    limit = Freshness(period=2).stale_after(10)
    world.advance(limit + 1)
    (later,) = simulated.get_stats(["paused01"])
    assert later.guest_used_bytes == st.guest_used_bytes  # the same report: none came since
    assert later.guest_report_age_seconds == limit + 1 and later.stale


def test_a_report_is_stale_after_three_periods_and_two_seconds(
    world: fake.World, simulated: Hypervisor
) -> None:
    limit = Freshness(period=2).stale_after(10)  # the rule the libvirt and QMP backends read by
    world.advance(4)
    world.freeze_reports(None, 3600)
    (start,) = simulated.get_stats(["on01"])
    assert start.guest_report_age_seconds is not None and not start.stale
    world.advance(limit - start.guest_report_age_seconds - 0.5)
    (inside,) = simulated.get_stats(["on01"])
    assert inside.guest_report_age_seconds is not None and inside.guest_report_age_seconds < limit
    assert not inside.stale
    world.advance(1)
    (past,) = simulated.get_stats(["on01"])
    assert past.guest_report_age_seconds is not None and past.guest_report_age_seconds > limit
    assert past.stale


def test_a_stopped_domain_boots_at_its_target_and_a_lower_maximum_takes_it_down(tmp_path: Path) -> None:
    uri = write_node_xml(
        tmp_path / "off.xml", [domain_xml("off01", memory_mib=4096, current_mib=3072, running=False)]
    )
    scenario = parse_scenario(
        {
            "name": "parity-off",
            "flavor": "kvm",
            "host": {"physical": "64GiB"},
            "vms": [
                {
                    "name": "off01",
                    "memory": "4GiB",
                    "used": "1GiB",
                    "target": "3GiB",
                    "power_state": "stopped",
                }
            ],
        }
    )
    GiB = 2**30

    def seen(hv: Hypervisor) -> tuple[int | None, int | None, int | None]:
        cfg, (st,) = hv.get_config("off01"), hv.get_stats(["off01"])
        return cfg.startup_bytes, cfg.maximum_bytes, st.target_bytes

    with (
        hvballoon.connect(uri) as real,
        fake.world(scenario) as w,
        hvballoon.connect("fake://", world=w) as sim,
    ):
        for hv in (real, sim):
            assert seen(hv) == (3 * GiB, 4 * GiB, 3 * GiB), hv.backend_name
            hv.set_config("off01", maximum="2GiB")  # libvirt lowers <currentMemory> with it
            assert seen(hv) == (2 * GiB, 2 * GiB, 2 * GiB), hv.backend_name
            hv.set_target("off01", "1GiB")
            assert seen(hv) == (GiB, 2 * GiB, GiB), hv.backend_name


def test_a_target_on_a_pmsuspended_domain_goes_to_its_live_balloon(tmp_path: Path) -> None:
    """A domain suspended by the guest (pmsuspended, S3) keeps its QEMU process: libvirt counts
    it active, so a target is its live balloon's and the boot size (currentMemory) stays."""
    uri = write_node_xml(tmp_path / "pm.xml", [domain_xml("pm01", memory_mib=4096, period=2, runstate=7)])
    scenario = parse_scenario(
        {
            "name": "parity-pm",
            "flavor": "kvm",
            "host": {"physical": "64GiB"},
            "vms": [{"name": "pm01", "memory": "4GiB", "used": "1GiB", "power_state": "suspended"}],
        }
    )
    GiB = 2**30
    with (
        hvballoon.connect(uri) as real,
        fake.world(scenario) as w,
        hvballoon.connect("fake://", world=w) as sim,
    ):
        for hv in (real, sim):
            assert hv.resolve("pm01").power_state is PowerState.SUSPENDED, hv.backend_name
            hv.set_target("pm01", "3GiB", force=True)
            (st,) = hv.get_stats(["pm01"])
            assert st.target_bytes == 3 * GiB, hv.backend_name
            assert hv.get_config("pm01").startup_bytes == 4 * GiB, hv.backend_name


def test_a_period_set_live_is_forgotten_when_the_domain_stops(tmp_path: Path) -> None:
    """A stats period set on a running domain is the live definition's (the backend's default,
    ``persist=False``): when the domain stops, libvirt keeps its persistent definition, whose
    period is the one it had. A period set on a stopped domain is the definition's, and stays."""
    uri = write_node_xml(
        tmp_path / "period.xml",
        [domain_xml("on01", memory_mib=4096, period=2), domain_xml("off01", period=3, running=False)],
    )
    vms = [
        {"name": "on01", "memory": "4GiB", "used": "1GiB", "stats_period": 2},
        {"name": "off01", "memory": "4GiB", "used": "1GiB", "stats_period": 3, "power_state": "stopped"},
    ]
    scenario = parse_scenario(
        {"name": "parity-period", "flavor": "kvm", "host": {"physical": "64GiB"}, "vms": vms}
    )
    with (
        hvballoon.connect(uri) as real,
        fake.world(scenario) as w,
        hvballoon.connect("fake://", world=w) as sim,
    ):
        for hv, power_off in (
            (real, lambda: real.native.lookupByName("on01").destroy()),
            (sim, lambda: w.power_off(w.guest("on01").id)),
        ):
            hv.set_config("on01", stats_period=7)
            hv.set_config("off01", stats_period=9)
            assert hv.get_config("on01").stats_period_seconds == 7, hv.backend_name
            power_off()
            assert hv.get_config("on01").stats_period_seconds == 2, hv.backend_name
            assert hv.get_config("off01").stats_period_seconds == 9, hv.backend_name


@pytest.mark.parametrize("option", [None, 0, 3])
def test_the_stats_period_option_arms_the_same_period(tmp_path: Path, option: int | None) -> None:
    """``connect(..., stats_period=N)``: the period the first sweep switches on where it is off
    (0: never), the same on the fake's kvm flavour as on libvirt."""
    uri = write_node_xml(
        tmp_path / "option.xml",
        [domain_xml("off01", memory_mib=4096, period=0), domain_xml("set01", period=5)],
    )
    vms = [
        {"name": "off01", "memory": "4GiB", "used": "1GiB", "stats_period": 0},
        {"name": "set01", "memory": "4GiB", "used": "1GiB", "stats_period": 5},
    ]
    scenario = parse_scenario(
        {"name": "parity-option", "flavor": "kvm", "host": {"physical": "64GiB"}, "vms": vms}
    )
    kw = {} if option is None else {"stats_period": option}
    with (
        hvballoon.connect(uri, **kw) as real,
        fake.world(scenario) as w,
        hvballoon.connect("fake://", world=w, **kw) as sim,
    ):
        seen = []
        for hv in (real, sim):
            hv.get_stats()
            seen.append({c.vm.name: c.stats_period_seconds for c in hv.get_configs()})
        assert seen[0] == seen[1]
        assert seen[0] == {"off01": 10 if option is None else option, "set01": 5}


def test_waiting_on_a_domain_without_a_balloon_says_why_there_is_no_target(
    real: Hypervisor, simulated: Hypervisor
) -> None:
    # it said "pass target=", which a domain whose memory cannot move live cannot use
    for hv in (real, simulated):
        with pytest.raises(hvballoon.InvalidRequestError) as caught:
            hv.wait_for_target("plain01", timeout=1)
        assert "none can be set on it live" in caught.value.message, caught.value.message
        assert "balloon" in caught.value.message and "pass target=" not in caught.value.message
        assert caught.value.details["rule"] == "no_balloon_device"


def test_a_vm_of_another_backend_is_refused_as_such_not_as_missing(
    real: Hypervisor, simulated: Hypervisor
) -> None:
    # it was "no domain with UUID …" (VMNotFoundError): as if the VM had gone from this host
    theirs = simulated.resolve("on01")
    before = real.get_stats(["on01"])[0].current_bytes
    for call in (
        lambda: real.get_stats(theirs),
        lambda: real.set_target(theirs, "2GiB"),
        lambda: real.wait_for_target(theirs, timeout=1),
    ):
        with pytest.raises(hvballoon.InvalidRequestError) as caught:
            call()
        assert not isinstance(caught.value, hvballoon.VMNotFoundError)
        said = caught.value.message
        assert "'on01' is a VM of the fake backend" in said and "of the kvm backend" in said, said
    assert real.get_stats(["on01"])[0].current_bytes == before  # nothing was changed
