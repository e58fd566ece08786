"""The host's memory picture on the fake: the model, the sums, every byte accounted, the CLI."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

import hvballoon
from hvballoon._uri import parse_uri
from hvballoon.backend import Backend
from hvballoon.errors import InvalidRequestError, InvalidStateError
from hvballoon.hoststats import from_sweep, host_stats, split_by_host, sum_running
from hvballoon.kinds import KVM
from hvballoon.models import (
    VM,
    Capabilities,
    HostStats,
    Mechanism,
    MemoryConfig,
    MemoryStats,
    PowerState,
    json_schemas,
)
from hvballoon.session import Hypervisor
from hvballoon.units import GiB, MiB
from tests.support.cli import invoke
from tests.support.schemas import validate

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def vm_stats(
    name: str, host: str | None = "h1", state: PowerState = PowerState.RUNNING, **fig: Any
) -> MemoryStats:
    fig.setdefault("configured_bytes", 16 * GiB)
    fig.setdefault("current_bytes", 12 * GiB)
    fig.setdefault("ballooned_bytes", 4 * GiB)
    vm = VM(id=name, name=name, backend="mine", host=host, power_state=state)
    return MemoryStats(vm=vm, mechanism=Mechanism.BALLOON, collected_at=AT, **fig)


# -- the model -----------------------------------------------------------------------------------


def test_ratio_is_derived_and_never_an_input() -> None:
    hs = HostStats(
        host="h", backend="b", collected_at=AT, physical_bytes=120 * GiB, vm_configured_bytes=160 * GiB
    )
    assert hs.overcommit_ratio == 1.3333
    dumped = hs.model_dump()
    assert dumped["overcommit_ratio"] == 1.3333
    # a dump (with the ratio, even a wrong one) validates back to the same figures
    assert HostStats.model_validate({**dumped, "overcommit_ratio": 99.0}) == hs
    assert HostStats.model_validate_json(hs.model_dump_json()).overcommit_ratio == 1.3333
    for physical, configured in ((None, GiB), (GiB, None), (0, GiB)):
        unknown = HostStats(
            host="h", backend="b", collected_at=AT, physical_bytes=physical, vm_configured_bytes=configured
        )
        assert unknown.overcommit_ratio is None  # unknown, never 0


def test_model_refuses_bad_figures_and_is_frozen() -> None:
    with pytest.raises(ValidationError):
        HostStats(host="h", backend="b", collected_at=AT, free_bytes=-1)
    with pytest.raises(ValidationError):
        HostStats(host="h", backend="b", collected_at=AT, vms_running=-2)
    with pytest.raises(ValidationError):
        HostStats(host="h", backend="b", collected_at=AT, physical="lots")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        HostStats(host="h", backend="b", collected_at=AT, nonsense=1)  # type: ignore[call-arg]
    hs = HostStats(host="h", backend="b", collected_at=AT)
    with pytest.raises(ValidationError):
        hs.host = "other"  # type: ignore[misc]


def test_json_schema_and_public_name() -> None:
    schema = json_schemas()["HostStats"]
    assert schema["properties"]["overcommit_ratio"]["readOnly"] is True
    assert {"physical_bytes", "ballooned_bytes", "vms_running", "collected_at"} <= set(schema["properties"])
    assert hvballoon.HostStats is HostStats and "HostStats" in hvballoon.__all__


# -- the sums ------------------------------------------------------------------------------------


def test_sums_cover_running_vms_and_unknown_stays_unknown() -> None:
    stats = [
        vm_stats("a"),
        vm_stats("b", current_bytes=10 * GiB, ballooned_bytes=6 * GiB),
        vm_stats("off", state=PowerState.STOPPED, current_bytes=None, ballooned_bytes=None),
        vm_stats("paused", state=PowerState.PAUSED),
    ]
    assert sum_running(stats, "ballooned_bytes") == 10 * GiB
    assert sum_running(stats, "configured_bytes") == 32 * GiB
    assert sum_running([*stats, vm_stats("c", ballooned_bytes=None)], "ballooned_bytes") is None
    assert sum_running([], "ballooned_bytes") == 0  # nothing runs: nothing is held
    hs = host_stats(stats, host="h1", backend="mine", physical_bytes=24 * GiB, free_bytes=2 * GiB)
    assert (hs.vms_running, hs.vm_current_bytes, hs.used_bytes) == (2, 22 * GiB, 22 * GiB)
    assert hs.collected_at == AT
    with pytest.raises(TypeError, match="sums over the VMs"):
        host_stats(stats, host="h1", backend="mine", ballooned_bytes=1)


def test_a_vm_of_unknown_power_state_makes_the_running_sums_unknown() -> None:
    """It may be running: counting it as stopped would show an undercount (a host vCenter lost
    touch with: "0 VMs running") as a fact. The host's own figures stay."""
    stats = [vm_stats("a"), vm_stats("lost", state=PowerState.UNKNOWN)]
    hs = host_stats(stats, host="h1", backend="mine", physical_bytes=24 * GiB, free_bytes=2 * GiB)
    sums = (hs.vms_running, hs.vm_configured_bytes, hs.vm_current_bytes, hs.ballooned_bytes)
    assert sums == (None, None, None, None) and hs.overcommit_ratio is None
    assert (hs.physical_bytes, hs.free_bytes, hs.used_bytes) == (24 * GiB, 2 * GiB, 22 * GiB)
    # on another host of the same sweep, the sums are known
    h1, h2 = from_sweep([*stats, vm_stats("b", host="h2")], backend="mine")
    assert h1.vms_running is None and (h2.vms_running, h2.vm_configured_bytes) == (1, 16 * GiB)


