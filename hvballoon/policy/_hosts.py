"""A round split by host: a session over several hosts (a vCenter) is decided host by host.

Memory contention is per host: an ESXi host at 95 % is short whatever its neighbours have free,
and a VM can only be given memory its own host has. So when the session reports several hosts
(:meth:`~hvballoon.Hypervisor.get_host_stats`) the controller splits the round's
:class:`~hvballoon.policy.model.Snapshot` by ``VM.host``: each host's VMs with that host's own
:class:`~hvballoon.policy.model.HostView`, decided by the policy on their own, each host with
its own learned state (:class:`HostStates`). The VMs whose host is unknown, or names no host
reported exactly once, are decided together on the pooled view (all hosts added up), as when
there is one host or ``host_memory_bytes`` overrides the host: then the round is one snapshot.
The VMs of a host whose physical memory is unknown (a disconnected ESXi host) are held
(:func:`held`) while the other hosts are decided; the pooled view then adds up the hosts known.

A VM that moved host (vMotion, live migration) carries what the policy remembers of it
(:meth:`Policy.carry <hvballoon.policy.base.Policy.carry>`); what the policy learned of a host
(its headroom level, a wave under way, its free-memory samples) stays with that host.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hvballoon.policy.base import Plan
from hvballoon.policy.model import HostView, Proposal, Snapshot

if TYPE_CHECKING:
    from hvballoon.models import HostStats
    from hvballoon.policy.base import Policy

__all__ = ["HOST_UNKNOWN_RULE", "HostStates", "Part", "decide_by_host", "blind_hosts", "held", "partition"]

log = logging.getLogger("hvballoon.policy")

#: The rule of the holds of the VMs of a host whose physical memory is unknown.
HOST_UNKNOWN_RULE = "controller.host_memory_unknown"

#: One host's share of a round: its name (``None``: the pooled VMs) and its snapshot.
Part = tuple[str | None, Snapshot]


def partition(
    snap: Snapshot,
    hosts: Sequence[HostStats],
    vm_hosts: Mapping[str, str | None],
    derived_used: Mapping[str | None, int],
    *,
    overhead_bytes: int,
    blind: Collection[str] = (),
) -> list[Part]:
    """``snap`` split by host; ``[(None, snap)]`` when there is one host (or none known).

    ``vm_hosts`` is each VM's ``VM.host`` by id; ``derived_used`` the memory the running VMs of
    each host back (their ``host_consumed_bytes``, else ``current_bytes``), which with
    ``overhead_bytes`` stands for a host's use where it does not report it. The VMs of the
    ``blind`` hosts (:func:`blind_hosts`, whose VMs are :func:`held`) are in no part: they are not
    decided; any other host whose physical memory is unknown leaves the round pooled, as it does
    when no host's is known.
    """
    if len(hosts) < 2 or any(h.physical_bytes is None and h.host not in blind for h in hosts):
        return [(None, snap)]
    seen = Counter(h.host for h in hosts)
    by_name = {h.host: h for h in hosts if seen[h.host] == 1}
    groups: dict[str | None, list[Any]] = {}
    for v in snap.vms:
        name = vm_hosts.get(v.id)
        if name in blind:
            continue
        groups.setdefault(name if name in by_name else None, []).append(v)
    if list(groups) == [None]:
        vms = tuple(groups[None])
        return [(None, snap if len(vms) == len(snap.vms) else snap.model_copy(update={"vms": vms}))]
    parts: list[Part] = []
    for name in sorted(k for k in groups if k is not None):
        h = by_name[name]
        used = h.used_bytes if h.used_bytes is not None else overhead_bytes + derived_used.get(name, 0)
        view = HostView(
            total_bytes=h.physical_bytes or 0, used_bytes=used, reserve_bytes=snap.host.reserve_bytes
        )
        parts.append((name, snap.model_copy(update={"host": view, "vms": tuple(groups[name])})))
    if None in groups:
        parts.append((None, snap.model_copy(update={"vms": tuple(groups[None])})))
    return parts


def blind_hosts(hosts: Sequence[HostStats]) -> set[str]:
    """The hosts whose physical memory is unknown, when some others' is known: theirs are the
    VMs :func:`held` (a VM naming a host reported twice, one of them unknown, too)."""
    blind = {h.host for h in hosts if h.physical_bytes is None}
    return blind if len(hosts) > 1 and len(blind) < len({h.host for h in hosts}) else set()


def held(snap: Snapshot, blind: Collection[str], vm_hosts: Mapping[str, str | None]) -> dict[str, Proposal]:
    """A ``hold`` for each VM of a ``blind`` host (:func:`blind_hosts`: its physical memory is
    unknown, a disconnected ESXi host say, while other hosts' is known), by VM id: how much such
    a host has free is not known, so its VMs are neither lowered nor raised; every other host is
    decided as usual. (With one host, or none known, the round cannot be decided: the controller
    says so.)"""
    out: dict[str, Proposal] = {}
    for v in snap.vms:
        name = vm_hosts.get(v.id)
        if name in blind:
            out[v.id] = Proposal(
                vm_id=v.id,
                rule=HOST_UNKNOWN_RULE,
                reason=f"the physical memory of its host {name} is unknown (disconnected, or not "
                "reporting): its VMs are held while the other hosts are decided",
                inputs={"host": name},
            )
    return out


@dataclass
class HostStates:
    """What the policy learned, per host (``None``: the pooled VMs, or the one host), and where
    each VM was decided last (only while the session has several hosts)."""

    states: dict[str | None, Any] = field(default_factory=dict)
    where: dict[str, str | None] = field(default_factory=dict)


def decide_by_host(policy: Policy, parts: Sequence[Part], memory: HostStates) -> Plan:
    """The policy's plan for the round, each part decided on its own with its own state (kept
    in ``memory``); the plans merged: the proposals of every host (each naming its host in its
    inputs), the soonest round any host asks for, every host's contingency and buffers."""
    before = memory.states
    if len(parts) == 1 and parts[0][0] is None:
        (_, snap) = parts[0]
        state = before.get(None)
        if state is None:
            state = policy.initial_state()
        if any(k is not None for k in before):  # it had several hosts: their VMs bring their history
            state = _carried(policy, state, None, snap, memory)
        plan = policy.decide(snap, state)
        memory.states, memory.where = {None: plan.state}, {}
        return plan
    after: dict[str | None, Any] = {}
    plans: list[tuple[str | None, Plan]] = []
    for name, snap in parts:
        state = before.get(name)
        if state is None:
            state = policy.initial_state()
        state = _carried(policy, state, name, snap, memory)
        plan = policy.decide(snap, state)
        after[name] = plan.state
        plans.append((name, plan))
        if name is not None:
            h = snap.host
            log.debug(
                "host %s: %d VMs, %d of %d bytes free", name, len(snap.vms), h.free_bytes, h.total_bytes,
                extra={
                    "event": "host_round", "host": name, "vms": len(snap.vms),
                    "host_free_bytes": h.free_bytes, "host_total_bytes": h.total_bytes,
                },
            )  # fmt: skip
    # a host left without VMs is forgotten (a state not decided for rounds would take the
    # rounds it missed for rounds that came late): one that gets VMs again starts afresh
    memory.states = after
    memory.where = {v.id: name for name, snap in parts for v in snap.vms}
    return _merged(plans)


