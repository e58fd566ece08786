"""The QMP backend against a real tiny Linux guest under bare QEMU (no libvirt), over QMP.

The guest is the KVM backend's (``tests/support/kvm_guest``: Debian's kernel, a busybox initramfs,
a real virtio-balloon driver), started by ``tests/support/qmp_guest`` as ``qemu-system-x86_64
-accel tcg … -qmp unix:…,server=on,wait=off -device virtio-balloon-pci,id=balloon0`` (Proxmox's
device id), its stats period off as QEMU starts it. One 512 MiB guest serves the module (its
target restored after every test that moves it); the over-inflation and kill tests get their
own. Timings are printed (``-s`` shows them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

import hvballoon
from hvballoon.models import MemoryStats
from hvballoon.session import GuardRails, Hypervisor
from hvballoon.testing.conformance import BackendConformance, KindRuleTests
from tests.support.qmp_guest.harness import QmpGuest, QmpGuestHarness, prerequisites
from tests.support.real_guest import (
    GUEST_VOLATILE_FIELDS,
    fresh,
    kept_as_found,
    over_inflation_is_typed,
    report,
)
from tests.support.require import require

pytestmark = [pytest.mark.peer, pytest.mark.slow]

MiB = 2**20
GUEST_MIB = 512
STATS_PERIOD = 2
MAIN = "hvb-qmp-main"


def _report(label: str, seconds: float) -> None:
    report("qmp", label, seconds)


@pytest.fixture(scope="module")
def harness() -> Iterator[QmpGuestHarness]:
    reasons = prerequisites(guest=True)
    require(not reasons, "; ".join(reasons))
    with QmpGuestHarness() as h:
        yield h


@pytest.fixture(scope="module")
def main_guest(harness: QmpGuestHarness) -> Iterator[QmpGuest]:
    start = time.monotonic()
    g = harness.boot(MAIN, GUEST_MIB, wait=True)
    _report("main guest boot", time.monotonic() - start)
    try:
        yield g
    finally:
        harness.destroy(g)


@pytest.fixture(scope="module")
def keeper(harness: QmpGuestHarness, main_guest: QmpGuest) -> Iterator[Hypervisor]:
    """The module's own session on the harness's directory of sockets."""
    with hvballoon.connect(harness.uri, stats_period=STATS_PERIOD, timeout=30) as hv:
        yield hv


@pytest.fixture(scope="module")
def first_sight(keeper: Hypervisor, main_guest: QmpGuest) -> dict[str, Any]:
    """What the very first sweep saw, with the guest's stats period off until then."""
    before = keeper.get_config(MAIN).stats_period_seconds
    start = time.time()
    (st,) = keeper.get_stats()
    return {"period_before": before, "stats": st, "armed_at": start, "period_after": keeper.get_config(MAIN)}


# -- stats -----------------------------------------------------------------------------------


def test_stats_appear_after_the_period_is_set_and_match_meminfo(
    first_sight: dict[str, Any], keeper: Hypervisor, main_guest: QmpGuest
) -> None:
    assert first_sight["period_before"] == 0  # off, as QEMU starts it
    assert first_sight["period_after"].stats_period_seconds == STATS_PERIOD  # switched on
    st0: MemoryStats = first_sight["stats"]
    assert st0.vm.name == MAIN and st0.vm.id == main_guest.uuid
    assert st0.vm.extra["qemu_pid"] == main_guest.process.pid
    # the report QEMU held was the frozen boot-time one: withheld, never zeros
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
    assert st.host_consumed_bytes is not None and st.host_consumed_bytes > 64 * MiB  # QEMU's RSS
    assert st.guest_report_age_seconds is not None and st.guest_report_age_seconds <= 3 * STATS_PERIOD + 2


# -- moving the balloon ----------------------------------------------------------------------


