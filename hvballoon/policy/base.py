"""The policy contract: a pure function of (inputs snapshot, state) to proposals and new state.

A policy holds configuration only; whatever it remembers between rounds (moving averages,
histories) travels in the ``state`` it returns, so a round can be replayed and unit-tested
without a backend.

>>> from hvballoon.policy import get_policy
>>> sorted(POLICY_NAMES)
['hvballoon', 'mom', 'proxmox', 'static']
>>> get_policy("static").name
'static'
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from hvballoon.errors import InvalidRequestError
from hvballoon.policy.model import Proposal, Snapshot

if TYPE_CHECKING:
    from hvballoon.session import GuardRails

__all__ = ["POLICY_NAMES", "Plan", "Policy", "get_policy"]


@dataclass(frozen=True)
class Plan:
    """A policy's answer for one round: proposals (one per VM it has an opinion on) and state.

    ``next_round_seconds`` asks the controller for the next round sooner than its interval
    (pressure is building, a rise has started); the controller honours it down to its
    ``fast_interval_seconds``. ``None``: the regular interval.

    ``contingency`` holds raises for the case the controller cannot read before the next round:
    when an attempt of the next round's sweep times out, the controller makes them between the
    attempts (once per sweep, through the same vetting, journal and guard rails as any move;
    only the raises among them, above the targets this round left), and records each as a
    decision of its proposal's rule. Empty (the default): nothing is done while a sweep hangs.
    """

    proposals: tuple[Proposal, ...]
    state: Any = None
    next_round_seconds: float | None = None
    contingency: tuple[Proposal, ...] = ()

    def for_vm(self, vm_id: str) -> Proposal | None:
        return self.by_vm().get(vm_id)

    def by_vm(self) -> dict[str, Proposal]:
        """The proposals by VM id (the first one wins), built once per round."""
        return {p.vm_id: p for p in reversed(self.proposals)}


class Policy(abc.ABC):
    """Base class of the policies. Subclasses set ``name`` and implement :meth:`decide`."""

    name: str = ""
    #: One line for ``--help`` and the docs.
    summary: str = ""
    #: The guest statistics period (seconds) the policy wants on the VMs whose backend can set
    #: it live (KVM, QMP); ``None``: whatever the VMs have. The controller applies it unless
    #: ``ControllerSettings.stats_period_seconds`` says otherwise.
    stats_period_seconds: ClassVar[int | None] = None

    def initial_state(self) -> Any:
        """The state before the first round."""
        return None

    def guard_rails(self, session: GuardRails) -> GuardRails:
        """The guard rails this policy's lowers are checked against (default: the session's).

        A policy that sizes each VM's headroom itself may narrow the session's margin here; the
        controller then checks every lower against the narrower floor, through the session,
        with the same refusal of stale or missing figures. ``ControllerSettings.policy_guard_rails
        = False`` keeps the session's margins whatever the policy says.
        """
        return session

    @abc.abstractmethod
    def decide(self, snapshot: Snapshot, state: Any) -> Plan:
        """Targets and reasons for this round; must not mutate ``state``."""


#: name -> "module:Class" (imported on first use, like the backend registry).
_POLICIES: dict[str, str] = {
    "static": "hvballoon.policy.static:StaticPolicy",
    "mom": "hvballoon.policy.mom:MomPolicy",
    "proxmox": "hvballoon.policy.proxmox:ProxmoxPolicy",
    "hvballoon": "hvballoon.policy.adaptive:HvballoonPolicy",
}
POLICY_NAMES: tuple[str, ...] = tuple(_POLICIES)


def get_policy(name: str | Policy, **options: Any) -> Policy:
    """A policy by name (``static``, ``mom``, ``proxmox``, ``hvballoon``), with its options."""
    if isinstance(name, Policy):
        return name
    spec = _POLICIES.get(name)
    if spec is None:
        raise InvalidRequestError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
    import importlib

    module, _, cls_name = spec.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    policy: Policy = cls(**options)
    return policy
