"""Wave scenarios: a generator for the hardest class of auto-ballooning problem.

Several VMs need their memory back at once, within seconds: their demand jumps by a third or
more of their size in a few seconds, many of them had shown no variability before, JVMs and
databases run beside them, and the host is overcommitted 1.5-2x. :func:`wave_scenario` draws one
scenario of that class from a seed, so a policy can be judged on as many of them as you like
rather than on the few examples a test suite holds::

    >>> from hvballoon.fake.waves import wave_scenario
    >>> s = wave_scenario(7)
    >>> s.name, s.flavor, 1.5 <= s.promised_bytes / s.host.physical <= 2.0
    ('waves-7', 'kvm', True)
    >>> wave_scenario(7) == s          # the same seed, the same scenario
    True

The ``capacity`` says how the host compares with the scenario's peak (drawn from the seed when
not given):

* ``roomy``: the host holds the whole peak, page cache included, with no ballooning at all;
* ``tight``: the peak demand fits the host's memory (the page cache does not: without
  ballooning the host swaps);
* ``over``: the peak demand exceeds the host's memory plus its swap: someone must lose.

``faults=True`` adds faults while a wave rises: lost connections on moves and sweeps that time
out (each fault active only in a window of simulated time around the wave).

Every draw comes from ``random.Random(seed)``; nothing depends on the machine or the clock.
:data:`WAVE_CLASS` holds the bounds of the class (the docs' table is generated from it).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from hvballoon.fake.randomized import first_not_started
from hvballoon.fake.scenario import Flavor, Scenario, parse_scenario

__all__ = [
    "CAPACITIES",
    "FLAVORS",
    "WAVE_CLASS",
    "WaveClass",
    "WaveFacts",
    "parse_wave_class",
    "wave_facts",
    "wave_scenario",
]

Capacity = Literal["roomy", "tight", "over"]
CAPACITIES: tuple[Capacity, ...] = ("roomy", "tight", "over")

_GiB = 1024**3
_MiB = 1024**2
#: the flavors a wave scenario can be drawn for
FLAVORS: tuple[Flavor, ...] = ("kvm", "esxi", "hyperv")


@dataclass(frozen=True)
class WaveClass:
    """The bounds of the class (fractions of a VM's size, seconds, ratios). A class is checked
    when it is made: bounds the generator cannot draw from are a ValueError naming the field and
    what it accepts (see :data:`_ACCEPTED`)."""

    #: promised memory / host physical memory
    overcommit: tuple[float, float] = (1.5, 2.0)
    #: a surge: demand up by this fraction of the VM's size...
    surge_fraction: tuple[float, float] = (1 / 3, 0.6)
    #: ...within this many seconds
    rise_seconds: tuple[float, float] = (2.0, 10.0)
    #: a wave's members start within this many seconds of each other
    spread_seconds: float = 20.0
    #: how long a surge lasts
    surge_seconds: tuple[float, float] = (300.0, 1800.0)
    #: waves per scenario, and when the first one comes
    waves: tuple[int, int] = (1, 3)
    first_wave_seconds: tuple[float, float] = (1200.0, 3600.0)
    #: share of the VMs that join a wave (at least two join)
    wave_share: tuple[float, float] = (0.2, 0.5)
    #: share of the VMs that had no variability at all before their first surge
    steady_share: float = 0.6

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_bounds(f.name, getattr(self, f.name))


#: the fields of a class that are shares or fractions of a size (bounded by 1)
_FRACTIONS = ("surge_fraction", "wave_share", "steady_share")
#: the fields of a class whose bounds must be above 0 (a surge, waves)
_POSITIVE = ("surge_fraction", "waves")
#: What the generator can honour, per field: the least any bound may be, the most (None: no
#: limit), and why. Beyond 4x the fleets run to hundreds of VMs that no roomy host holds (and
#: every draw of them is slow); under 1x the host is not overcommitted. A rise is drawn to a
#: tenth of a second and a surge to whole seconds, so shorter ones would be none at all.
_ACCEPTED: dict[str, tuple[float, float | None, str]] = {
    "overcommit": (1.0, 4.0, "the memory promised over the host's physical memory"),
    "rise_seconds": (0.1, None, "a rise is drawn to a tenth of a second"),
    "surge_seconds": (1.0, None, "a surge lasts whole seconds"),
}
#: A surge is a third or more of its VM's size: smaller ones are not drawn.
_LEAST_SURGE = 1 / 3


def _check_bounds(name: str, value: Any) -> None:
    """Refuse bounds of the field ``name`` of a class that the generator cannot draw from,
    naming the field and what it accepts (a ValueError)."""
    default = getattr(WaveClass, name)
    ranged = isinstance(default, tuple)
    figures = value if isinstance(value, tuple) else (value,)
    if len(figures) != (2 if ranged else 1) or (ranged and not isinstance(value, tuple)):
        raise ValueError(f"{name} is {'low:high' if ranged else 'one number'}, got {value!r}")
    whole = name == "waves"
    kind = int if whole else (int, float)
    if not all(isinstance(x, kind) and not isinstance(x, bool) for x in figures):
        raise ValueError(f"{name}: {value!r} is not {'whole numbers' if whole else 'numbers'}")
    shown = ":".join(f"{x:g}" for x in figures)
    if not all(math.isfinite(x) and x >= 0 for x in figures):
        raise ValueError(f"{name}: {shown!r} must be finite and not negative")
    if ranged and figures[0] > figures[1]:
        raise ValueError(f"{name}: the low bound {figures[0]:g} is above the high bound {figures[1]:g}")
    if name in _FRACTIONS and figures[-1] > 1:
        raise ValueError(f"{name} is a share, at most 1, got {shown!r}")
    if name in _POSITIVE and figures[0] <= 0:
        raise ValueError(f"{name} must be above 0, got {shown!r}")
    if name in _ACCEPTED:
        least, most, why = _ACCEPTED[name]
        if figures[0] < least or (most is not None and figures[-1] > most):
            accepted = f"from {least:g} to {most:g}" if most is not None else f"at least {least:g}"
            raise ValueError(f"{name} must be {accepted} ({why}), got {shown!r}")
    if name == "surge_fraction" and figures[-1] < _LEAST_SURGE:
        raise ValueError(
            f"surge_fraction: a surge is a third or more of its VM's size (smaller ones are not "
            f"drawn), so the high bound must be at least 1/3, got {shown!r}"
        )


WAVE_CLASS = WaveClass()


def parse_wave_class(text: str, base: WaveClass = WAVE_CLASS) -> WaveClass:
    """The class ``base`` with the bounds ``text`` changes: ``field=low:high`` for a range,
    ``field=value`` for a single figure, separated by commas (fields of :class:`WaveClass`).

    >>> c = parse_wave_class("rise_seconds=1:4, surge_fraction=0.5:0.85")
    >>> c.rise_seconds, c.surge_fraction, c.overcommit == WAVE_CLASS.overcommit
    ((1.0, 4.0), (0.5, 0.85), True)
    >>> parse_wave_class("rise=1:4")
    Traceback (most recent call last):
    ...
    ValueError: unknown field 'rise' of a wave class; accepted: overcommit, surge_fraction, rise_seconds, spread_seconds, surge_seconds, waves, first_wave_seconds, wave_share, steady_share
    """
    fields = {f.name: f for f in dataclasses.fields(WaveClass)}
    changes: dict[str, Any] = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not name and not sep and not value:
            continue
        if not sep or not name or not value:
            raise ValueError(f"{item.strip()!r} is not field=value or field=low:high")
        if name not in fields:
            raise ValueError(f"unknown field {name!r} of a wave class; accepted: {', '.join(fields)}")
        if name in changes:
            raise ValueError(f"{name} is given twice")
        current = getattr(base, name)
        ranged = isinstance(current, tuple)
        parts = value.split(":")
        if len(parts) != (2 if ranged else 1):
            form = "low:high" if ranged else "one number"
            raise ValueError(f"{name} is {form}, got {value!r}")
        default = getattr(WAVE_CLASS, name)
        number = type(default[0] if ranged else default)  # waves are counted, the rest measured
        try:
            figures = [number(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"{name}: {value!r} is not {'whole numbers' if number is int else 'numbers'}"
            ) from None
        changes[name] = tuple(figures) if ranged else figures[0]
    if not changes:
        raise ValueError("no field given: field=low:high or field=value, separated by commas")
    return dataclasses.replace(base, **changes)  # the class checks what it can draw from


class _Role(NamedTuple):
    """A kind of VM in a fleet: its share of the fleet, its sizes, and its use, page cache and
    page cache limit as fractions of its size."""

    name: str
    share: float
    sizes_gib: tuple[int, ...]
    use: tuple[float, float]
    cache: float
    cache_max: tuple[float, float]


_ROLES: tuple[_Role, ...] = (
    _Role("web", 0.30, (4, 8, 16), (0.12, 0.30), 0.08, (0.2, 0.5)),
    _Role("api", 0.20, (8, 16), (0.15, 0.35), 0.06, (0.15, 0.4)),
    _Role("batch", 0.10, (8, 16, 32), (0.08, 0.25), 0.05, (0.3, 0.6)),
    _Role("jvm", 0.15, (8, 16), (0.20, 0.30), 0.03, (0.05, 0.15)),
    _Role("db", 0.15, (16, 32), (0.20, 0.30), 0.03, (0.1, 0.3)),
    _Role("cache", 0.10, (8, 16), (0.15, 0.30), 0.15, (0.4, 0.6)),
)
#: the roles whose VMs surge (JVMs and databases run beside them)
_SURGERS = ("web", "api", "batch", "cache")


@dataclass(frozen=True)
class WaveFacts:
    """What a generated scenario holds, worked out from its own figures (bytes)."""

    capacity: Capacity
    #: the most the VMs demand at once (their workloads; the page cache not counted)
    peak_demand_bytes: int
    #: the most the host would have to back at once without ballooning (page cache counted)
    peak_footprint_bytes: int
    #: what the host can give its VMs: physical memory less overheads and reserve
    host_room_bytes: int
    #: the host's swap space
    host_swap_bytes: int
    #: (start, VM names) of each wave
    waves: tuple[tuple[float, tuple[str, ...]], ...]


def _part(kind: str, **params: Any) -> dict[str, Any]:
    return {"kind": kind, "params": params}


def _size(value: float) -> str:
    """A size in whole MiB, as scenarios spell it."""
    return f"{max(0, round(value / _MiB))}MiB"


def _vm_overhead(flavor: str) -> int:
    from hvballoon.fake.world import FLAVOR_PHYSICS

    return FLAVOR_PHYSICS[flavor].vm_overhead


def wave_scenario(
    seed: int,
    *,
    capacity: Capacity | None = None,
    faults: bool | None = None,
    hours: float = 12.0,
    cls: WaveClass = WAVE_CLASS,
    flavor: Flavor = "kvm",
) -> Scenario:
    """One scenario of the wave class, drawn from ``seed`` (see the module docstring).

    ``capacity`` and ``faults`` are drawn from the seed when not given; ``hours`` bounds when
    the waves come (all of them start before its last hour). ``flavor`` is the hypervisor the
    simulator models (``kvm``: balloons; ``esxi``: targets are limits, the host balloons by
    shares under pressure; ``hyperv``: Dynamic Memory); the same seed draws the same fleet and
    waves in every flavor as far as the flavor's overheads let it fit ``capacity``, and a flavor
    other than ``kvm`` is named in the scenario's name (``waves-7-esxi``).

    >>> wave_scenario(7, flavor="esxi").name
    'waves-7-esxi'
    """
    if capacity is not None and capacity not in CAPACITIES:
        raise ValueError(f"unknown capacity {capacity!r}; accepted: {', '.join(CAPACITIES)}")
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; accepted: {', '.join(FLAVORS)}")
    if not hours >= 1.5:
        raise ValueError("hours must be at least 1.5 (the first wave comes within the first hour)")
    latest = hours * 3600.0 - 3600.0  # every wave starts before the last hour
    if cls.first_wave_seconds[0] > latest:
        raise ValueError(
            f"first_wave_seconds: the first wave comes at {cls.first_wave_seconds[0]:g} s or later, but "
            f"within hours={hours:g} every wave starts by {latest:g} s (the last hour is left for it to "
            "play out): lower the bound or raise hours"
        )
    rng = random.Random(f"waves:{seed}")
    cap: Capacity = capacity if capacity is not None else rng.choice(CAPACITIES)
    with_faults = faults if faults is not None else rng.random() < 0.4
    for _attempt in range(_ATTEMPTS):
        data = _draw(rng, seed, cap, with_faults, hours, cls)
        if data is not None:
            if flavor != "kvm":
                data["flavor"] = flavor
                data["name"] = f"waves-{seed}-{flavor}"
                data["description"] = data["description"].replace("Generated", f"Generated {flavor}", 1)
                if flavor == "esxi":
                    # ESXi has no free page reporting: what a guest touched stays backed until
                    # the host's balloon, sharing, compression or swap takes it
                    for vm in data["vms"]:
                        vm["free_page_reporting"] = False
            scenario = parse_scenario(data, source=f"wave_scenario({seed})")
            if flavor == "hyperv" and first_not_started(scenario) is not None:
                continue  # a fleet Hyper-V would not have started in turn: drawn again
            if wave_facts(scenario).capacity == cap:
                return scenario
    changed = _describe(cls) or "the generator's own"
    raise ValueError(
        f"no {cap} wave scenario of the class {changed!r} found for seed {seed} in {_ATTEMPTS} draws: "
        "its bounds leave no room for one (widen them, or ask for another capacity)"
    )


#: draws of a scenario before a class is given up as one no scenario of the capacity fits
_ATTEMPTS = 500


def _describe(cls: WaveClass) -> str:
    """The bounds of ``cls`` that differ from the generator's class, as :func:`parse_wave_class`
    reads them."""
    parts = []
    for f in dataclasses.fields(cls):
        value = getattr(cls, f.name)
        if value != getattr(WAVE_CLASS, f.name):
            figures = value if isinstance(value, tuple) else (value,)
            parts.append(f"{f.name}={':'.join(f'{x:g}' for x in figures)}")
    return ", ".join(parts)


@dataclass
class _Draft:
    """A VM while it is being drawn (bytes)."""

    name: str
    role: str
    size: float
    used: float
    cache: float
    cache_max: float
    swap: float
    steady: bool
    phase: int
    spikes: list[tuple[float, float, float, float]]  # at, duration, size, rise

    def extra(self) -> float:
        """The most its steady workload adds to its starting use."""
        if self.role == "db":
            return 0.05 * self.size  # query memory
        return 0.0 if self.steady else 0.05 * self.size  # a diurnal swing

    def base(self, scale: float = 1.0) -> float:
        """Its starting use with the fleet's use scaled (never above 60 % of its size)."""
        return min(self.used * scale, 0.6 * self.size)

    def jump(self, size: float, scale: float = 1.0) -> float:
        """A surge as it can be: its demand stays within 95 % of the VM's size (a guest that
        cannot hold its own peak would OOM without any balloon)."""
        return min(size, self.levels(scale)[1])

    def surges_at(self, t: float) -> tuple[float, ...]:
        """The sizes of its surges under way at ``t``."""
        return tuple(size for at, duration, size, _ in self.spikes if at <= t < at + duration)

    def levels(self, scale: float = 1.0) -> tuple[float, float]:
        """Its use with no surge, and the most a surge may add to it."""
        base, extra = self.base(scale), self.extra()
        return base + extra, 0.95 * self.size - base - extra


def _draw(
    rng: random.Random, seed: int, cap: Capacity, with_faults: bool, hours: float, cls: WaveClass
) -> dict[str, Any] | None:
    """One attempt: a host, a fleet overcommitting it, waves, and the fleet's use and page cache
    fitted to ``cap``; ``None`` when this draw cannot be fitted."""
    physical_gib = rng.choice((64, 96, 128, 128, 192, 256))
    physical = physical_gib * _GiB
    vms = _fleet(rng, physical, cls)
    if vms is None:
        return None
    promised = sum(v.size for v in vms)
    waves = _waves(rng, vms, hours, cls)
    if waves is None:
        return None
    overhead = rng.choice((2, 2, 4)) * _GiB
    reserve = rng.choice((2, 4)) * _GiB
    swap = physical // 8
    ovh = len(vms) * _vm_overhead("kvm")
    room = physical - overhead - reserve - ovh
    moments = [at + rise + 1.0 for v in vms for at, _, _, rise in v.spikes]
    moments += [at + cls.spread_seconds + 11.0 for at, _ in waves]

    # what surges each VM has under way at each moment, whatever the scale
    under_way = [[v.surges_at(t) for v in vms] for t in moments]

    def uses(scale: float) -> list[list[float]]:
        """Each VM's use at each moment."""
        levels = [v.levels(scale) for v in vms]
        return [
            [
                steady + sum(min(size, room) for size in surges) if surges else steady
                for (steady, room), surges in zip(levels, row, strict=True)
            ]
            for row in under_way
        ]

    def demand(scale: float) -> float:
        return max(sum(row) for row in uses(scale))

    def footprint(at: list[list[float]], cached: float) -> float:
        """The most the fleet takes with its uses ``at`` each moment and ``cached`` of its cache."""
        return max(
            sum(min(v.size, u + cached * v.cache_max) for v, u in zip(vms, row, strict=True)) for row in at
        )

    # fit the fleet's starting use (scale) and page cache (cached) to the capacity class
    scale, cached = 1.0, 1.0
    if cap == "roomy":
        goal = room * rng.uniform(0.85, 0.97)
        if demand(1.0) > goal:
            return None
        at = uses(1.0)
        cached = _solve(lambda c: footprint(at, c), goal, 0.0, 1.0)
    elif cap == "tight":
        goal = room * rng.uniform(0.8, 0.97)
        scale = _solve(demand, goal, 0.5, 1.6)
        if demand(scale) > room:
            return None
        at = uses(scale)
        cached = _solve(lambda c: footprint(at, c), room * rng.uniform(1.1, 1.4), 0.5, 3.0)
        if footprint(at, cached) <= room:
            return None
    else:
        goal = (physical + swap - overhead - ovh) * rng.uniform(1.05, 1.25)
        scale = _solve(demand, goal, 1.0, 2.5)
        if demand(scale) + overhead + ovh <= physical + swap:
            return None
    for v in vms:
        v.spikes = [(at, d, v.jump(size, scale), rise) for at, d, size, rise in v.spikes]
        v.spikes = [x for x in v.spikes if x[2] >= v.size / 3]
        v.used = v.base(scale)
        v.cache_max = min(v.cache_max * cached, v.size - v.used)
        v.cache = min(v.cache, v.cache_max, v.size - v.used)
    surging = {v.name for v in vms if v.spikes}
    waves = [(at, tuple(n for n in names if n in surging)) for at, names in waves]
    waves = [(at, names) for at, names in waves if len(names) >= 2]
    if not waves:
        return None
    faults = _faults(rng, waves) if with_faults else []
    members = sorted({name for _, names in waves for name in names})
    return {
        "name": f"waves-{seed}",
        "description": (
            f"Generated wave scenario (seed {seed}, {cap}{', faults' if with_faults else ''}): "
            f"{len(vms)} VMs, {promised / _GiB:.0f} GiB promised on {physical_gib} GiB "
            f"({promised / physical:.2f}x); {len(waves)} wave(s) of {len(members)} VMs jumping by "
            "a third or more of their size within seconds"
        ),
        "flavor": "kvm",
        "seed": seed,
        "host": {
            "name": "host01",
            "physical": f"{physical_gib}GiB",
            "overhead": _size(overhead),
            "reserve": _size(reserve),
            "swap": _size(swap),
        },
        "vms": [_vm_spec(v) for v in vms],
        "faults": faults,
    }


def _fleet(rng: random.Random, physical: int, cls: WaveClass) -> list[_Draft] | None:
    """VMs overcommitting the host within the class's bounds, in groups of alike VMs (a fleet
    of web servers of one size); ``None`` when the draw falls outside the bounds."""
    goal = rng.uniform(*cls.overcommit) * physical
    most = cls.overcommit[1] * physical
    smallest = min(size for role in _ROLES for size in role.sizes_gib) * _GiB
    vms: list[_Draft] = []
    counts: dict[str, int] = {}
    promised = 0.0
    while promised < goal and promised + smallest <= most:
        role = rng.choices(_ROLES, [r.share for r in _ROLES])[0]
        name = role.name
        size = rng.choice(role.sizes_gib) * _GiB
        group = rng.randint(1, 4) if name in _SURGERS else rng.randint(1, 2)
        for _ in range(group):
            if promised >= goal or promised + size > most:
                break
            counts[name] = counts.get(name, 0) + 1
            vms.append(
                _Draft(
                    name=f"{name}{counts[name]:02d}", role=name, size=size, used=size * rng.uniform(*role.use),
                    cache=size * role.cache, cache_max=size * rng.uniform(*role.cache_max),
                    swap=rng.choice((0.0, 0.0625, 0.125, 0.125, 0.25)) * size,
                    steady=name in ("jvm", "db") or rng.random() < cls.steady_share,
                    phase=rng.randrange(24), spikes=[],
                )
            )  # fmt: skip
            promised += size
    if not cls.overcommit[0] * physical <= promised <= most or len(vms) < 6:
        return None
    return vms


def _solve(f: Callable[[float], float], goal: float, low: float, high: float) -> float:
    """The largest x in [low, high] with f(x) <= goal, f growing with x (bisection); low if none."""
    if f(high) <= goal:
        return high
    if f(low) > goal:
        return low
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if f(mid) <= goal else (low, mid)
    return low


def _vm_spec(v: _Draft) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    # a heap and a buffer pool are taken at start (part of the VM's use) and never given back
    if v.role == "jvm":
        parts.append(_part("jvm", heap=_size(0.7 * v.used)))
    elif v.role == "db":
        parts.append(_part("database", buffer_pool=_size(0.6 * v.used), query_memory=_size(0.05 * v.size)))
    elif not v.steady:
        parts.append(_part("diurnal", amplitude=_size(0.05 * v.size), phase=f"{v.phase}h"))
    parts += [
        _part("spike", at=round(at, 1), duration=round(duration), size=_size(size), rise=round(rise, 1))
        for at, duration, size, rise in v.spikes
    ]
    workload: dict[str, Any]
    if not parts:
        workload = {"kind": "constant"}
    elif len(parts) == 1:
        workload = parts[0]
    else:
        workload = {"kind": "mixed", "params": {"parts": parts}}
    return {
        "name": v.name,
        "memory": _size(v.size),
        "used": _size(v.used),
        "cache": _size(v.cache),
        "cache_max": _size(v.cache_max),
        "swap": _size(v.swap),
        "unfreeable": _size(min(v.used / 4, 256 * _MiB)) if v.role == "db" else "0MiB",
        "workload": workload,
    }


def _waves(
    rng: random.Random, vms: list[_Draft], hours: float, cls: WaveClass
) -> list[tuple[float, tuple[str, ...]]] | None:
    """Draw the waves and give each member its spike; ``None`` when too few VMs can surge."""
    candidates = [v for v in vms if v.role in _SURGERS]
    if len(candidates) < 2:
        return None
    horizon = hours * 3600.0
    n = rng.randint(*cls.waves)
    start = rng.uniform(*cls.first_wave_seconds)
    out: list[tuple[float, tuple[str, ...]]] = []
    for w in range(n):
        if w:
            start += rng.uniform(1800.0, max(1800.0, (horizon - 3600.0 - start) / max(1, n - w)))
        if start > horizon - 3600.0:
            break
        k = min(len(candidates), max(2, round(len(vms) * rng.uniform(*cls.wave_share))))
        # a wave takes a fleet of alike VMs first (a name pattern), then others at random
        fleet = rng.choice(sorted({v.role for v in candidates}))
        ordered = sorted(candidates, key=lambda v: (v.role != fleet, rng.random()))
        duration = rng.uniform(*cls.surge_seconds)
        names = []
        for v in ordered[:k]:
            busy = any(at + d > start for at, d, _, _ in v.spikes)
            jump = v.jump(v.size * rng.uniform(*cls.surge_fraction))
            if jump < v.size / 3 or busy:
                continue
            at = start + rng.uniform(0.0, cls.spread_seconds)
            v.spikes.append((at, duration, jump, rng.uniform(*cls.rise_seconds)))
            names.append(v.name)
        if len(names) >= 2:
            out.append((round(start, 1), tuple(names)))
    return out or None


def _faults(rng: random.Random, waves: list[tuple[float, tuple[str, ...]]]) -> list[dict[str, Any]]:
    """Faults while a wave rises: moves that lose their connection, sweeps that time out."""
    out: list[dict[str, Any]] = []
    for start, _names in waves:
        window = {"at": round(max(0.0, start - 20.0), 1), "until": round(start + rng.uniform(90, 240), 1)}
        out.append(
            {
                "op": "set_target",
                "kind": "connection_lost",
                "probability": round(rng.uniform(0.2, 0.5), 2),
                **window,
            }
        )
        out.append(
            {
                "op": "get_stats",
                "kind": "slow",
                "latency": 60,
                "probability": round(rng.uniform(0.1, 0.3), 2),
                **window,
            }
        )
    return out


def wave_facts(scenario: Scenario, *, hours: float = 12.0) -> WaveFacts:
    """The capacity facts of a wave scenario over its first ``hours``, from its own figures
    (generated, or written by hand in the same terms: surges as ``spike`` workloads).

    The VMs' workloads are evaluated every 30 s and at the top of every spike (a random walk
    with its own draws: its bounds are what count); the page cache is taken at its limit.

    >>> from hvballoon.fake.scenario import load_scenario
    >>> facts = wave_facts(load_scenario("seed-spike"))
    >>> facts.capacity, [len(names) for _, names in facts.waves]
    ('tight', [4])
    """
    import numpy as np

    from hvballoon.fake.workloads import WorkloadBlock, components

    vms = scenario.vms
    starts: list[tuple[float, str]] = []
    by_kind: dict[str, list[Any]] = {}
    for i, v in enumerate(vms):
        for comp in components(i, v.workload.kind, v.workload.params):
            if comp.kind == "spike":
                p = comp.params
                starts.append((float(p.at), v.name))  # type: ignore[attr-defined]
            if comp.kind != "constant":
                by_kind.setdefault(comp.kind, []).append(comp)
    grid = set(np.arange(0.0, hours * 3600.0, 30.0).tolist())
    for i, v in enumerate(vms):
        for comp in components(i, v.workload.kind, v.workload.params):
            if comp.kind == "spike":
                p = comp.params
                for lag in (0.0, WAVE_CLASS.spread_seconds):
                    grid.add(float(p.at) + float(p.rise) + lag + 0.5)  # type: ignore[attr-defined]
    t = np.array(sorted(x for x in grid if x < hours * 3600.0))
    used = np.array([float(v.used) for v in vms])
    memory = np.array([float(v.memory) for v in vms])
    floor = np.array([float(v.unfreeable) for v in vms])
    demand = np.tile(used, (len(t), 1))
    rng = np.random.Generator(np.random.PCG64(scenario.seed))
    for kind, comps in sorted(by_kind.items()):
        block = WorkloadBlock(kind, comps, used, floor, memory, grid_seconds=scenario.step)
        np.add.at(demand, (slice(None), block.vm), block.delta(t, 30.0, rng))  # type: ignore[arg-type]
    demand = np.clip(demand, floor, memory)
    cache_max = np.array([float(v.cache_max if v.cache_max is not None else 2 * v.cache) for v in vms])
    peak_demand = float(demand.sum(axis=1).max())
    peak_footprint = float(np.minimum(memory, demand + cache_max).sum(axis=1).max())
    grouped: list[tuple[float, tuple[str, ...]]] = []
    for at, name in sorted(starts):
        if grouped and at - grouped[-1][0] <= WAVE_CLASS.spread_seconds:
            grouped[-1] = (grouped[-1][0], (*grouped[-1][1], name))
        else:
            grouped.append((at, (name,)))
    h = scenario.host
    ovh = len(vms) * _vm_overhead(scenario.flavor)
    room = h.physical - h.overhead - h.reserve - ovh
    swap = h.physical // 4 if h.swap is None else h.swap
    capacity: Capacity
    if peak_footprint <= room:
        capacity = "roomy"
    elif peak_demand + ovh + h.overhead <= h.physical + swap:
        capacity = "tight"
    else:
        capacity = "over"
    return WaveFacts(capacity, int(peak_demand), int(peak_footprint), room, swap, tuple(grouped))
