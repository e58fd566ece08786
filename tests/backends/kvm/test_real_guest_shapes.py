"""Real QEMU guests of shapes the main real-guest file does not boot: memory hotplug with a DIMM
plugged, and a balloon device whose guest has no balloon driver (libvirt's embedded QEMU
driver, the harness of :mod:`tests.support.kvm_guest`; about 10 s each on TCG)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import hvballoon
from hvballoon.errors import BalloonStalledError, StatsUnavailableError, TargetAboveMaximumError
from tests.support.kvm_guest.harness import KvmGuestHarness, prerequisites
from tests.support.require import require

pytestmark = [pytest.mark.peer, pytest.mark.slow]

MiB = 2**20


@pytest.fixture(scope="module")
def harness() -> Iterator[KvmGuestHarness]:
    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))
    with KvmGuestHarness() as h:
        yield h


def test_a_plugged_dimm_is_part_of_the_maximum_and_of_the_balloon(harness: KvmGuestHarness) -> None:
    # libvirt counts plugged DIMMs in <memory> (virDomainDefGetMemoryTotal: virDomainGetInfo's
    # maxMem and balloon.maximum) and QEMU's balloon works on base + plugged
    with harness.guest("hvb-kvm-dimm", 256, dimm_mib=128) as g, hvballoon.connect(harness.uri) as hv:
        assert g.domain.info()[1] == 384 * 1024 and g.domain.maxMemory() == 384 * 1024
        cfg = hv.get_config("hvb-kvm-dimm")
        assert cfg.maximum_bytes == 384 * MiB and cfg.extra["hotplug_maximum_bytes"] == 4 * 384 * MiB
        assert cfg.extra["numa_nodes"] == 1 and cfg.extra["virtio_mem_bytes"] == 0
        (st,) = hv.get_stats(["hvb-kvm-dimm"])
        assert st.configured_bytes == 384 * MiB and st.current_bytes == 384 * MiB
        hv.set_target("hvb-kvm-dimm", "320MiB", force=True)  # above the base: the DIMM's share
        assert hv.wait_for_target("hvb-kvm-dimm", timeout=30).current_bytes == 320 * MiB
        with pytest.raises(TargetAboveMaximumError):
            hv.set_target("hvb-kvm-dimm", "400MiB", force=True)
        # the maximum is the NUMA cell's plus the DIMM's: it does not change through the balloon API
        with pytest.raises(hvballoon.UnsupportedOperationError) as err:
            hv.set_config("hvb-kvm-dimm", maximum="512MiB", dry_run=True)
        assert err.value.details["rule"] == "maximum_fixed_by_numa"


def test_a_guest_without_its_balloon_driver_is_told_apart(harness: KvmGuestHarness) -> None:
    # QEMU takes the target (the device is there) and the balloon never moves; the guest never
    # reports: the guard rail refuses blind, and a forced target stalls saying why
    extra = "module_blacklist=virtio_balloon"
    with (
        harness.guest("hvb-kvm-nodriver", 256, cmdline_extra=extra) as g,
        hvballoon.connect(harness.uri) as hv,
    ):
        time.sleep(1)
        (st,) = hv.get_stats(["hvb-kvm-nodriver"])
        assert st.stale and st.guest_total_bytes is None and st.current_bytes == 256 * MiB
        with pytest.raises(StatsUnavailableError):
            hv.set_target("hvb-kvm-nodriver", "200MiB")
        hv.set_target("hvb-kvm-nodriver", "200MiB", force=True)
        with pytest.raises(BalloonStalledError) as err:
            hv.wait_for_target("hvb-kvm-nodriver", timeout=30, poll_interval=0.5, stall_after=3)
        assert err.value.details["never_reported"] is True
        assert "balloon driver may not be loaded" in err.value.message
        assert g.domain.memoryStats()["actual"] == 256 * 1024
