"""``static``: never moves anything. The reference every other policy is measured against."""

from __future__ import annotations

from typing import Any

from hvballoon.policy.base import Plan, Policy
from hvballoon.policy.model import Proposal, Snapshot

__all__ = ["StaticPolicy"]


class StaticPolicy(Policy):
    """Holds every VM where it is (no ballooning at all)."""

    name = "static"
    summary = "never moves a target (no overcommitment management)"
    lowers = False

    def decide(self, snapshot: Snapshot, state: Any) -> Plan:
        return Plan(
            tuple(
                Proposal(vm_id=v.id, rule="static.hold", reason="the static policy never moves a target")
                for v in snapshot.vms
            ),
            state,
        )
