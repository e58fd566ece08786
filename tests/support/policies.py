"""Test policies: what a controller test needs a policy to propose, and nothing more.

>>> from hvballoon.units import GiB
>>> Fixed(6 * GiB, {"web01": 8 * GiB}).name
'fixed'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import hvballoon
from hvballoon.policy import BufferProposal, ControllerSettings, Plan, Policy, Proposal, Snapshot
from hvballoon.retry import RetryPolicy

if TYPE_CHECKING:
    from hvballoon.fake.world import World

__all__ = [
    "INSTANT",
    "Buffers",
    "Fixed",
    "dynamic_memory_view",
    "kills",
    "run_simulated",
    "seed_session",
    "seed_settings",
    "targets",
]

#: Retries without waiting: a test that needs them to happen, not to take time.
INSTANT = RetryPolicy(sleep=lambda _s: None)


def seed_settings(**kw: Any) -> ControllerSettings:
    """Controller settings for the ``seed`` host (120 GiB), ``kw`` on top."""
    kw.setdefault("host_memory_bytes", "120GiB")
    return ControllerSettings(**kw)


def seed_session(w: World) -> hvballoon.Hypervisor:
    """A session on the fake world ``w`` whose retries do not wait."""
    return hvballoon.connect("fake://seed", world=w, retry=INSTANT)


def targets(where: hvballoon.Hypervisor | str) -> dict[str, int]:
    """Every VM's target as the simulated hypervisor holds it, by name, on a fake session or a
    fake URI: the world's own, not what a session reads (the kvm flavour, like libvirt, shows a
    running VM's target only to the session that set it)."""
    if isinstance(where, str):
        with hvballoon.connect(where) as hv:
            return targets(hv)
    world = where.backend.world  # type: ignore[attr-defined]
    return {g.name: g.target_bytes for g in world.guests.values() if not g.crashed}


class Fixed(Policy):
    """The same target for every VM (or, in ``per_vm``, one per VM name); rule ``fixed.set``."""

    name = "fixed"

    def __init__(self, target: int, per_vm: dict[str, int] | None = None) -> None:
        self.target = target
        self.per_vm = per_vm or {}

    def decide(self, snapshot: Snapshot, state: Any) -> Plan:
        return Plan(
            tuple(
                Proposal(
                    vm_id=v.id,
                    target_bytes=self.per_vm.get(v.name, self.target),
                    rule="fixed.set",
                    reason="a fixed target",
                )
                for v in snapshot.vms
            ),
            state,
        )


class Buffers(Policy):
    """The given Dynamic Memory buffers (by VM name) every round; rule ``buffers.set``."""

    name = "buffers"

    def __init__(self, buffers: dict[str, int]) -> None:
        self.buffers = buffers

    def decide(self, snapshot: Snapshot, state: Any) -> Plan:
        ids = {v.name: v.id for v in snapshot.vms}
        return Plan(
            (),
            buffers=tuple(
                BufferProposal(vm_id=ids[name], buffer_percent=b, rule="buffers.set", reason="asked")
                for name, b in self.buffers.items()
            ),
        )


def dynamic_memory_view(
    name: str, used: float, *, buffer: int = 20, host_has: float | None = None, **kw: Any
) -> Any:
    """A policy's view of a Dynamic Memory VM of 16 GiB using ``used`` GiB, given its demand plus
    its ``buffer`` (or ``host_has`` GiB)."""
    from hvballoon.models import Mechanism
    from hvballoon.policy.model import VMView
    from hvballoon.units import GiB

    has = host_has if host_has is not None else used * (1 + buffer / 100)
    return VMView(
        id=name,
        name=name,
        mechanism=kw.pop("mechanism", Mechanism.DYNAMIC_MEMORY),
        maximum_bytes=16 * GiB,
        current_bytes=int(has * GiB),
        target_bytes=16 * GiB,
        used_bytes=int(used * GiB),
        can_lower=False,
        buffer_percent=buffer,
        **kw,
    )


def run_simulated(
    scenario: Any, policy: str, minutes: float, options: dict[str, Any] | None = None
) -> tuple[World, list[Any]]:
    """``policy`` (with its ``options``) controlling a fresh world of ``scenario`` for
    ``minutes`` of simulated time: the world and every decision made."""
    from hvballoon.fake.world import World
    from hvballoon.policy.simulated import simulated_controller, simulated_round

    world = World(scenario)
    decisions = []
    with simulated_controller(world, policy, policy_options=options or {}) as ctl:
        while world.now < minutes * 60:
            ds, _read, wait = simulated_round(world, ctl)
            decisions += ds
            world.advance(max(0.1, wait))
    return world, decisions


def kills(world: World) -> int:
    """The guests' OOM kills and panics and the host's OOM kills in ``world`` so far."""
    return sum(1 for e in world.events if e["kind"] in ("oom", "panic", "host_oom"))


def play_rounds(world: World, ctl: Any, *, rounds: int | None = None, until: float | None = None) -> int:
    """The simulated controller ``ctl``'s rounds on ``world``, each followed by the wait it asks
    for: ``rounds`` of them, or until the world's clock reaches ``until``. Returns how many could
    not read their sweep."""
    from hvballoon.policy.simulated import simulated_round

    failed = played = 0
    while (rounds is None or played < rounds) and (until is None or world.now < until):
        _decisions, read, wait = simulated_round(world, ctl)
        failed += not read
        played += 1
        world.advance(max(wait, 0.001))
    return failed