def test_from_sweep_groups_by_host_and_keeps_hosts_without_vms() -> None:
    stats = [vm_stats("a", "h1"), vm_stats("b", "h2"), vm_stats("c", None)]
    assert {k: [s.vm.name for s in v] for k, v in split_by_host(stats, "dflt").items()} == {
        "h1": ["a"],
        "h2": ["b"],
        "dflt": ["c"],
    }
    hosts = from_sweep(
        stats,
        backend="mine",
        default_host="dflt",
        figures={"h3": {"physical_bytes": 64 * GiB}, "h1": {"physical_bytes": 32 * GiB}},
    )
    by = {h.host: h for h in hosts}
    assert [h.host for h in hosts] == ["h3", "h1", "h2", "dflt"]
    assert by["h3"].vms_running == 0 and by["h3"].vm_configured_bytes == 0
    assert by["h1"].overcommit_ratio == 0.5 and by["h2"].physical_bytes is None
    assert from_sweep([], backend="mine", default_host="solo")[0].host == "solo"


@pytest.mark.parametrize(
    ("given", "used", "free"),
    [
        ({"used_bytes": 40 * GiB}, 32 * GiB, 0),  # ESXi: overallMemoryUsage beyond memorySize
        ({"free_bytes": 40 * GiB}, 0, 32 * GiB),  # libvirt: free + buffers + cached beyond total
        ({"used_bytes": 12 * GiB}, 12 * GiB, 20 * GiB),
        ({"free_bytes": 12 * GiB}, 20 * GiB, 12 * GiB),
        ({"used_bytes": 12 * GiB, "free_bytes": 30 * GiB}, 12 * GiB, 20 * GiB),  # used decides
        ({}, None, None),
    ],
)
def test_used_and_free_always_add_up_to_physical(
    given: dict[str, int], used: int | None, free: int | None
) -> None:
    h = host_stats([vm_stats("a")], host="h1", backend="mine", physical_bytes=32 * GiB, **given)
    assert (h.used_bytes, h.free_bytes) == (used, free)
    if used is not None and free is not None:
        assert h.used_bytes + h.free_bytes == h.physical_bytes
    # physical unknown: nothing to split, the figure read is shown as read
    (u,) = from_sweep([], backend="mine", figures={"h1": {"used_bytes": 40 * GiB}})
    assert (u.physical_bytes, u.used_bytes, u.free_bytes) == (None, 40 * GiB, None)


class _Minimal(Backend):
    """A backend that implements only what it must: the host hook is the base class's."""

    name: ClassVar[str] = "minimal"
    schemes: ClassVar[tuple[str, ...]] = ("minimal",)

    @property
    def capabilities(self) -> Capabilities:
        return KVM.capabilities(backend="minimal")

    def list_vms(self) -> list[VM]:
        return [s.vm for s in self.get_stats()]

    def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]:
        return [vm_stats("a", "h1"), vm_stats("b", "h2"), vm_stats("c", None, state=PowerState.STOPPED)]

    def get_config(self, vm: VM) -> MemoryConfig:
        return MemoryConfig(vm=vm, mechanism=Mechanism.BALLOON)

    def apply_target(self, vm: VM, target_bytes: int) -> None:
        raise AssertionError("not used")


