"""A session over several hosts (a vCenter cluster): the controller decides each host on its own
memory, with what the policy learned per host, and pools only the VMs whose host is unknown."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon.hoststats import from_sweep
from hvballoon.models import MemoryStats
from hvballoon.policy import Controller, Snapshot
from hvballoon.policy.adaptive import HvballoonPolicy
from hvballoon.policy.base import Plan
from hvballoon.policy.history import _State
from hvballoon.policy.mom import MomPolicy
from hvballoon.session import Hypervisor
from hvballoon.units import GiB

WORLD = """
name: cluster
flavor: kvm
host: {name: host01, physical: 512GiB}
vms:
  - {name: hot1, memory: 16GiB, used: 3GiB, cache: 1GiB, swap: 2GiB}
  - {name: hot2, memory: 16GiB, used: 3GiB, cache: 1GiB, swap: 2GiB}
  - {name: idle1, memory: 16GiB, used: 3GiB, cache: 1GiB, swap: 2GiB}
  - {name: idle2, memory: 16GiB, used: 3GiB, cache: 1GiB, swap: 2GiB}
"""

#: three 256 GiB ESXi hosts: one at 95 %, two at 40 % (the pool: 58 %)
FIGURES = {
    "esx-hot": {"physical_bytes": 256 * GiB, "used_bytes": int(256 * GiB * 0.95)},
    "esx-idle": {"physical_bytes": 256 * GiB, "used_bytes": int(256 * GiB * 0.40)},
    "esx-spare": {"physical_bytes": 256 * GiB, "used_bytes": int(256 * GiB * 0.40)},
}


class Cluster:
    """A fake session whose VMs sit on several hosts (as a vCenter's do): ``placement`` is each
    VM's host by name (moved by assigning it), ``figures`` each host's own memory figures."""

    def __init__(self, hv: Hypervisor, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hv = hv
        self.placement: dict[str, str | None] = {
            "hot1": "esx-hot", "hot2": "esx-hot", "idle1": "esx-idle", "idle2": "esx-idle",
        }  # fmt: skip
        self.figures: dict[str, dict[str, Any]] = {k: dict(v) for k, v in FIGURES.items()}
        backend: Any = hv.backend
        own_vm = backend._vm

        def placed(g: Any) -> Any:
            vm = own_vm(g)
            return vm.model_copy(update={"host": self.placement.get(vm.name)})

        def host_stats(vm_stats: list[MemoryStats] | None = None) -> list[Any]:
            stats = vm_stats if vm_stats is not None else backend.get_stats()
            hosts = from_sweep(stats, backend="fake", default_host="", figures=self.figures)
            return [h for h in hosts if h.host in self.figures]  # only the hosts it knows

        monkeypatch.setattr(backend, "_vm", placed)
        monkeypatch.setattr(backend, "get_host_stats", host_stats)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    path = tmp_path / "cluster.yaml"
    path.write_text(WORLD)
    with hvballoon.connect(f"fake://{path}") as hv:
        yield Cluster(hv, monkeypatch)


def ids_of(cluster: Cluster) -> dict[str, str]:
    return {vm.name: vm.id for vm in cluster.hv.list_vms()}


def by_vm(decisions: Any) -> dict[str, Any]:
    return {d.vm: d for d in decisions}


def test_the_short_host_is_reclaimed_and_the_idle_hosts_are_not(cluster: Cluster) -> None:
    d = by_vm(Controller(cluster.hv, "mom").step())
    # MoM shrinks below 20 % host free: the hot host has 5 %, the pool 42 % (nothing would move)
    for name in ("hot1", "hot2"):
        assert d[name].action == "lower" and d[name].applied, d[name]
        assert d[name].rule == "mom.shrink" and d[name].inputs["host"] == "esx-hot"
        assert d[name].inputs["host_free_fraction"] == pytest.approx(0.05, abs=0.001)
    for name in ("idle1", "idle2"):
        assert d[name].action != "lower" and d[name].inputs["host"] == "esx-idle"
        assert d[name].inputs["host_free_fraction"] == pytest.approx(0.60, abs=0.001)


def test_each_host_gets_its_own_snapshot(cluster: Cluster) -> None:
    seen: list[Snapshot] = []

    class Spy(MomPolicy):
        def decide(self, snapshot: Snapshot, state: Any) -> Plan:
            seen.append(snapshot)
            return super().decide(snapshot, state)

    Controller(cluster.hv, Spy()).step()
    hosts = {tuple(sorted(v.name for v in s.vms)): (s.host.total_bytes, s.host.used_bytes) for s in seen}
    assert hosts == {
        ("hot1", "hot2"): (256 * GiB, int(256 * GiB * 0.95)),
        ("idle1", "idle2"): (256 * GiB, int(256 * GiB * 0.40)),
    }


def test_vms_of_unknown_host_are_decided_on_the_pool(cluster: Cluster) -> None:
    cluster.placement["idle2"] = None
    cluster.placement["hot2"] = "esx-gone"  # a host the session does not report
    seen: dict[tuple[str, ...], Snapshot] = {}

    class Spy(MomPolicy):
        def decide(self, snapshot: Snapshot, state: Any) -> Plan:
            seen[tuple(sorted(v.name for v in snapshot.vms))] = snapshot
            return super().decide(snapshot, state)

    decisions = by_vm(Controller(cluster.hv, Spy()).step())
    assert set(seen) == {("hot1",), ("idle1",), ("hot2", "idle2")}
    pool = seen[("hot2", "idle2")].host
    assert pool.total_bytes == 3 * 256 * GiB
    assert pool.used_bytes == sum(f["used_bytes"] for f in FIGURES.values())
    assert "host" not in decisions["idle2"].inputs and decisions["hot1"].inputs["host"] == "esx-hot"
    assert decisions["hot1"].action == "lower" and decisions["idle2"].action != "lower"


def test_a_host_that_reports_no_use_has_it_derived_from_its_own_vms(cluster: Cluster) -> None:
    from hvballoon.policy import ControllerSettings

    cluster.figures["esx-spare"]["used_bytes"] = None
    cluster.placement["idle2"] = "esx-spare"
    seen: dict[tuple[str, ...], Snapshot] = {}

    class Spy(MomPolicy):
        def decide(self, snapshot: Snapshot, state: Any) -> Plan:
            seen[tuple(sorted(v.name for v in snapshot.vms))] = snapshot
            return super().decide(snapshot, state)

    ctl = Controller(cluster.hv, Spy(), ControllerSettings(host_overhead_bytes="2GiB"))
    ctl.step()
    (idle2,) = (s for s in cluster.hv.get_stats() if s.vm.name == "idle2")
    assert idle2.host_consumed_bytes is not None
    spare = seen[("idle2",)].host
    assert spare.total_bytes == 256 * GiB and spare.used_bytes == 2 * GiB + idle2.host_consumed_bytes
    assert seen[("hot1", "hot2")].host.used_bytes == int(256 * GiB * 0.95)  # reported: as read
    assert ctl.host_states.keys() == {"esx-hot", "esx-idle", "esx-spare"}


def test_the_policy_learns_per_host_and_a_moved_vm_keeps_its_history(cluster: Cluster) -> None:
    ctl = Controller(cluster.hv, HvballoonPolicy(settle_seconds=0))
    for _ in ctl.run(rounds=3):
        pass
    states = ctl.host_states
    assert set(states) == {"esx-hot", "esx-idle"}
    hot, idle = states["esx-hot"], states["esx-idle"]
    assert isinstance(hot, _State) and isinstance(idle, _State)
    assert set(hot.vms) == {ids_of(cluster)[n] for n in ("hot1", "hot2")}
    moved = ids_of(cluster)["idle1"]
    history = idle.vms[moved]
    cluster.placement["idle1"] = "esx-spare"  # vMotion
    decisions = by_vm(ctl.step())
    assert decisions["idle1"].inputs["host"] == "esx-spare"
    spare = ctl.host_states["esx-spare"]
    assert spare.vms[moved].first_at == history.first_at  # its history came along
    assert moved not in ctl.host_states["esx-idle"].vms
    cluster.placement["idle2"] = "esx-spare"  # the last VM leaves: the host is forgotten
    ctl.step()
    assert set(ctl.host_states) == {"esx-hot", "esx-spare"}


def test_mom_carries_a_moved_vms_samples(cluster: Cluster) -> None:
    ctl = Controller(cluster.hv, "mom", dry_run=True)
    ctl.step()
    ctl.step()
    moved = ids_of(cluster)["hot1"]
    assert len(ctl.host_states["esx-hot"].samples[moved]) == 2
    cluster.placement["hot1"] = "esx-idle"
    ctl.step()
    idle, hot = ctl.host_states["esx-idle"], ctl.host_states["esx-hot"]
    assert len(idle.samples[moved]) == 3 and moved not in hot.samples
    assert len(idle.host_free) == 3 and len(hot.host_free) == 3  # each host's own samples


def test_the_round_asked_is_the_soonest_any_host_asks(cluster: Cluster) -> None:
    class Asks(MomPolicy):
        def decide(self, snapshot: Snapshot, state: Any) -> Plan:
            plan = super().decide(snapshot, state)
            soon = 2.0 if any(v.name.startswith("hot") for v in snapshot.vms) else 5.0
            return Plan(plan.proposals, plan.state, next_round_seconds=soon)

    ctl = Controller(cluster.hv, Asks())
    ctl.step()
    assert ctl.next_round_seconds == 2.0


def test_back_to_one_host_the_vms_keep_their_history(cluster: Cluster) -> None:
    ctl = Controller(cluster.hv, HvballoonPolicy(settle_seconds=0))
    ctl.step()
    ids = {ids_of(cluster)[n] for n in ("hot1", "hot2", "idle1", "idle2")}
    cluster.figures = {"esx-hot": cluster.figures["esx-hot"]}
    for name in cluster.placement:
        cluster.placement[name] = "esx-hot"
    cluster.hv.backend.world.advance(10)  # type: ignore[attr-defined]
    ctl.step()
    assert ctl.host_states == {} and set(ctl.state.vms) == ids
    assert all(ctl.state.vms[i].first_at < ctl.state.vms[i].last_at for i in ids)


def test_host_memory_override_keeps_one_host(cluster: Cluster) -> None:
    from hvballoon.policy import ControllerSettings

    ctl = Controller(cluster.hv, "mom", ControllerSettings(host_memory_bytes="512GiB"))
    decisions = ctl.step()
    assert ctl.host_states == {} and all("host" not in d.inputs for d in decisions)
    assert all(d.action != "lower" for d in decisions)  # 64 GiB of VMs on 512 GiB


def test_each_host_round_is_logged_with_its_name(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="hvballoon.policy"):
        Controller(cluster.hv, "mom", dry_run=True).step()
    rounds = {r.host: r for r in caplog.records if getattr(r, "event", None) == "host_round"}  # type: ignore[attr-defined]
    assert set(rounds) == {"esx-hot", "esx-idle"}
    assert rounds["esx-hot"].vms == 2 and "esx-hot" in rounds["esx-hot"].getMessage()  # type: ignore[attr-defined]


def test_a_host_whose_memory_is_unknown_holds_its_vms_and_the_others_are_decided(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A disconnected host (its physical memory unknown) does not stop the fleet: its VMs are
    held, named with it, warned of once; every other host is decided on its own memory."""
    cluster.figures["esx-idle"]["physical_bytes"] = None
    cluster.placement["hot2"] = None  # decided on the pool of the hosts known
    seen: dict[tuple[str, ...], Snapshot] = {}

    class Spy(MomPolicy):
        def decide(self, snapshot: Snapshot, state: Any) -> Plan:
            seen[tuple(sorted(v.name for v in snapshot.vms))] = snapshot
            return super().decide(snapshot, state)

    ctl = Controller(cluster.hv, Spy())
    with caplog.at_level(logging.INFO, logger="hvballoon.policy"):
        rounds = [by_vm(ctl.step()) for _ in range(2)]
    for d in rounds:
        for name in ("idle1", "idle2"):
            assert (d[name].action, d[name].rule) == ("hold", "controller.host_memory_unknown")
            assert "esx-idle" in d[name].reason and d[name].inputs["host"] == "esx-idle"
        assert d["hot1"].rule == "mom.shrink" and d["hot1"].inputs["host"] == "esx-hot"
    assert set(seen) == {("hot1",), ("hot2",)}  # the held VMs reach no policy
    assert seen[("hot2",)].host.total_bytes == 2 * 256 * GiB  # esx-hot and esx-spare
    warned = [r for r in caplog.records if getattr(r, "event", None) == "host_memory_unknown"]
    assert [(r.host, r.vms) for r in warned] == [("esx-idle", 2)]  # type: ignore[attr-defined]
    # connected again: its VMs are decided on its own memory
    cluster.figures["esx-idle"]["physical_bytes"] = 256 * GiB
    with caplog.at_level(logging.INFO, logger="hvballoon.policy"):
        d = by_vm(ctl.step())
    assert d["idle1"].rule != "controller.host_memory_unknown" and d["idle1"].inputs["host"] == "esx-idle"
    assert any(getattr(r, "event", None) == "host_memory_known" for r in caplog.records)


def test_with_no_host_memory_known_the_round_still_asks_for_it(cluster: Cluster) -> None:
    from hvballoon.errors import InvalidRequestError

    for figures in cluster.figures.values():
        figures["physical_bytes"] = None
    with pytest.raises(InvalidRequestError, match="--host-memory"):
        Controller(cluster.hv, "mom").step()


def test_the_static_policy_holds_nothing_for_a_host_it_never_looks_at(cluster: Cluster) -> None:
    cluster.figures["esx-idle"]["physical_bytes"] = None
    d = by_vm(Controller(cluster.hv, "static").step())
    assert all(x.rule != "controller.host_memory_unknown" for x in d.values())


def test_the_metrics_show_what_each_host_was_decided_on(cluster: Cluster) -> None:
    pytest.importorskip("prometheus_client")
    from hvballoon.policy.metrics import ControllerMetrics

    ctl = Controller(cluster.hv, "hvballoon")
    ctl.step()
    # the hot host (95 % used) is short of the policy's reserve of 20 %; the idle one, at 40 %
    # with room for its VMs whole, is held as uncommitted
    hot, idle = ctl.host_figures["esx-hot"], ctl.host_figures["esx-idle"]
    assert hot["host_reserve_bytes"] >= int(0.2 * 256 * GiB) and hot["host_short_bytes"] > 0
    assert idle["host_short_bytes"] == 0 and "host_room_with_every_vm_whole_bytes" in idle
    shown = ControllerMetrics(ctl).render()
    text = shown.decode() if isinstance(shown, bytes) else shown
    series = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("hvballoon_controller_host_") or line.startswith("hvballoon_controller_headroom")
    }

    def value(name: str, host: str) -> float:
        (v,) = [v for k, v in series.items() if k.startswith(name + "{") and f'host="{host}"' in k]
        return v

    assert value("hvballoon_controller_host_short_bytes", "esx-hot") == hot["host_short_bytes"]
    assert value("hvballoon_controller_host_reserve_bytes", "esx-hot") == hot["host_reserve_bytes"]
    assert value("hvballoon_controller_host_uncommitted", "esx-hot") == 0
    assert value("hvballoon_controller_host_uncommitted", "esx-idle") == 1
    assert value("hvballoon_controller_headroom_level", "esx-idle") == idle["headroom_level"]


def test_a_policy_that_carries_no_host_figures_shows_none(cluster: Cluster) -> None:
    pytest.importorskip("prometheus_client")
    from hvballoon.policy.metrics import ControllerMetrics

    ctl = Controller(cluster.hv, "mom")
    ctl.step()
    assert ctl.host_figures == {}
    shown = ControllerMetrics(ctl).render()
    assert b"hvballoon_controller_host_reserve_bytes" not in (
        shown if isinstance(shown, bytes) else shown.encode()
    )


def test_one_host_is_shown_by_its_own_name() -> None:
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, "hvballoon")
        ctl.step()
        (host,) = hv.get_host_stats()
        assert list(ctl.host_figures) == [host.host] and host.host
        assert ctl.host_figures[host.host]["host_free_bytes"] > 0
