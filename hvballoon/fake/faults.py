"""Scripted faults (moto style): make the fake backend fail the way real hypervisors do.

A rule names an operation (``connect``, ``list_vms``, ``get_stats``, ``get_config``,
``set_target``, ``set_config``, ``get_host_stats``, ``get_marks`` or ``*``), a kind, and when it fires: the first ``count`` calls
(default 1), only ``after`` N matching calls, each call with a seeded ``probability``, or at a
steady ``rate``: that fraction of the calls, spread evenly; and, with ``at`` / ``until``, only
while the world's clock is in that window (seconds of simulated time), whoever calls and however
often.

>>> from hvballoon.fake.faults import FaultPlan
>>> plan = FaultPlan(seed=1)
>>> _ = plan.add(op="get_stats", kind="connection_lost", count=2)
>>> [plan.hit("get_stats") is not None for _ in range(3)]
[True, True, False]
>>> _ = plan.add(op="set_target", kind="timeout", probability=1.0, at=60, until=120)
>>> [plan.hit("set_target", now=t) is not None for t in (30, 60, 119, 120)]
[False, True, True, False]

A rate-based rule models an outage rather than a blip: with ``burst=N`` each time it fires, the
same call keeps failing for N attempts (per VM when the call names one), so a caller that
retries — the session does, three attempts by default — sees the outage through its retries,
as it would when a hypervisor stops answering for a while. "Half the sweeps time out, whatever
the retries":

>>> plan = FaultPlan()
>>> _ = plan.add(op="get_stats", kind="timeout", rate=0.5, burst=3)
>>> ["x" if plan.hit("get_stats") else "." for _ in range(9)]
['.', 'x', 'x', 'x', '.', 'x', 'x', 'x', '.']

A ``get_marks`` rule is counted per VM as the marks are read (only rules naming
``get_marks`` itself), and one that fires leaves that VM's marks unread — the read goes on, the
VM is named unreadable with the rule's error — as vSphere answers a VM whose ``extraConfig`` an
account may not read. ``vm`` picks the VM; without it, ``count`` / ``rate`` pick among them:

>>> plan = FaultPlan()
>>> _ = plan.add(op="get_marks", kind="permission_denied", vm="db01", count=2)
>>> [bool(plan.hit("get_marks", name, exact=True)) for name in ("web01", "db01", "db01", "db01")]
[False, True, True, False]

The world only decides *whether* a fault fires; the fake backend turns it into the error the
real backend raises (connection lost, timeout and session expired are retryable there too).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "FAULT_KINDS",
    "FAULT_OPS",
    "MARK_FAULT_KINDS",
    "WORLD_FAULT_KINDS",
    "Fault",
    "FaultPlan",
    "check_fault",
]

FAULT_KINDS: tuple[str, ...] = (
    "connection_lost",
    "timeout",
    "session_expired",
    "permission_denied",
    "vm_vanished",
    "no_balloon_driver",
    "stats_stale",
    "slow",
)
FAULT_OPS: tuple[str, ...] = (
    "*",
    "connect",
    "list_vms",
    "get_stats",
    "get_config",
    "set_target",
    "set_config",
    "get_host_stats",
    "get_marks",
)
#: The kinds a ``get_marks`` rule may have: each leaves the VM it fires on with marks unread.
MARK_FAULT_KINDS: tuple[str, ...] = ("connection_lost", "timeout", "session_expired", "permission_denied")
#: The kinds that change the world itself where they fire (a VM deleted, a balloon driver
#: stopped), not only what the call returns: they fire on a call, so when and on which VM depends
#: on the calls made — a world two policies should meet alike schedules such changes at their own
#: times instead (the random scenarios' operator events).
WORLD_FAULT_KINDS: tuple[str, ...] = ("vm_vanished", "no_balloon_driver")


def check_fault(op: str, kind: str) -> None:
    """Raise ValueError naming the accepted values when ``op`` or ``kind`` is unknown."""
    if op not in FAULT_OPS:
        raise ValueError(f"unknown fault op {op!r}; accepted: {', '.join(FAULT_OPS)}")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; accepted: {', '.join(FAULT_KINDS)}")
    if op == "get_marks" and kind not in MARK_FAULT_KINDS:
        raise ValueError(f"a get_marks fault is one of {', '.join(MARK_FAULT_KINDS)}, not {kind!r}")


@dataclass
class Fault:
    """One rule and its counters."""

    op: str
    kind: str
    count: int | None = None
    after: int = 0
    probability: float | None = None
    vm: str | None = None
    latency: float = 0.0
    duration: float = 300.0
    at: float | None = None
    until: float | None = None
    rate: float | None = None
    burst: int = 1
    seen: int = 0
    fired: int = 0
    #: a rate rule's accumulated share of a firing (it fires when this reaches 1)
    credit: float = 0.0
    #: attempts left of an outage under way, per VM ("" for a call that names none)
    bursts: dict[str, int] = field(default_factory=dict)

    def matches(self, op: str, vm: str | None, now: float | None = None) -> bool:
        if self.op not in ("*", op):
            return False
        if now is not None and (
            (self.at is not None and now < self.at) or (self.until is not None and now >= self.until)
        ):
            return False
        return self.vm is None or vm is None or self.vm == vm


@dataclass
class FaultPlan:
    """The world's fault rules; deterministic for a seed, and plain data (persistable)."""

    seed: int = 0
    rules: list[Fault] = field(default_factory=list)

    def add(
        self,
        *,
        op: str = "*",
        kind: str,
        count: int | None = None,
        after: int = 0,
        probability: float | None = None,
        vm: str | None = None,
        latency: float = 0.0,
        duration: float = 300.0,
        at: float | None = None,
        until: float | None = None,
        rate: float | None = None,
        burst: int = 1,
    ) -> Fault:
        """Add a rule. Without ``count``, ``probability`` or ``rate`` it fires once.

        ``rate`` (in (0, 1]) fires on that fraction of the matching calls, evenly spread and
        the same every run; ``burst`` makes each firing last that many attempts of the call
        (``count`` then counts firings, not attempts); with ``at`` / ``until`` the rule fires
        only while the world's clock is in ``[at, until)``.
        """
        check_fault(op, kind)
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        if probability is not None and not 0 < probability <= 1:
            raise ValueError("probability must be in (0, 1]")
        if rate is not None and not 0 < rate <= 1:
            raise ValueError("rate must be in (0, 1]")
        if rate is not None and probability is not None:
            raise ValueError("give either rate or probability, not both")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError("burst must be a whole number of attempts, at least 1")
        if after < 0 or latency < 0 or duration < 0:
            raise ValueError("after, latency and duration must not be negative")
        if (at is not None and at < 0) or (until is not None and until < 0):
            raise ValueError("at and until must not be negative")
        if at is not None and until is not None and until <= at:
            raise ValueError("until must be after at")
        if count is None and probability is None and rate is None:
            count = 1
        rule = Fault(
            op, kind, count, after, probability, vm, float(latency), float(duration),
            at=None if at is None else float(at),
            until=None if until is None else float(until),
            rate=None if rate is None else float(rate),
            burst=burst,
        )  # fmt: skip
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def hit(
        self, op: str, vm: str | None = None, *, now: float | None = None, exact: bool = False
    ) -> Fault | None:
        """Count a call of ``op`` (on ``vm``, at the world's time ``now``) against every rule;
        the first rule that fires. A rule with a time window never fires without ``now``;
        with ``exact``, only the rules naming ``op`` itself count it (not ``*`` ones)."""
        fired: Fault | None = None
        for index, rule in enumerate(self.rules):
            if now is None and (rule.at is not None or rule.until is not None):
                continue
            if exact and rule.op != op:
                continue
            if not rule.matches(op, vm, now):
                continue
            rule.seen += 1
            if fired is not None or rule.seen <= rule.after:
                continue
            key = vm or ""
            left = rule.bursts.get(key, 0)
            if left > 0:  # an outage under way goes on, whatever the count or the rate say
                if left == 1:
                    del rule.bursts[key]
                else:
                    rule.bursts[key] = left - 1
                fired = rule
                continue
            if rule.count is not None and rule.fired >= rule.count:
                continue
            if rule.probability is not None:
                draw = random.Random(f"{self.seed}:{index}:{rule.seen}").random()
                if draw >= rule.probability:
                    continue
            if rule.rate is not None:
                rule.credit += rule.rate
                if rule.credit < 1 - 1e-9:
                    continue
                rule.credit -= 1
            rule.fired += 1
            if rule.burst > 1:
                rule.bursts[key] = rule.burst - 1
            fired = rule
        return fired

    def to_data(self) -> dict[str, Any]:
        return {"seed": self.seed, "rules": [_rule_data(r) for r in self.rules]}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> FaultPlan:
        return cls(seed=int(data.get("seed", 0)), rules=[Fault(**r) for r in data.get("rules", [])])


#: The fields of a time-windowed or rate-based rule, left out of a saved rule while they hold
#: their defaults: a plan without such rules saves (and digests) as it did before they existed.
_LATER_DEFAULTS: dict[str, Any] = {
    "at": None, "until": None, "rate": None, "burst": 1, "credit": 0.0, "bursts": {},
}  # fmt: skip


def _rule_data(rule: Fault) -> dict[str, Any]:
    data = asdict(rule)
    for key, default in _LATER_DEFAULTS.items():
        if data[key] == default:
            del data[key]
    return data