def _carried(policy: Policy, state: Any, name: str | None, snap: Snapshot, memory: HostStates) -> Any:
    """``state`` of the part ``name`` with what the other parts' states remember of its VMs
    that were decided there last round (a VM not seen before in a split round was pooled)."""
    moved: dict[str | None, list[str]] = {}
    for v in snap.vms:
        was = memory.where.get(v.id)
        if was != name and was in memory.states:
            moved.setdefault(was, []).append(v.id)
    for was, ids in moved.items():
        state = policy.carry(state, memory.states[was], ids)
    return state


def _merged(plans: Sequence[tuple[str | None, Plan]]) -> Plan:
    proposals: list[Proposal] = []
    for name, plan in plans:
        if name is None:
            proposals.extend(plan.proposals)
        else:
            proposals.extend(
                p.model_copy(update={"inputs": {**p.inputs, "host": name}}) for p in plan.proposals
            )
    asked = [p.next_round_seconds for _, p in plans if p.next_round_seconds is not None]
    return Plan(
        tuple(proposals),
        None,
        next_round_seconds=min(asked) if asked else None,
        contingency=tuple(c for _, p in plans for c in p.contingency),
        buffers=tuple(b for _, p in plans for b in p.buffers),
    )


#: The figures a policy's proposals carry about their host (``hvballoon``'s ``inputs``): what the
#: controller's metrics show per host (:mod:`hvballoon.policy.metrics`).
HOST_FIGURES = (
    "host_free_bytes",
    "host_reserve_bytes",
    "host_wave_reserve_bytes",
    "host_short_bytes",
    "headroom_level",
    "host_room_with_every_vm_whole_bytes",
)


def host_figures(proposals: Sequence[Proposal], hosts: Sequence[HostStats]) -> dict[str, dict[str, float]]:
    """Per host, the figures the policy decided it on (:data:`HOST_FIGURES`, as the first of its
    VMs' proposals carries them): the host a proposal names, else the session's one host, else
    ``""`` (the pooled view of hosts not decided apart). Empty for a policy that carries none."""
    one = hosts[0].host if len({h.host for h in hosts}) == 1 else ""
    out: dict[str, dict[str, float]] = {}
    for p in proposals:
        if "host_reserve_bytes" not in p.inputs:
            continue
        name = p.inputs.get("host") or one
        if name not in out:
            out[name] = {k: p.inputs[k] for k in HOST_FIGURES if p.inputs.get(k) is not None}
    return out