def test_inflate_to_half_then_deflate(keeper: Hypervisor, main_guest: QmpGuest, first_sight: Any) -> None:
    hv = keeper
    rails = GuardRails(margin_bytes=64 * MiB)  # half of 512 MiB is below the default floor
    before = fresh(hv, MAIN)
    total_kib = main_guest.meminfo()["MemTotal"]
    half = GUEST_MIB // 2 * MiB
    start = time.monotonic()
    change = hv.set_target(MAIN, "256MiB", guard_rails=rails)
    reached = hv.wait_for_target(MAIN, timeout=60, poll_interval=0.05, tolerance=1)  # to the byte
    _report("inflate 512 -> 256 MiB, wait_for_target", time.monotonic() - start)
    assert change.changed and change.after == {"target_bytes": half}
    assert reached.current_bytes == half and reached.ballooned_bytes == half and reached.target_bytes == half
    assert main_guest.meminfo()["MemTotal"] == total_kib - 256 * 1024  # exactly
    # a report from a later second than the one the balloon arrived in (reports carry whole seconds)
    after = fresh(hv, MAIN, since=time.time() + 1)
    assert before.guest_total_bytes is not None
    assert after.guest_total_bytes == before.guest_total_bytes - half
    start = time.monotonic()
    hv.set_target(MAIN, "512MiB")
    back = hv.wait_for_target(MAIN, timeout=60, poll_interval=0.05, tolerance=1)  # to the byte
    _report("deflate 256 -> 512 MiB, wait_for_target", time.monotonic() - start)
    assert back.current_bytes == GUEST_MIB * MiB and back.ballooned_bytes == 0
    assert main_guest.meminfo()["MemTotal"] == total_kib


def test_guard_rail_then_forced_over_inflation_is_a_typed_error(
    harness: QmpGuestHarness, keeper: Hypervisor
) -> None:
    """300 MiB the guest cannot free (tmpfs, no swap) and a 128 MiB target.

    The default guard rail refuses it, with the numbers. Forced, QEMU accepts it without a word;
    the balloon stalls where the guest runs dry, and the guest may then die of it (its QEMU exits,
    ``-no-reboot``, and the socket goes). ``wait_for_target`` must say which, typed, in bounded time.
    """
    with harness.guest("hvb-qmp-overinflate", GUEST_MIB) as g:
        over_inflation_is_typed(keeper, g, GUEST_MIB, "qmp")


def test_killed_qemu_is_a_typed_error_for_every_operation(
    harness: QmpGuestHarness, keeper: Hypervisor
) -> None:
    """The guest's QEMU is killed (SIGKILL: its socket file stays, refusing connections).

    Every operation then ends in bounded time in success (the sweep, without the VM) or in a
    typed error — never a hang, never a qemu.qmp or socket exception.
    """
    hv = keeper
    with harness.guest("hvb-qmp-killed", GUEST_MIB) as g:
        fresh(hv, g.name)
        vm = hv.resolve(g.name)
        g.process.kill()
        assert g.qmp_socket.exists()
        operations: dict[str, Callable[[], object]] = {
            "list": hv.list_vms,
            "bulk stats": hv.get_stats,
            "per-VM stats": lambda: hv.get_stats([vm]),
            "config": lambda: hv.get_config(vm),
            "set_target": lambda: hv.set_target(vm, "384MiB"),
            "set_config": lambda: hv.set_config(vm, stats_period=3),
            "wait_for_target": lambda: hv.wait_for_target(vm, target="384MiB", timeout=10, poll_interval=0.5),
        }
        for what, op in operations.items():
            start = time.monotonic()
            try:
                result = op()
            except hvballoon.HVBalloonError as exc:
                assert exc.code == "vm_not_found", (what, exc.code)
                assert exc.native_code == "ECONNREFUSED", (what, exc.native_code)
            else:
                assert what in ("list", "bulk stats"), what
                assert all(
                    getattr(r, "id", None) != vm.id and getattr(r, "vm", r).id != vm.id for r in result
                )  # type: ignore[attr-defined]
            assert time.monotonic() - start < 10, f"{what} took too long after the kill"


# -- the shared conformance suite, on the real guest -------------------------------------------


class TestRealGuestConformance(BackendConformance):
    """The suite every backend passes, on the real guest (its target restored after each test)."""

    volatile_fields: ClassVar[frozenset[str]] = GUEST_VOLATILE_FIELDS
    wait_timeout: ClassVar[float] = 60.0

    @pytest.fixture
    def hv(self, main_guest: QmpGuest, keeper: Hypervisor, first_sight: Any) -> Iterator[Hypervisor]:
        with kept_as_found(keeper, main_guest, GUEST_MIB) as hv:
            yield hv


class TestRealGuestRules(KindRuleTests):
    """The KVM kind's rules on the real guest through QMP (it runs, with a virtio balloon; the
    balloon-less cases run on the in-test server)."""

    kind_name = "kvm"
    rule_needs: ClassVar[frozenset[str] | None] = frozenset({"running"})

    @pytest.fixture
    def hv(self, main_guest: QmpGuest, keeper: Hypervisor, first_sight: Any) -> Iterator[Hypervisor]:
        with kept_as_found(keeper, main_guest, GUEST_MIB) as hv:
            yield hv
