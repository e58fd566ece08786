"""Random scenarios of any shape: a generator for probing automation far from the built-ins.

:func:`random_scenario` draws one scenario from a seed — any flavour, a host from about 1 GiB
to 1.75 TiB, one VM to a few hundred, odd sizes, VMs bigger than the host, stopped, paused and
suspended VMs, every workload kind, every scripted fault, each flavour's own knobs — always one
the simulator accepts (a draw its flavour's rules would refuse is drawn within them).
:func:`operator_events` draws what an operator or the host does meanwhile (power changes,
renames, deletions, stopped drivers, frozen reports), to be played on the world with
:func:`play`::

    >>> from hvballoon.fake.randomized import random_scenario, operator_events, play
    >>> from hvballoon.fake.world import World
    >>> s = random_scenario(3)
    >>> s.name, random_scenario(3) == s          # the same seed, the same scenario
    ('random-3', True)
    >>> world = World(s)
    >>> events = operator_events(s, seed=3, seconds=600)
    >>> played = 0
    >>> while world.now < 600:
    ...     world.advance(10)
    ...     played = play(world, events, played)
    >>> played == len(events)
    True

Where the wave generator (:mod:`hvballoon.fake.waves`) draws one hard class densely, this one
draws widely: a policy that holds on hundreds of these holds on more than the cases it was
tuned on. Every draw comes from ``random.Random(seed)``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from hvballoon.fake.faults import FAULT_KINDS, FAULT_OPS, MARK_FAULT_KINDS, WORLD_FAULT_KINDS, check_fault
from hvballoon.fake.flavors import FLAVORS
from hvballoon.fake.scenario import Flavor, Scenario, parse_scenario
from hvballoon.kinds import HYPERV, KVM
from hvballoon.kinds.esxi import MEMORY_SIZE_STEP as ESXI_MEMORY_SIZE_STEP
from hvballoon.kinds.esxi import powers_on as esxi_powers_on
from hvballoon.kinds.hyperv import BUFFER_PERCENT_RANGE
from hvballoon.kinds.hyperv import MINIMUM_SIZE_BYTES as HYPERV_MINIMUM_SIZE_BYTES

if TYPE_CHECKING:
    from hvballoon.fake.world import World

__all__ = [
    "OPERATOR_ACTIONS",
    "Extremes",
    "OperatorEvent",
    "operator_events",
    "play",
    "random_scenario",
    "first_not_started",
    "started_in_turn",
]

_MiB = 1024**2
_GiB = 1024**3
#: every size a VM is configured with is a multiple of this, whatever its kind (the kinds' own
#: steps: ESXi's memoryMB, Hyper-V's sizes, KVM's KiB)
_ALIGN = math.lcm(ESXI_MEMORY_SIZE_STEP, HYPERV.alignment_bytes, KVM.alignment_bytes)
_MIN_VM = 64 * _MiB
_HV_MIN = HYPERV_MINIMUM_SIZE_BYTES
_FLAVORS: tuple[Flavor, ...] = ("kvm", "esxi", "hyperv")

Action = Literal["power_off", "power_on", "rename", "vanish", "stop_balloon_driver", "freeze_reports"]
OPERATOR_ACTIONS: tuple[Action, ...] = (
    "power_off",
    "power_on",
    "rename",
    "vanish",
    "stop_balloon_driver",
    "freeze_reports",
)


@dataclass(frozen=True)
class Extremes:
    """Shapes of real fleets the default draws reach rarely or never, each off by default (a
    seed drawn with none is the scenario it always was; the extra draws come from their own
    generator): ``crowd``, 200–400 VMs on the host; ``tiny``, about a fifth of the VMs of
    256 MiB; ``huge``, one VM of 2 TiB; ``tight``, a host with almost no free memory at the start:
    one more guest, without a balloon driver (no policy can take from it), holds what the others
    leave free but 1–3 % of the host (on Hyper-V, but the reserve too, which it starts no VM
    into; elsewhere the host starts short of its reserve, if it keeps one)."""

    crowd: bool = False
    tiny: bool = False
    huge: bool = False
    tight: bool = False

    @property
    def any(self) -> bool:
        return self.crowd or self.tiny or self.huge or self.tight


NO_EXTREMES = Extremes()
_TINY = 256 * _MiB
_HUGE = 2 * 1024 * _GiB


def _down(x: float) -> int:
    return max(_ALIGN, int(x) // _ALIGN * _ALIGN)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def random_scenario(
    seed: int,
    *,
    flavor: Flavor | None = None,
    hours: float = 1.0,
    hugepages: bool = False,
    extremes: Extremes = NO_EXTREMES,
    idle_held: bool = False,
    reserved: bool = False,
) -> Scenario:
    """One scenario drawn from ``seed`` (its flavour too, unless given), its events within its
    first ``hours``, named ``random-<seed>``, pushed to the ``extremes`` asked for. Always one the
    simulator accepts.

    ``hugepages``: a KVM world's VMs are sometimes backed by huge pages (2 MiB or 1 GiB), drawn
    from a stream of their own after everything else, so a seed draws the same world otherwise
    (and, without it, exactly the world it drew before the option existed). ``idle_held``: so
    are an ESXi world's JVMs and databases sometimes guests that hold memory they do not touch
    (scenario ``idle_held``: ESXi's active estimate reads it as not in use), from a stream of
    their own in the same way. ``reserved``: so do about one ESXi VM in five reserve 85 % to 100 %
    of its memory (a database or latency-sensitive VM an administrator guards; a limit it had
    raised to the reservation), drawn before ESXi's admission control drops the reservations
    that would not fit."""
    rng = random.Random(seed)
    more = random.Random(f"extremes-{seed}")
    fl: Flavor = flavor if flavor is not None else rng.choice(_FLAVORS)
    horizon = max(60.0, hours * 3600.0)
    physical = int(_log_uniform(rng, 1.1 * _GiB, 1.75 * 1024 * _GiB))
    overhead = int(physical * rng.choice((0.0, 0.0, 0.01, 0.03, 0.08)))
    reserve = int(physical * rng.choice((0.0, 0.0, 0.02, 0.05, 0.15, 0.4)))
    if overhead + reserve >= physical * 0.9:
        reserve = 0
    room = physical - overhead
    host: dict[str, Any] = {"name": "host01", "physical": physical, "overhead": overhead, "reserve": reserve}
    if rng.random() < 0.5:
        host["swap"] = rng.choice((0, physical // 16, physical // 4, physical))
    if rng.random() < 0.3:
        host["balloon"] = {
            "inflate_rate": int(_log_uniform(rng, 16 * _MiB, 4 * _GiB)),
            "deflate_rate": int(_log_uniform(rng, 16 * _MiB, 8 * _GiB)),
            "panic_delay": rng.choice((0, 1, 4, 30)),
        }
    if fl != "kvm" and rng.random() < 0.3:
        host["rebalance_period"] = rng.choice((1, 3, 5, 15, 60))
    count = _vm_count(rng, physical)
    if extremes.crowd:
        count = more.randint(200, 400)
    overcommit = _log_uniform(rng, 0.2, 4.0)
    mean = max(_MIN_VM, physical * overcommit / count)
    # Hyper-V starts a VM only with its startup memory free for VMs: not the reserve the host keeps
    startable = room - reserve if fl == "hyperv" else room
    huge = more.randrange(count) if extremes.huge else -1
    sizes = [
        _HUGE if k == huge else _TINY if extremes.tiny and more.random() < 0.2 else None for k in range(count)
    ]
    vms = [_vm(rng, fl, k, mean, physical, startable, horizon, sizes[k]) for k in range(count)]
    if count > 1 and rng.random() < 0.1:  # two VMs of one name (distinct ids)
        vms[-1]["name"] = vms[0]["name"]
    for k, vm in enumerate(vms):
        vm["id"] = f"vm-{k}"
    if reserved and fl == "esxi":
        _reserved(random.Random(f"reserved-{seed}"), vms)
    if fl == "esxi":
        _admit_reservations(vms, room)
    if hugepages and fl == "kvm":
        _hugepages(random.Random(f"hugepages-{seed}"), vms)
    if idle_held and fl == "esxi":
        _idle_held(random.Random(f"idle-held-{seed}"), vms)
    data: dict[str, Any] = {
        "name": f"random-{seed}",
        "description": f"random scenario {seed}: {count} VMs, {overcommit:.2f}x on {physical / _GiB:.1f} GiB",
        "flavor": fl,
        "seed": seed,
        "step": rng.choice((1, 1, 1, 0.5, 2)),
        "host": host,
        "vms": vms,
        "faults": _faults(rng, vms, horizon),
    }
    scenario = _pinnable(data, source=f"random scenario {seed}")
    if fl == "hyperv":
        scenario = started_in_turn(data, source=f"random scenario {seed}")
    return _tighten(scenario, data, more) if extremes.tight else scenario


def first_not_started(scenario: Scenario, *, flavor: str | None = None) -> int | None:
    """The index of the first VM ``scenario`` runs at the start that the hypervisor would not
    have started, one after another (:meth:`~hvballoon.fake.flavors.Flavor.not_running`: on
    Hyper-V, one that would not have found its startup memory free); ``None``: every one starts."""
    from hvballoon.errors import ScenarioError
    from hvballoon.fake.world import World

    try:
        World(scenario, flavor=flavor)
    except ScenarioError as refused:
        path = str(refused.details.get("path", ""))
        if not path.endswith(".power_state"):
            raise
        return int(path.split(".")[1])
    return None


def started_in_turn(data: dict[str, Any], *, flavor: str | None = None, source: str = "scenario") -> Scenario:
    """The scenario ``data`` describes (parsed, its ``vms`` changed in place), with the VMs drawn
    running that the hypervisor would not have started stopped instead
    (:func:`first_not_started`). It draws nothing: a world every VM of which starts is the one
    described. For generators (this module's, property tests') that draw VMs without adding up
    what the host can start."""
    while True:
        scenario = parse_scenario(data, source=source)
        refused = first_not_started(scenario, flavor=flavor)
        if refused is None:
            return scenario
        data["vms"][refused]["power_state"] = "stopped"


def _tighten(scenario: Scenario, data: dict[str, Any], rng: random.Random) -> Scenario:
    """``scenario`` with one more VM, without a balloon driver, holding what the host has free at
    the start but 1–3 % of it (and on Hyper-V the reserve, which it does not start VMs into)."""
    from hvballoon.fake.world import World

    fl = scenario.flavor
    host = scenario.host
    free = World(scenario).host_free_bytes - FLAVORS[fl].physics.vm_overhead
    free -= int(host.physical * rng.uniform(0.01, 0.03)) + (host.reserve if fl == "hyperv" else 0)
    memory = free // _ALIGN * _ALIGN
    if memory < _MIN_VM:
        return scenario
    filler: dict[str, Any] = {
        "name": "filler",
        "id": f"vm-{len(scenario.vms)}",
        "memory": memory,
        "used": memory,
        "unfreeable": memory,
        "balloon_driver": False,
    }
    if fl == "hyperv":
        filler.update(dynamic=False, startup=memory)
    return parse_scenario({**data, "vms": [*data["vms"], filler]}, source=f"random scenario {scenario.seed}")


def _vm_count(rng: random.Random, physical: int) -> int:
    """Mostly a handful, sometimes a crowd: 1–285 VMs."""
    shape = rng.random()
    if shape < 0.15:
        return 1
    if shape < 0.75:
        return rng.randint(2, 12)
    if shape < 0.95:
        return rng.randint(13, 60)
    return rng.randint(61, 285)


def _vm(
    rng: random.Random,
    fl: Flavor,
    k: int,
    mean: float,
    physical: int,
    room: int,
    horizon: float,
    size: int | None = None,
) -> dict[str, Any]:
    memory = _down(max(_MIN_VM, _log_uniform(rng, mean / 4, mean * 2.5)))
    if rng.random() < 0.05:  # bigger than the host
        memory = _down(physical * rng.uniform(1.05, 2.0))
    if size is not None:  # an extreme asked for (the draws above still made: the next VMs the same)
        memory = size
    used_share = rng.choice((rng.uniform(0.02, 0.3), rng.uniform(0.3, 0.8), rng.uniform(0.8, 1.0)))
    used = max(_MIN_VM // 2, int(memory * used_share))
    used = min(used, memory)
    cache = int(rng.uniform(0, 0.5) * (memory - used))
    vm: dict[str, Any] = {
        "name": f"{rng.choice(('web', 'db', 'app', 'jvm', 'cache', 'ci', 'x'))}{k:02d}",
        "memory": memory,
        "used": used,
        "cache": cache,
        "swap": rng.choice((0, 0, _down(memory * 0.25), _down(memory))),
        "unfreeable": int(used * rng.choice((0.0, 0.05, 0.3, 0.9))),
        "workload": _workload(rng, memory, used, horizon),
    }
    if rng.random() < 0.3:
        vm["cache_max"] = int(cache * rng.uniform(1, 4))
    if rng.random() < 0.12:
        vm["power_state"] = rng.choice(("stopped", "stopped", "paused", "suspended"))
    if rng.random() < 0.05:
        vm["balloon_driver"] = False
    if fl == "kvm":
        _kvm(rng, vm)
    elif fl == "esxi":
        _esxi(rng, vm)
    else:
        _hyperv(rng, vm, room)
    return vm


def _workload(rng: random.Random, memory: int, used: int, horizon: float) -> dict[str, Any]:
    kind = rng.choice(
        ("constant", "diurnal", "ramp", "spike", "spike", "random_walk", "jvm", "database", "mixed")
    )
    if kind == "mixed":
        parts = [_part(rng, rng.choice(("diurnal", "ramp", "spike", "random_walk")), memory, used, horizon)
                 for _ in range(rng.randint(1, 3))]  # fmt: skip
        return {"kind": "mixed", "params": {"parts": parts}}
    return _part(rng, kind, memory, used, horizon)


def _part(rng: random.Random, kind: str, memory: int, used: int, horizon: float) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if kind == "diurnal":
        params = {"amplitude": int(memory * rng.uniform(0, 0.4)), "period": rng.choice((600, 3600, 86400))}
    elif kind == "ramp":
        params = {
            "to": int(memory * rng.uniform(0.05, 1.3)),
            "over": rng.uniform(1, horizon),
            "start": rng.uniform(0, horizon),
        }
    elif kind == "spike":
        params = {
            "at": rng.uniform(0, horizon),
            "duration": rng.uniform(1, horizon / 2),
            "size": int(memory * rng.uniform(0.05, 1.2)),
            "rise": rng.choice((0.5, 1, 2, 5, 30, 300)),
        }
    elif kind == "random_walk":
        params = {"step": int(_log_uniform(rng, _MiB, 2 * _GiB))}
        if rng.random() < 0.5:
            params["high"] = int(memory * rng.uniform(0.5, 1.2))
    elif kind == "jvm":
        params = {"heap": int(used * rng.uniform(0.2, 0.9)), "warmup": rng.choice((60, 600, 1800))}
    elif kind == "database":
        params = {
            "buffer_pool": int(used * rng.uniform(0.2, 0.9)),
            "query_memory": int(memory * rng.uniform(0, 0.2)),
        }
    return {"kind": kind, "params": params}


def _kvm(rng: random.Random, vm: dict[str, Any]) -> None:
    vm["stats_period"] = rng.choice((0, 1, 2, 5, 10, 10, 60))
    vm["deflate_on_oom"] = rng.random() < 0.2
    vm["free_page_reporting"] = rng.random() < 0.8
    if rng.random() < 0.05:
        vm["balloon_device"] = False
    if rng.random() < 0.1:
        vm["numa_nodes"] = rng.randint(1, 4)
    if rng.random() < 0.15:
        vm["target"] = max(vm["used"] + vm["cache"], int(vm["memory"] * rng.uniform(0.5, 1.0)))
    if rng.random() < 0.05:  # a GPU or NIC passed through: its memory pinned
        vm["vfio_devices"] = rng.randint(1, 2)


def _hugepages(rng: random.Random, vms: list[dict[str, Any]]) -> None:
    """About one VM in ten backed by huge pages (its memory from the host's pool): 2 MiB pages,
    or 1 GiB ones for a VM whose memory is a whole number of GiB."""
    for vm in vms:
        if rng.random() < 0.1:
            whole_gib = vm["memory"] % _GiB == 0
            vm["hugepages"] = _GiB if whole_gib and rng.random() < 0.3 else 2 * _MiB


def _pinnable(data: dict[str, Any], *, source: str) -> Scenario:
    """The scenario ``data`` describes, a VM running at the start with devices assigned through
    VFIO keeping them only where the scenario check finds the host can hold its memory pinned
    (:func:`~hvballoon.kinds.kvm.vfio_cannot_pin`: QEMU would not start it), and VMs backed by
    huge pages only while the default pool they need fits in the host's memory (the largest
    gives them up first); it draws nothing, so every other world is the one it always was."""
    from hvballoon.errors import ScenarioError

    while True:
        try:
            return parse_scenario(data, source=source)
        except ScenarioError as refused:
            path = str(refused.details.get("path", ""))
            if path == "host.hugepage_pool":
                backed = [vm for vm in data["vms"] if "hugepages" in vm]
                del max(backed, key=lambda vm: vm["memory"])["hugepages"]
                continue
            if not path.endswith(".vfio_devices"):
                raise
            del data["vms"][int(path.split(".")[1])]["vfio_devices"]


def _idle_held(rng: random.Random, vms: list[dict[str, Any]]) -> None:
    """Most JVMs and databases (by workload or name) and a few other VMs hold a part of their use
    untouched (an idle heap, a buffer pool): 20 % to 70 % of it, in whole percents."""
    for vm in vms:
        kind = vm.get("workload", {}).get("kind")
        heavy = kind in ("jvm", "database") or str(vm["name"]).startswith(("jvm", "db"))
        if rng.random() < (0.7 if heavy else 0.1):
            vm["idle_held"] = rng.randint(20, 70) / 100


def _reserved(rng: random.Random, vms: list[dict[str, Any]]) -> None:
    """About one VM in five reserves 85 % to 100 % of its memory, whole MiB; a limit it has is
    at least its reservation (ESXi's rule), a reservation locked to the memory size stays."""
    for vm in vms:
        if rng.random() >= 0.2 or vm.get("memory_reservation_lock"):
            continue
        vm["reservation"] = _down(vm["memory"] * rng.uniform(0.85, 1.0))
        if "limit" in vm:
            vm["limit"] = max(vm["limit"], vm["reservation"])


def _esxi(rng: random.Random, vm: dict[str, Any]) -> None:
    memory = vm["memory"]
    if rng.random() < 0.2:
        vm["reservation"] = _down(memory * rng.uniform(0, 0.8))
    if rng.random() < 0.15:
        vm["limit"] = max(vm.get("reservation", 0), _down(memory * rng.uniform(0.3, 1.0)))
    if rng.random() < 0.05:
        vm.pop("reservation", None)
        vm.pop("limit", None)
        vm["memory_reservation_lock"] = True
    if rng.random() < 0.2:
        level = rng.choice(("low", "normal", "high", "custom"))
        vm["shares_level"] = level
        if level == "custom":
            vm["shares"] = rng.randint(1, 2**31 - 1)
    if rng.random() < 0.1:
        vm["balloon_cap"] = _down(memory * rng.uniform(0.05, 0.65))
    if rng.random() < 0.05:
        vm["memory_hot_add"] = True


def _hyperv(rng: random.Random, vm: dict[str, Any], room: int) -> None:
    memory = vm["memory"]
    dynamic = rng.random() < 0.7
    vm["dynamic"] = dynamic
    fits = _down(min(memory, room))
    if dynamic:
        maximum = _down(memory * rng.uniform(0.5, 1.0)) if rng.random() < 0.3 else memory
        maximum = max(maximum, _down(vm["used"] + _ALIGN))
        maximum = min(maximum, memory)
        startup = min(max(_HV_MIN, _down(maximum * rng.uniform(0.1, 1.0))), fits, maximum)
        minimum = min(max(_HV_MIN, _down(startup * rng.uniform(0.05, 1.0))), startup)
        vm.update(maximum=maximum, startup=startup, minimum=minimum)
        low, high = BUFFER_PERCENT_RANGE
        vm["buffer_percent"] = rng.choice((low, 10, 20, 50, 100, high))
        vm["priority"] = rng.randint(0, 100)
    else:
        startup = fits
        vm["startup"] = startup
    # what the guest holds fits the memory Hyper-V gives it
    hold = vm["maximum"] if dynamic else startup
    vm["used"] = min(vm["used"], hold)
    vm["unfreeable"] = min(vm["unfreeable"], vm["used"])
    vm["cache"] = min(vm["cache"], max(0, memory - vm["used"]))


def _admit_reservations(vms: list[dict[str, Any]], room: int) -> None:
    """ESXi powers a VM with a reservation on only while its reservation and its overhead fit
    in what the VMs before it left unreserved: drop the reservations that would not (every VM
    counted, stopped ones too, so that an operator may start any of them)."""
    overhead = FLAVORS["esxi"].physics.vm_overhead  # what the fake's ESXi holds per VM
    unreserved = room
    for vm in vms:
        want = vm["memory"] if vm.get("memory_reservation_lock") else vm.get("reservation", 0)
        if not esxi_powers_on(want, overhead, unreserved):
            vm.pop("memory_reservation_lock", None)
            vm.pop("reservation", None)
            want = 0
        unreserved -= want + overhead


def _faults(rng: random.Random, vms: list[dict[str, Any]], horizon: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    drawn: list[dict[str, Any]] = []  # with the world-changing ones left out of the script
    for _ in range(rng.choice((0, 0, 0, 1, 2, 4))):
        op = rng.choice(FAULT_OPS)
        kind = rng.choice(MARK_FAULT_KINDS if op == "get_marks" else FAULT_KINDS)
        try:
            check_fault(op, kind)
        except ValueError:
            continue
        if op == "connect" and any(r["op"] == "connect" for r in drawn):
            continue  # two would outlast the session's retries at the start
        rule: dict[str, Any] = {"op": op, "kind": kind}
        how = rng.random()
        if how < 0.3:
            rule["count"] = rng.randint(1, 20)
        elif how < 0.6:
            rule["probability"] = rng.uniform(0.01, 1.0)
        elif how < 0.8:
            rule["rate"] = rng.uniform(0.01, 1.0)
            rule["burst"] = rng.randint(1, 5)
        else:
            rule["after"] = rng.randint(0, 50)
        if rng.random() < 0.4:
            at = rng.uniform(0, horizon)
            rule["at"] = at
            rule["until"] = at + rng.uniform(1, horizon / 2)
        if op in ("connect", "*"):
            # a session connects once, at the start: a fault there within the retries, else a
            # window after it (the run is of the automation, not of its first call)
            rule.pop("probability", None)
            rule.pop("rate", None)
            rule.pop("burst", None)
            rule["count"] = rng.randint(1, 2) if op == "connect" else rule.get("count", rng.randint(1, 20))
            if op == "*":
                rule["at"] = max(1.0, rule.get("at", 1.0))
                rule.setdefault("until", rule["at"] + rng.uniform(1, horizon / 2))
        if kind == "slow":
            rule["latency"] = rng.choice((0.1, 1, 4, 10))
        if rng.random() < 0.3:
            rule["vm"] = rng.choice(vms)["name"]
        drawn.append(rule)
        if kind in WORLD_FAULT_KINDS:
            # drawn (the draws after it stay the same) but not scripted: where it fires would
            # depend on the calls each policy makes, and policies compared on one seed must
            # meet the same world (deletions and stopped drivers come as operator events, at
            # their own times)
            continue
        out.append(rule)
    return out


@dataclass(frozen=True)
class OperatorEvent:
    """What happens behind the automation's back at ``at`` (simulated seconds): ``action`` on the
    VM of id ``vm_id`` (``arg``: a new name, or seconds of frozen reports)."""

    at: float
    action: Action
    vm_id: str
    arg: str | float | None = None


def operator_events(
    scenario: Scenario, *, seed: int, seconds: float, busy: bool = False
) -> list[OperatorEvent]:
    """Events drawn from ``seed`` within the scenario's first ``seconds``, in time order; ``busy``:
    20–60 of them (a fleet under maintenance) rather than at most six."""
    rng = random.Random(f"operator-{seed}")
    ids = [v.id or v.name for v in scenario.vms]
    out: list[OperatorEvent] = []
    count = rng.choice((0, 0, 1, 2, 3, 6))
    if busy:
        count = random.Random(f"busy-{seed}").randint(20, 60)
    for _ in range(count):
        action = rng.choice(OPERATOR_ACTIONS)
        arg: str | float | None = None
        if action == "rename":
            arg = f"renamed{rng.randint(0, 99)}"
        elif action == "freeze_reports":
            arg = rng.choice((5.0, 60.0, 600.0))
        out.append(OperatorEvent(rng.uniform(0, seconds), action, rng.choice(ids), arg))
    return sorted(out, key=lambda e: e.at)


def play(world: World, events: list[OperatorEvent], played: int = 0) -> int:
    """Apply to ``world`` the events from index ``played`` on that are due; returns how many of
    ``events`` are played now. One the world cannot do (start a VM that runs, or is gone) is
    skipped, as an operator's failed click."""
    while played < len(events) and events[played].at <= world.now:
        e = events[played]
        played += 1
        try:
            if e.action == "rename":
                world.rename(e.vm_id, str(e.arg))
            elif e.action == "freeze_reports":
                world.freeze_reports([e.vm_id], float(e.arg or 0.0))
            else:
                getattr(world, e.action)(e.vm_id)
        except ValueError:
            pass
    return played