def test_the_hook_default_sums_the_sweep_per_host() -> None:
    from hvballoon.backend import ConnectOptions

    uri = parse_uri("minimal://edge01")
    backend = _Minimal(ConnectOptions(uri, password=None, timeout=5, verify=True, ca_file=None, options={}))
    with Hypervisor(backend, uri=uri) as hv:
        hosts = {h.host: h for h in hv.get_host_stats()}
        assert set(hosts) == {"h1", "h2", "edge01"}  # a VM naming no host is the URI's host's
        assert hosts["h1"].vms_running == 1 and hosts["h1"].ballooned_bytes == 4 * GiB
        assert hosts["edge01"].vms_running == 0
        assert all(h.physical_bytes is None and h.overcommit_ratio is None for h in hosts.values())
        assert all(h.backend == "minimal" for h in hosts.values())
    with pytest.raises(InvalidStateError):
        hv.get_host_stats()  # closed


# -- the fake ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavor", "hours"),
    [("kvm", 6), ("esxi", 1), pytest.param("esxi", 6, marks=pytest.mark.slow), ("hyperv", 1)],
)
def test_fake_host_accounts_for_every_byte(flavor: str, hours: int) -> None:
    # the dense scenario overcommits its host: KVM swaps after half an hour, ESXi shares (within
    # the hour) then balloons (by six hours, rebalancing every 15 s: the inner loop stops at one);
    # Hyper-V's Dynamic Memory keeps it out of its page file, and rebalancing every 5 s is the
    # costliest to simulate: an hour shows it as well as six
    with hvballoon.connect(f"fake://dense?flavor={flavor}") as hv:
        hv.backend.world.advance(hours * 3600)
        (h,) = hv.get_host_stats()
        acc = hv.backend.world.accounting()["host"]
        e = h.extra
        assert h.physical_bytes == 120 * GiB == acc["physical"]
        assert h.free_bytes is not None
        total = e["overhead_bytes"] + e["resident_bytes"] + e["compression_cache_bytes"] + h.free_bytes
        assert total == h.physical_bytes, "every byte of the simulated host is accounted for"
        assert e["overhead_bytes"] == acc["overheads"]
        # the overhead figure is the real backend's: ESXi sums its running VMs' overheads
        # (consumedOverheadMemory); libvirt and Get-VM have none
        if flavor == "esxi":
            running = [s for s in hv.get_stats() if s.vm.power_state.value == "running"]
            assert h.hypervisor_overhead_bytes == sum(s.extra["overhead_bytes"] for s in running) > 0
        else:
            assert h.hypervisor_overhead_bytes is None
        assert h.used_bytes == h.physical_bytes - h.free_bytes
        assert e["host_swapped_bytes"] == acc["swapped"]
        if flavor == "kvm":  # libvirt has no host swap figures; KSM does not run in the world
            assert h.swap_used_bytes is None and h.swap_total_bytes is None and h.shared_bytes == 0
        elif flavor == "esxi":  # ESXi swaps and shares per VM: the host's figures are their sums
            stats = hv.get_stats()
            assert h.swap_used_bytes == sum(s.swapped_bytes or 0 for s in stats) == acc["swapped"]
            assert h.shared_bytes == sum(s.shared_bytes or 0 for s in stats) == acc["shared"]
            assert h.shared_bytes > 0 or h.ballooned_bytes
        else:  # Hyper-V: its page file; no page sharing, no balloon figure
            assert h.swap_total_bytes == hv.backend.world.host.swap_bytes
            assert h.swap_used_bytes == acc["swapped"]
            assert h.shared_bytes is None and h.ballooned_bytes is None


def test_fake_host_read_is_one_operation_with_its_own_faults() -> None:
    from hvballoon.errors import HVConnectionError
    from hvballoon.retry import RetryPolicy

    with hvballoon.connect("fake://seed", retry=RetryPolicy(max_attempts=1)) as hv:
        hv.backend.world.faults.add(op="get_stats", kind="timeout")
        (h,) = hv.get_host_stats()  # one transaction of its own, not a get_stats call
        assert h.vms_running == 10
        hv.backend.world.faults.add(op="get_host_stats", kind="connection_lost")
        with pytest.raises(HVConnectionError) as info:
            hv.get_host_stats()
        assert info.value.retryable and info.value.backend == "fake"
    with hvballoon.connect("fake://seed", retry=RetryPolicy(sleep=lambda _s: None)) as hv:
        hv.backend.world.faults.add(op="get_host_stats", kind="connection_lost")
        assert hv.get_host_stats()[0].vms_running == 10  # retried, like every read


