"""The KVM backend against a real tiny Linux guest with a real virtio-balloon driver.

The guest is booted by the test peer in ``tests/support/kvm_guest`` under libvirt's embedded QEMU
driver (``qemu:///embed?root=…``, no daemon, TCG). One 512 MiB guest serves the module (its
target is restored after every test that moves it); the over-inflation test gets its own,
which it may kill. Two boots in all. Timings are printed (``-s`` shows them).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

import hvballoon
from hvballoon.models import MemoryStats
from hvballoon.session import GuardRails, Hypervisor
from hvballoon.testing.conformance import BackendConformance, KindRuleTests
from tests.support.kvm_guest.harness import GuestHandle, KvmGuestHarness, prerequisites
from tests.support.real_guest import (
    GUEST_VOLATILE_FIELDS,
    fresh,
    kept_as_found,
    one,
    over_inflation_is_typed,
    poll,
    report,
)
from tests.support.require import require

pytestmark = [pytest.mark.peer]

MiB = 2**20
GUEST_MIB = 512
STATS_PERIOD = 2
MAIN = "hvb-kvm-main"


def _report(label: str, seconds: float) -> None:
    report("kvm", label, seconds)


def _connect(h: KvmGuestHarness, **kw: Any) -> Hypervisor:
    return hvballoon.connect(h.uri, stats_period=STATS_PERIOD, timeout=60, **kw)


@pytest.fixture(scope="module")
def harness() -> Iterator[KvmGuestHarness]:
    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))
    start = time.monotonic()
    with KvmGuestHarness() as h:
        _report("harness open", time.monotonic() - start)
        yield h


@pytest.fixture(scope="module")
def main_guest(harness: KvmGuestHarness) -> Iterator[GuestHandle]:
    start = time.monotonic()
    g = harness.boot(MAIN, GUEST_MIB, wait=True, timeout=90)
    _report("main guest boot", time.monotonic() - start)
    try:
        yield g
    finally:
        start = time.monotonic()
        harness.destroy(g)
        _report("main guest destroy", time.monotonic() - start)


@pytest.fixture(scope="module")
def keeper(harness: KvmGuestHarness, main_guest: GuestHandle) -> Iterator[Hypervisor]:
    """The module's own session; its first sweep is the first time hvballoon sees the guest."""
    with _connect(harness) as hv:
        yield hv


@pytest.fixture(scope="module")
def first_sight(keeper: Hypervisor, main_guest: GuestHandle) -> dict[str, Any]:
    """What the very first sweep saw, with the guest's stats period off until then."""
    xml_before = main_guest.domain.XMLDesc(0)
    start = time.time()
    (st,) = keeper.get_stats()
    return {
        "xml_before": xml_before,
        "stats": st,
        "armed_at": start,
        "xml_after": main_guest.domain.XMLDesc(0),
    }


# -- stats -----------------------------------------------------------------------------------


def test_stats_appear_after_the_period_is_set_and_match_meminfo(
    first_sight: dict[str, Any], keeper: Hypervisor, main_guest: GuestHandle
) -> None:
    assert "<stats period" not in first_sight["xml_before"]  # off, as libvirt leaves it
    assert f"<stats period='{STATS_PERIOD}'/>" in first_sight["xml_after"]  # switched on
    st0: MemoryStats = first_sight["stats"]
    # the report libvirt had was the frozen boot-time one: withheld, never zeros
    assert st0.stale and st0.guest_used_bytes is None and st0.guest_total_bytes is None
    assert st0.current_bytes == GUEST_MIB * MiB and st0.configured_bytes == GUEST_MIB * MiB
    start = time.monotonic()
    st = fresh(keeper, MAIN, since=first_sight["armed_at"])
    _report("stats fresh after the period was set", time.monotonic() - start)
    mem = main_guest.meminfo()
    assert st.guest_total_bytes == mem["MemTotal"] * 1024  # to the KiB
    assert st.guest_free_bytes is not None and st.guest_available_bytes is not None
    assert abs(st.guest_free_bytes - mem["MemFree"] * 1024) < 16 * MiB
    assert abs(st.guest_available_bytes - mem["MemAvailable"] * 1024) < 16 * MiB
    assert st.guest_used_bytes is not None and 0 < st.guest_used_bytes < 128 * MiB
    assert st.host_consumed_bytes is not None and st.host_consumed_bytes > 0
    assert st.guest_report_age_seconds is not None and st.guest_report_age_seconds <= 3 * STATS_PERIOD + 2


