"""The fake's flavour of each kind against a real peer of it, on random operation sequences.

For each kind, Hypothesis draws a small fleet (2–4 VMs of varied sizes, power states, devices and
settings) and a sequence of public operations — targets and configuration changes with valid,
boundary and invalid values, dry runs, changes planned by a dry run first (the plan must be what
the change did), bulk calls with ``skip_invalid``, VMs powered off behind the session's back, one
VM's stats, configuration or capabilities read alone (a VM that does not exist, or named in
another case, refused alike) — and :func:`tests.support.differential.run_sequence` applies it to the fake
(``fake://`` on a world built from the same fleet) and to the peer, asserting after every step
that both ended alike and now look alike.

The peers: libvirt's test driver (KVM), the vSphere simulator (ESXi), the loopback WinRM server
answering like Set-VMMemory (Hyper-V). Each draws a few dozen examples, derandomized, so CI runs
the same ones. Run them hard with ``HVBALLOON_DIFF_EXAMPLES=1000 HVBALLOON_DIFF_SEED=<n>``
(random examples from seed ``n``)::

    HVBALLOON_DIFF_EXAMPLES=1000 HVBALLOON_DIFF_SEED=7 python -m pytest tests/differential -k kvm

Set aside, with the reason where it is done: guest figures (each side's guest is its own), ids,
timing. (A running domain's target, which libvirt shows only to the session that set it, is
compared: the fake's kvm flavour shows it the same way.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import hvballoon
from hvballoon import fake
from hvballoon.fake.randomized import started_in_turn
from hvballoon.fake.scenario import parse_scenario
from hvballoon.models import ConfigUpdate
from tests.support.differential import POOL_KEYS, Normalise, Op, Side, run_sequence

pytestmark = [pytest.mark.peer, pytest.mark.slow]

MiB, GiB = 2**20, 2**30
EXAMPLES = int(os.environ.get("HVBALLOON_DIFF_EXAMPLES", "0"))
SEED = os.environ.get("HVBALLOON_DIFF_SEED")


def kvm_scenario(
    name: str, fleet: list[dict[str, Any]], own: Callable[[dict[str, Any]], dict[str, Any]]
) -> Any:
    """The fake's kvm scenario of ``fleet`` (each VM's sizes, state and balloon device, plus what
    ``own`` adds for the peer it is compared with)."""
    return parse_scenario(
        {
            "name": name,
            "flavor": "kvm",
            "host": {"physical": "64GiB"},
            "vms": [
                {
                    "name": v["name"],
                    "memory": f"{v['memory']}MiB",
                    "used": f"{v['memory'] // 4}MiB",
                    "target": f"{v['current']}MiB",
                    "power_state": v["state"],
                    "balloon_device": v["balloon"],
                    **own(v),
                }
                for v in fleet
            ],
        }
    )


def budget(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``examples`` derandomized examples (the same in every run, no example database), or what
    ``HVBALLOON_DIFF_EXAMPLES`` asks for, drawn from ``HVBALLOON_DIFF_SEED`` when it is set."""
    chosen = settings(
        max_examples=EXAMPLES or examples,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )

    def wrap(test: Callable[..., None]) -> Callable[..., None]:
        return chosen(test) if SEED is None else seed(int(SEED))(chosen(test))

    return wrap


# -- values ---------------------------------------------------------------------------------------

#: Deltas around a VM's own figures: the alignment boundaries of every kind (KiB, 2 MiB, 4 MiB).
DELTAS = [-GiB, -512 * MiB, -4 * MiB, -2 * MiB, -MiB, -1024, -512, 0, 512, 1024, MiB, 2 * MiB, 4 * MiB, GiB]
ABSOLUTE = [
    0,
    1,
    16 * MiB,
    32 * MiB,
    256 * MiB,
    GiB,
    GiB + 512,
    2 * GiB + 2 * MiB,
    3 * GiB,
    6 * GiB,
    64 * GiB,
]
ALL_KEYWORDS = [o.keyword for o in ConfigUpdate.options()]
INTS = [-1, 0, 1, 4, 5, 7, 50, 100, 101, 1000, 2000, 2001, 2**31]