def test_given_sweep_is_summed_as_given() -> None:
    with hvballoon.connect("fake://seed") as hv:
        stats = hv.get_stats()
        partial = [s for s in stats if s.vm.name.startswith("web")]
        (h,) = hv.get_host_stats(vm_stats=partial)
        assert h.vms_running == 3 and h.vm_configured_bytes == 48 * GiB
        assert h.physical_bytes == 120 * GiB  # the host's own figures are read either way
        with pytest.raises(InvalidRequestError):
            hv.get_host_stats(vm_stats=[object()])  # type: ignore[list-item]


# -- the command ---------------------------------------------------------------------------------


def test_host_json_of_the_seed_after_balloons_moved(tmp_path: Path) -> None:
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    with hvballoon.connect(uri) as hv:
        for vm, size in (("web01", "8GiB"), ("web02", "10GiB"), ("ci01", "6GiB")):
            hv.set_target(vm, size)
        hv.backend.sleep(120)
    r = invoke("host", uri, "--json")
    assert r.returncode == 0, r.stderr
    (host,) = json.loads(r.stdout)
    validate(host, json_schemas()["HostStats"])
    assert host["physical_bytes"] == 120 * GiB
    assert host["vm_configured_bytes"] == 160 * GiB
    assert round(host["overcommit_ratio"], 2) == 1.33
    stats = json.loads(invoke("stats", uri, "--json").stdout)
    ballooned = sum(s["ballooned_bytes"] for s in stats if s["vm"]["power_state"] == "running")
    assert host["ballooned_bytes"] == ballooned == (8 + 6 + 10) * GiB  # to the byte
    assert host["vm_current_bytes"] == 160 * GiB - ballooned
    assert host["used_bytes"] + host["free_bytes"] == host["physical_bytes"]


def test_host_table_and_errors() -> None:
    r = invoke("host", "fake://seed")
    assert r.returncode == 0, r.stderr
    for cell in ("host01", "120 GiB", "160 GiB", "1.33", "overcommit"):
        assert cell in r.stdout
    assert "swap total" not in r.stdout  # a column nothing fills is left out
    hv_table = invoke("host", "fake://seed?flavor=hyperv").stdout
    assert "swap total" in hv_table and "30 GiB" in hv_table
    bad = invoke("host", "fake://seed?flavor=vmware", "--json")
    assert bad.returncode == 2 and json.loads(bad.stdout)["code"] == "invalid_uri"
    assert invoke("host").returncode == 2  # the URI is required
    schema = json.loads(invoke("schema", "HostStats").stdout)
    assert schema["title"] == "HostStats"


def test_watch_shows_host_rows() -> None:
    r = invoke("watch", "fake://seed", "fake://seed?flavor=esxi", "--count", "1")
    assert r.returncode == 0, r.stderr
    assert "host memory" in r.stdout and "1.33" in r.stdout
    line = invoke("watch", "fake://seed", "--count", "1", "--json").stdout.splitlines()[0]
    (entry,) = json.loads(line)["hosts"]
    (host,) = entry["host_stats"]
    assert host["physical_bytes"] == 120 * GiB and entry["host_error"] is None
    validate(host, json_schemas()["HostStats"])


def test_watch_reports_a_host_error_and_keeps_the_vm_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    from hvballoon.errors import PermissionDeniedError
    from hvballoon.fake.backend import FakeBackend
    from hvballoon.fleet import Fleet

    def refuse(self: FakeBackend, vm_stats: list[MemoryStats] | None = None) -> list[HostStats]:
        raise PermissionDeniedError("the account may not read the host")

    monkeypatch.setattr(FakeBackend, "get_host_stats", refuse)
    with Fleet(["fake://seed"], host_timeout=10, host_stats=True) as fleet:
        (r,) = fleet.sweep()
    assert r.ok and len(r.stats) == 10 and r.hosts == []
    assert r.host_error is not None and r.host_error.code == "permission_denied"
    assert r.to_dict(hosts=True)["host_error"]["code"] == "permission_denied"
    assert "host_stats" not in r.to_dict()


def test_host_metric_figures_are_bytes_of_the_seed() -> None:
    # a sanity figure for the docs' example: 120 GiB host, ten 16 GiB VMs
    with hvballoon.connect("fake://seed") as hv:
        (h,) = hv.get_host_stats()
    assert h.physical_bytes == 120 * GiB and h.vm_configured_bytes == 10 * 16 * GiB
    assert h.vms_running == 10 and h.overcommit_ratio == pytest.approx(160 / 120, abs=1e-4)
    assert h.extra["overhead_bytes"] >= 2 * GiB + 10 * 64 * MiB
    assert h.hypervisor_overhead_bytes is None  # libvirt has no overhead figure (docs/backends/kvm.md)