def test_bulk_equals_per_domain(keeper: Hypervisor, first_sight: dict[str, Any]) -> None:
    fresh(keeper, MAIN)
    moving = {"collected_at", "guest_report_age_seconds", "host_consumed_bytes", "pressure_ratio"}
    for _ in range(5):
        (bulk,) = keeper.get_stats()
        single = one(keeper, MAIN)
        if bulk.extra.get("last_update") == single.extra.get("last_update"):  # same guest report
            assert bulk.model_dump(exclude=moving) == single.model_dump(exclude=moving)
            return
    raise AssertionError("the guest reported between every bulk and per-domain read")


# -- moving the balloon ----------------------------------------------------------------------


def test_inflate_to_half_then_deflate(keeper: Hypervisor, main_guest: GuestHandle, first_sight: Any) -> None:
    hv = keeper
    default_rails = hv.guard_rails
    hv.guard_rails = GuardRails(margin_bytes=64 * MiB)  # half of 512 MiB is below the default floor
    try:
        before = fresh(hv, MAIN)
        total_kib = main_guest.meminfo()["MemTotal"]
        half = GUEST_MIB // 2 * MiB
        start = time.monotonic()
        change = hv.set_target(MAIN, "256MiB")
        reached = hv.wait_for_target(MAIN, timeout=60, poll_interval=0.05, tolerance=1)  # to the byte
        _report("inflate 512 -> 256 MiB, wait_for_target", time.monotonic() - start)
        assert change.changed and change.after == {"target_bytes": half}
        assert reached.current_bytes == half and reached.ballooned_bytes == half
        assert reached.target_bytes == half
        assert main_guest.meminfo()["MemTotal"] == total_kib - 256 * 1024  # exactly
        start = time.monotonic()
        after = fresh(hv, MAIN, since=time.time() + 1)
        _report("guest figures follow the balloon", time.monotonic() - start)
        assert before.guest_total_bytes is not None
        assert after.guest_total_bytes == before.guest_total_bytes - half
        start = time.monotonic()
        hv.set_target(MAIN, "512MiB")
        back = hv.wait_for_target(MAIN, timeout=60, poll_interval=0.05, tolerance=1)  # to the byte
        _report("deflate 256 -> 512 MiB, wait_for_target", time.monotonic() - start)
        assert back.current_bytes == GUEST_MIB * MiB and back.ballooned_bytes == 0
        assert main_guest.meminfo()["MemTotal"] == total_kib
    finally:
        hv.guard_rails = default_rails


def test_guard_rail_then_forced_over_inflation_is_a_typed_error(
    harness: KvmGuestHarness, keeper: Hypervisor
) -> None:
    """300 MiB the guest cannot free (tmpfs, no swap) and a 128 MiB target.

    The default guard rail refuses it, with the numbers. Forced, libvirt accepts it without a
    word; the balloon stalls where the guest runs dry, and the guest may then die of it.
    ``wait_for_target`` must say which, as a typed error, in bounded time.
    """
    start = time.monotonic()
    with harness.guest("hvb-kvm-overinflate", GUEST_MIB) as g:
        _report("over-inflation guest boot", time.monotonic() - start)
        over_inflation_is_typed(keeper, g, GUEST_MIB, "kvm")


def test_killed_qemu_is_a_typed_error_for_every_operation(
    harness: KvmGuestHarness, keeper: Hypervisor
) -> None:
    """The QEMU process of a running guest is killed (SIGKILL) behind libvirt's back.

    Every operation then ends in bounded time in success (the listing, without the VM) or in a
    typed error — never a hang, never a libvirt exception, never a change half-applied.
    """
    hv = keeper
    with harness.guest("hvb-kvm-killed", GUEST_MIB) as g:
        fresh(hv, g.name)
        vm = hv.resolve(g.name)
        # this guest's QEMU by its pid file: a search by name could kill a guest of the same
        # name that another run of the suite on this machine started
        os.kill(g.qemu_pid(), signal.SIGKILL)
        poll(lambda: not g.is_active() or None, 30, "libvirt to notice the killed QEMU")
        operations: dict[str, Callable[[], object]] = {
            "list": hv.list_vms,
            "bulk stats": hv.get_stats,
            "per-VM stats": lambda: hv.get_stats([vm]),
            "set_target": lambda: hv.set_target(vm, "384MiB"),
            "set_config": lambda: hv.set_config(vm, stats_period=3),
            "wait_for_target": lambda: hv.wait_for_target(vm, target="384MiB", timeout=10, poll_interval=0.5),
        }
        for what, op in operations.items():
            start = time.monotonic()
            try:
                result = op()
            except hvballoon.HVBalloonError as exc:  # typed: the guest is gone or no longer running
                assert exc.code in {
                    "vm_not_found",
                    "invalid_state",
                    "stats_unavailable",
                    "balloon_stalled",
                    "wait_timeout",
                    "unsupported",
                }, (what, exc.code)
            else:
                if what == "list":
                    assert all(v.id != vm.id or v.power_state.value != "running" for v in result)  # type: ignore[attr-defined]
            assert time.monotonic() - start < 30, f"{what} took too long after the kill"