def sizes(fields: list[str]) -> st.SearchStrategy[Any]:
    relative = st.tuples(st.sampled_from(fields), st.sampled_from(DELTAS))
    absolute = st.sampled_from(ABSOLUTE)
    invalid = st.sampled_from(["4GiB", "banana", "-1GiB"])
    return st.one_of(relative, relative, relative, relative, absolute, absolute, absolute, invalid)


def config_values(size: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    out: dict[str, st.SearchStrategy[Any]] = {}
    for o in ConfigUpdate.options():
        if o.kind == "size":
            out[o.keyword] = st.one_of(size, st.just("unlimited")) if o.unlimited else size
        elif o.kind == "int":
            out[o.keyword] = st.sampled_from(INTS)
        elif o.kind == "bool":
            out[o.keyword] = st.booleans()
        else:
            out[o.keyword] = st.sampled_from(["low", "normal", "high", "custom", "bogus"])
    return out


def ops(
    n_vms: int, size: st.SearchStrategy[Any], keywords: list[str], power: bool = True
) -> st.SearchStrategy[list[Op]]:
    values = config_values(size)
    # now and then a VM that does not exist (the index past the fleet)
    vm = st.one_of(*[st.integers(0, n_vms - 1)] * 8, st.just(n_vms))

    @st.composite
    def config(draw: st.DrawFn) -> dict[str, Any]:
        # mostly the kind's own options, sometimes any (another kind's are refused alike)
        keyword = st.one_of(*[st.sampled_from(keywords)] * 4, st.sampled_from(ALL_KEYWORDS))
        chosen = draw(st.lists(keyword, min_size=1, max_size=3, unique=True))
        return {k: draw(values[k]) for k in chosen}

    @st.composite
    def many(draw: st.DrawFn, value: st.SearchStrategy[Any]) -> tuple[tuple[int, ...], tuple[Any, ...]]:
        picked = draw(
            st.lists(vm, min_size=1, max_size=n_vms, unique=draw(st.booleans()) or draw(st.booleans()))
        )
        return tuple(picked), tuple(draw(value) for _ in picked)

    flag = st.booleans()
    one = st.one_of(
        st.builds(lambda i, v, f, d: Op("target", (i,), (v,), force=f, dry_run=d), vm, size, flag, flag),
        st.builds(
            lambda m, f, d, s: Op("targets", m[0], m[1], force=f, dry_run=d, skip_invalid=s),
            many(size),
            flag,
            flag,
            flag,
        ),
        st.builds(lambda i, c, d: Op("config", (i,), (c,), dry_run=d), vm, config(), flag),
        st.builds(lambda i, c, d: Op("config", (i,), (c,), dry_run=d), vm, config(), flag),
        st.builds(
            lambda m, d, s: Op("configs", m[0], m[1], dry_run=d, skip_invalid=s), many(config()), flag, flag
        ),
        *([st.builds(lambda i: Op("power_off", (i,), (None,)), vm)] if power else []),
        # one VM's stats, configuration or capabilities read alone: found, or refused alike
        st.builds(
            lambda i, w: Op("read", (i,), (w,)), vm, st.sampled_from(["stats", "config", "capabilities"])
        ),
    )
    # mostly by name; now and then by each side's id, or by the name in another case
    ref = st.sampled_from(["name"] * 6 + ["id", "case"])
    # now and then a change planned first (a dry run, then the same for real): the plan must be
    # what the change did, on each side
    plan = st.sampled_from([False, False, False, True])
    return st.lists(
        st.builds(lambda o, r, p: replace(o, ref=r, plan=p and o.what in CHANGES), one, ref, plan),
        min_size=1,
        max_size=8,
    )


#: The operations that change something (and may be planned with a dry run first).
CHANGES = ("target", "targets", "config", "configs")


# -- KVM: libvirt's test driver ---------------------------------------------------------------------

KVM_KEYWORDS = ["maximum", "deflate_on_oom", "free_page_reporting", "stats_period"]


@st.composite
def kvm_fleet(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(2, 4))
    out = []
    for i in range(n):
        memory = draw(st.sampled_from([1024, 2048, 4096, 8192]))
        state = draw(st.sampled_from(["running", "running", "stopped", "paused", "suspended"]))
        balloon = draw(st.booleans()) or draw(st.booleans())
        out.append(
            {
                "name": f"vm{i}",
                "memory": memory,
                "current": draw(st.sampled_from([memory, memory * 3 // 4, memory // 2])),
                "state": state,
                "balloon": balloon,
                # a running domain whose period is off gets one at the session's first read (the
                # KVM kind's stats_period_to_arm), on both sides
                "period": draw(st.sampled_from([None, 0, 2, 5])) if balloon else None,
                "numa": draw(st.sampled_from([0, 0, 2])) if state == "stopped" else 0,
                # a GPU passed through (its balloon frees nothing on the host)
                "vfio": draw(st.sampled_from([0, 0, 1])),
                # memory backed by huge pages (KiB; its balloon frees nothing on the host either)
                "hugepages": draw(st.sampled_from([None, None, 2048, 1048576])),
            }
        )
        # a hotplug ceiling (<maxMemory>: the test driver takes none with NUMA cells)
        out[-1]["hotplug"] = draw(st.sampled_from([None, memory * 2])) if not out[-1]["numa"] else None
    return out


def kvm_sides(fleet: list[dict[str, Any]], tmp: Path) -> Iterator[tuple[Side, Side]]:
    from tests.support.libvirt_xml import domain_xml, write_node_xml

    runstate = {"running": None, "stopped": 5, "paused": 3, "suspended": 7}
    uri = write_node_xml(
        tmp / "node.xml",
        [
            domain_xml(
                v["name"],
                memory_mib=v["memory"],
                current_mib=v["current"],
                running=v["state"] != "stopped",
                runstate=runstate[v["state"]],
                balloon="virtio" if v["balloon"] else "none",
                period=v["period"],
                numa_nodes=v["numa"],
                max_memory_mib=v["hotplug"],
                devices=_GPU * v["vfio"],
                memory_backing=_hugepages(v["hugepages"]),
            )
            for v in fleet
        ],
    )
    scenario = kvm_scenario(
        "diff-kvm",
        fleet,
        lambda v: {
            "numa_nodes": v["numa"],
            # libvirt's test driver reads no <stats period>, as 0 (and none without a device)
            "stats_period": v["period"] or 0,
            # the fake turns free page reporting on by default (deliberately); the test
            # driver's domains have none: the fleet says so rather than normalising it
            "free_page_reporting": False,
            "vfio_devices": v["vfio"],
            **({"hugepages": f"{v['hugepages']}KiB"} if v["hugepages"] else {}),
            **({"hotplug_maximum": f"{v['hotplug']}MiB"} if v["hotplug"] else {}),
        },
    )
    with (
        fake.world(scenario) as w,
        hvballoon.connect("fake://", world=w) as sim,
        hvballoon.connect(uri) as real,
    ):
        yield (
            Side("fake", sim, lambda name: w.power_off(w.guest(name).id)),
            Side("kvm", real, lambda name: _libvirt_destroy(real, name)),
        )


#: A PCI device passed through (libvirt's default driver for a PCI hostdev is VFIO).
_GPU = (
    "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
    "<address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source></hostdev>"
)


def _hugepages(page_kib: int | None) -> str:
    """``<memoryBacking>``'s content for huge pages of ``page_kib`` KiB (none if ``None``)."""
    return f"<hugepages><page size='{page_kib}' unit='KiB'/></hugepages>" if page_kib else ""


def _libvirt_destroy(hv: hvballoon.Hypervisor, name: str) -> None:
    dom = hv.native.lookupByName(name)
    if dom.isActive():
        dom.destroy()


@st.composite
def kvm_case(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[Op]]:
    fleet = draw(kvm_fleet())
    size = sizes(["maximum_bytes", "startup_bytes"])
    return fleet, draw(ops(len(fleet), size, KVM_KEYWORDS))


@budget(60)
@given(case=kvm_case())
def test_kvm_fake_agrees_with_libvirt_test_driver(
    case: tuple[list[dict[str, Any]], list[Op]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("libvirt")
    fleet, sequence = case
    # The guard rails' floor reads the guest's use: the test driver's synthetic figures and the
    # fake's guest differ by nature, so every target is forced on both sides (the kind's rules
    # still apply: above the maximum, no balloon device).
    sequence = [replace(o, force=True) for o in sequence]
    names = [v["name"] for v in fleet]
    # libvirt's test driver has no KSM to read (getMemoryParameters): a QEMU host's libvirt has
    norm = Normalise(host_set_aside=frozenset({"shared_bytes"}))
    for sim, real in kvm_sides(fleet, tmp_path_factory.mktemp("kvm")):
        run_sequence(sim, real, names, sequence, norm)


# -- Hyper-V: the loopback WinRM server answering like Set-VMMemory ----------------------------------

HYPERV_KEYWORDS = ["startup", "minimum", "maximum", "dynamic", "buffer_percent", "priority"]


@st.composite
def hyperv_fleet(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(2, 4))
    out = []
    for i in range(n):
        memory = draw(st.sampled_from([2048, 4096, 8192]))
        dynamic = draw(st.booleans())
        vm: dict[str, Any] = {
            "name": f"vm{i}",
            "memory": f"{memory}MiB",
            "used": f"{draw(st.sampled_from([memory // 8, memory // 4, memory // 2]))}MiB",
            "power_state": draw(st.sampled_from(["running", "running", "stopped", "paused", "suspended"])),
            "dynamic": dynamic,
            "priority": draw(st.sampled_from([0, 50, 100])),
            # a guest without integration services: MemoryDemand 0, not balanced
            "balloon_driver": draw(st.sampled_from([True, True, False])),
        }
        if dynamic:
            vm["startup"] = f"{draw(st.sampled_from([memory // 4, memory // 2, memory]))}MiB"
            vm["minimum"] = f"{draw(st.sampled_from([32, 512]))}MiB"
            vm["buffer_percent"] = draw(st.sampled_from([5, 20, 2000]))
        out.append(vm)
    return out


@pytest.fixture(scope="module")
def winrm_peer() -> Iterator[Any]:
    from tests.support.hyperv.peer import start_peer

    yield from start_peer("basic", False)


@st.composite
def hyperv_case(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[Op]]:
    fleet = draw(hyperv_fleet())
    # a small host first: a static VM's runtime resize needs the memory free on the host
    fleet[0]["_physical"] = draw(st.sampled_from(["12GiB", "64GiB"]))
    size = sizes(["maximum_bytes", "startup_bytes", "minimum_bytes"])
    return fleet, draw(ops(len(fleet), size, HYPERV_KEYWORDS))


@budget(30)
@given(case=hyperv_case())
def test_hyperv_fake_agrees_with_the_winrm_peer(
    case: tuple[list[dict[str, Any]], list[Op]], winrm_peer: Any
) -> None:
    from hvballoon.fake.world import World

    fleet, sequence = case
    vms = [{k: v for k, v in vm.items() if not k.startswith("_")} for vm in fleet]
    host = {"physical": fleet[0].get("_physical", "64GiB")}
    # a VM Hyper-V would not have started beside those before it is drawn stopped
    data = {"name": "diff-hyperv", "flavor": "hyperv", "host": host, "vms": vms}
    scenario = started_in_turn(data, source="diff-hyperv")
    # the peer answers from a simulated host of its own built from the same fleet (its guests
    # behave alike, so the guard rails' floors match and targets need not be forced)
    winrm_peer.host.world = World(scenario, flavor="hyperv")
    winrm_peer.host.settle_seconds = 0.0  # the fake does not settle a change either
    names = [v["name"] for v in fleet]
    peer_world = winrm_peer.host.world
    with (
        fake.world(scenario) as w,
        hvballoon.connect("fake://", world=w) as sim,
        winrm_peer.connect() as real,
    ):
        run_sequence(
            Side("fake", sim, lambda name: w.power_off(w.guest(name).id)),
            Side("hyperv", real, lambda name: peer_world.power_off(peer_world.guest(name).id)),
            names,
            sequence,
            Normalise(),
        )


# -- ESXi: the vSphere simulator ---------------------------------------------------------------------

ESXI_KEYWORDS = [
    "maximum",
    "reservation",
    "limit",
    "shares",
    "shares_level",
    "memory_reservation_lock",
    "balloon_cap",
]
#: vSphere's shares per MB of memory for a level (SharesLevel: low 5, normal 10, high 20)
PER_MB = {"low": 5, "normal": 10, "high": 20}


@st.composite
def esxi_fleet(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(2, 4))
    out = []
    for i in range(n):
        memory = draw(st.sampled_from([2048, 4096, 8192, 16384]))
        level = draw(st.sampled_from(["low", "normal", "high", "custom"]))
        out.append(
            {
                "name": f"vm{i}",
                "memory": memory,
                "used": draw(st.sampled_from([memory // 8, memory // 4])),
                "state": draw(st.sampled_from(["running", "running", "stopped", "suspended"])),
                "reservation": draw(st.sampled_from([0, 0, 512, memory // 2])),
                "limit": draw(st.sampled_from([None, None, memory // 2, memory])),
                "level": level,
                "shares": draw(st.sampled_from([1000, 4000]))
                if level == "custom"
                else memory * PER_MB[level],
                "cap": draw(st.sampled_from([None, None, 1024])),
            }
        )
    return out


def _vcsim_vm(v: dict[str, Any]) -> dict[str, Any]:
    limit = v["limit"] if v["limit"] is not None else -1
    return {
        "name": v["name"],
        "powerState": {"running": "poweredOn", "stopped": "poweredOff", "suspended": "suspended"}[v["state"]],
        "memoryMB": v["memory"],
        "memoryAllocation": {
            "reservation": v["reservation"],
            "limit": max(limit, v["reservation"]) if limit != -1 else -1,
            "shares": {"level": v["level"], "shares": v["shares"]},
        },
        "quickStats": {"guestMemoryUsage": v["used"], "hostMemoryUsage": v["memory"], "balloonedMemory": 0}
        if v["state"] == "running"
        else {},
        **({"extraConfig": {"sched.mem.maxmemctl": str(v["cap"])}} if v["cap"] is not None else {}),
    }


def _fake_vm(v: dict[str, Any]) -> dict[str, Any]:
    vm = _vcsim_vm(v)
    alloc = vm["memoryAllocation"]
    return {
        "name": v["name"],
        "memory": f"{v['memory']}MiB",
        "used": f"{v['used']}MiB",
        "power_state": v["state"],
        "reservation": f"{alloc['reservation']}MiB",
        **({"limit": f"{alloc['limit']}MiB"} if alloc["limit"] != -1 else {}),
        "shares_level": v["level"],
        **({"shares": v["shares"]} if v["level"] == "custom" else {}),
        **({"balloon_cap": f"{v['cap']}MiB"} if v["cap"] is not None else {}),
    }


def _vcsim_power_off(peer: Any, name: str) -> None:
    from pyVim.connect import Disconnect, SmartConnect
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    si = SmartConnect(host=peer.host, port=peer.port, user=peer.username, pwd=peer.password, protocol="http")
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        for obj in view.view:
            if obj.name == name and obj.runtime.powerState != "poweredOff":  # suspended too
                WaitForTask(obj.PowerOffVM_Task())
    finally:
        Disconnect(si)


@st.composite
def esxi_case(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[Op]]:
    fleet = draw(esxi_fleet())
    size = sizes(["maximum_bytes", "reservation_bytes", "limit_bytes"])
    return fleet, draw(ops(len(fleet), size, ESXI_KEYWORDS))


@budget(30)
@given(case=esxi_case())
def test_esxi_fake_agrees_with_the_vsphere_simulator(case: tuple[list[dict[str, Any]], list[Op]]) -> None:
    from tests.support.require import require
    from tests.support.vsphere.fleet import connect
    from tests.support.vsphere.harness import VcsimServer, prerequisites

    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))
    fleet, sequence = case
    scenario = parse_scenario(
        {
            "name": "diff-esxi",
            "flavor": "esxi",
            "host": {"physical": "256GiB"},
            "vms": [_fake_vm(v) for v in fleet],
        }
    )
    names = [v["name"] for v in fleet]
    # the fake's guest uses what the simulator's quickStats say (guestMemoryUsage), so the guard
    # rails' floors agree and targets need not be forced
    with (
        VcsimServer([_vcsim_vm(v) for v in fleet]) as server,
        connect(server) as real,
        fake.world(scenario) as w,
        hvballoon.connect("fake://", world=w) as sim,
    ):
        run_sequence(
            Side("fake", sim, lambda name: w.power_off(w.guest(name).id)),
            Side("esxi", real, lambda name: _vcsim_power_off(server, name)),
            names,
            sequence,
            Normalise(),
        )


# -- KVM over QMP: QEMU's monitor, one socket per VM ---------------------------------------------------


@st.composite
def qmp_case(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[Op]]:
    n = draw(st.integers(2, 3))
    fleet = []
    for i in range(n):
        memory = draw(st.sampled_from([1024, 2048, 4096]))
        balloon = draw(st.booleans()) or draw(st.booleans())
        fleet.append(
            {
                "name": f"vm{i}",
                "memory": memory,
                # QEMU boots with all its RAM (-m), which QMP reports as the boot size: a fake
                # domain's boot size is its initial target (libvirt's currentMemory), so both
                # start with the balloon empty
                "current": memory,
                "state": draw(st.sampled_from(["running", "running", "paused"])),
                "balloon": balloon,
                "deflate": draw(st.booleans()) if balloon else False,
                "free_page_reporting": draw(st.booleans()) if balloon else False,
                # off: the session switches it on at its first read, on both sides
                "period": draw(st.sampled_from([0, 2])) if balloon else 0,
            }
        )
    # QEMU runs as long as the VM does: powering one off takes its monitor away (not modelled)
    return fleet, draw(ops(n, sizes(["maximum_bytes", "startup_bytes"]), KVM_KEYWORDS, power=False))


@budget(20)
@given(case=qmp_case())
def test_kvm_fake_agrees_with_qemu_monitors(
    case: tuple[list[dict[str, Any]], list[Op]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("qemu.qmp")
    import shutil
    import tempfile
    import time

    from tests.support.qmp_server import FakeQemu, QmpServer, connect

    fleet, sequence = case
    sequence = [replace(o, force=True) for o in sequence]
    names = [v["name"] for v in fleet]
    scenario = kvm_scenario(
        "diff-qmp",
        fleet,
        lambda v: {
            "deflate_on_oom": v["deflate"],
            "free_page_reporting": v["free_page_reporting"],
            "stats_period": v["period"],
        },
    )
    directory = Path(tempfile.mkdtemp(prefix="hvbd-"))  # UNIX socket paths are short
    servers = []
    try:
        for i, v in enumerate(fleet):
            vm = FakeQemu(
                name=v["name"],
                uuid=f"00000000-0000-4000-8000-{i:012d}",
                status=v["state"],
                base_memory=v["memory"] * MiB,
                balloon=v["balloon"],
                actual=v["current"] * MiB,
                deflate_on_oom=v["deflate"],
                free_page_reporting=v["free_page_reporting"],
                period=v["period"],
                last_update=int(time.time()),
            )
            servers.append(QmpServer(directory / f"{100 + i}.qmp", vm))
        with (
            fake.world(scenario) as w,
            hvballoon.connect("fake://", world=w) as sim,
            connect(f"qmp://{directory}") as real,
        ):
            run_sequence(
                Side("fake", sim, lambda name: None),
                Side("qmp", real, lambda name: None),
                names,
                sequence,
                # QMP reads the local host's swap (/proc/meminfo), where the fake's kvm flavour
                # shows the host as libvirt does, without swap figures (docs/fake.md); QEMU's
                # monitor has no place for marks, where libvirt's metadata is one
                Normalise(
                    # nor the huge-page pool: QEMU's monitor does not show the host's
                    host_set_aside=frozenset({"swap_total_bytes", "swap_used_bytes", *POOL_KEYS}),
                    capabilities_set_aside=frozenset({"marks"}),
                ),
            )
    finally:
        for server in servers:
            server.close()
        shutil.rmtree(directory, ignore_errors=True)