def test_a_mark_stays_while_the_domain_is_paused_and_goes_with_the_domain(
    harness: KvmGuestHarness, keeper: Hypervisor
) -> None:
    """On QEMU a mark is the running domain's metadata: a domain paused and resumed is the same
    run (the same QEMU process), so the mark stays; when the domain is destroyed it is gone.
    (Not a reset: the harness's guests are destroyed on reboot, so a reset ends the run.)"""
    hv, key = keeper, "hvballoon.controller.before"
    with harness.guest("hvb-kvm-marked", GUEST_MIB) as g:
        vm = hv.resolve(g.name)
        hv.set_mark(vm, key, str(GUEST_MIB * 2**20))
        assert hv.get_marks(key).get(vm.id) == str(GUEST_MIB * 2**20)
        assert "hvballoon.dev/xmlns/marks/1/" + key in g.domain.XMLDesc(0)
        g.domain.suspend()
        assert hv.get_marks(key).get(vm.id) == str(GUEST_MIB * 2**20)
        g.domain.resume()
        assert hv.get_marks(key).get(vm.id) == str(GUEST_MIB * 2**20)
    marks = hv.get_marks(key)
    assert vm.id not in marks and marks.complete


# -- the host ----------------------------------------------------------------------------------


def _meminfo_kib() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0])
    return out


def test_the_real_guests_host_is_read_from_libvirt(keeper: Hypervisor, main_guest: GuestHandle) -> None:
    """The embedded QEMU driver runs on this machine: its host is this machine's /proc/meminfo."""
    fresh(keeper, MAIN)
    start = time.monotonic()
    (host,) = keeper.get_host_stats()
    _report("host stats", time.monotonic() - start)
    mem = _meminfo_kib()
    assert host.extra["source"] == "getMemoryStats"  # the QEMU driver has node memory stats
    assert host.physical_bytes == mem["MemTotal"] * 1024  # to the KiB
    assert host.free_bytes is not None and host.used_bytes is not None
    assert host.used_bytes + host.free_bytes == host.physical_bytes
    # free = MemFree + Buffers + Cached: what the host hands out without swapping, which moves
    # between two reads; it is near what the kernel calls MemAvailable
    free_now = (mem["MemFree"] + mem["Buffers"] + mem["Cached"]) * 1024
    assert abs(host.free_bytes - free_now) < 256 * MiB
    (st,) = keeper.get_stats([MAIN])
    assert host.vms_running >= 1 and host.vm_configured_bytes is not None
    assert host.vm_configured_bytes >= (st.configured_bytes or 0)
    assert host.ballooned_bytes is not None and host.ballooned_bytes >= (st.ballooned_bytes or 0)
    ksm = "/sys/kernel/mm/ksm/pages_sharing"
    if os.access(ksm, os.R_OK):  # KSM's own count, in base pages
        with open(ksm, encoding="ascii") as f:
            sharing = int(f.read())
        assert host.shared_bytes == sharing * os.sysconf("SC_PAGE_SIZE")
        assert host.extra["ksm_pages_sharing"] == sharing


# -- the shared conformance suite, on the real guest -------------------------------------------


class TestRealGuestConformance(BackendConformance):
    """The suite every backend passes, on the real guest (its target restored after each test)."""

    volatile_fields: ClassVar[frozenset[str]] = GUEST_VOLATILE_FIELDS
    wait_timeout: ClassVar[float] = 60.0

    @pytest.fixture
    def hv(self, main_guest: GuestHandle, keeper: Hypervisor, first_sight: Any) -> Iterator[Hypervisor]:
        # one session for the module: every open of qemu:///embed registers libvirt's QEMU driver
        # again, and libvirt 9 allows about 20 registrations per process
        with kept_as_found(keeper, main_guest, GUEST_MIB) as hv:
            yield hv


class TestRealGuestRules(KindRuleTests):
    """The KVM kind's rules on the real guest, which runs (with a virtio balloon): the cases
    that need a shut-off or balloon-less domain run on libvirt's test driver."""

    kind_name = "kvm"
    rule_needs: ClassVar[frozenset[str] | None] = frozenset({"running"})

    @pytest.fixture
    def hv(self, main_guest: GuestHandle, keeper: Hypervisor, first_sight: Any) -> Iterator[Hypervisor]:
        with kept_as_found(keeper, main_guest, GUEST_MIB) as hv:
            yield hv
