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
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from hvballoon.errors import InvalidRequestError
from hvballoon.policy.model import BufferProposal, Proposal, Snapshot

if TYPE_CHECKING:
    from hvballoon.session import GuardRails

__all__ = ["POLICY_NAMES", "Plan", "Policy", "get_policy", "policy_class", "policy_options"]


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

    ``buffers`` sets the Dynamic Memory buffer of VMs that have one (Hyper-V: the share of its
    demand the host adds on top, which it trims first when short); the controller applies each
    through the session's ``set_config`` after the round's moves and records it as a decision
    of its rule (``raise`` or ``lower``; the buffers are in its ``inputs``). Empty: none.
    """

    proposals: tuple[Proposal, ...]
    state: Any = None
    next_round_seconds: float | None = None
    contingency: tuple[Proposal, ...] = ()
    buffers: tuple[BufferProposal, ...] = ()

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
    #: Whether the policy ever lowers a target (``static`` does not): the controller's
    #: :meth:`~hvballoon.policy.controller.Controller.advice` about lowering is for those that do.
    lowers: ClassVar[bool] = True

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

    def carry(self, state: Any, source: Any, vm_ids: Collection[str]) -> Any:
        """``state`` (what the policy learned on one host) with what ``source`` (its state of
        another host) remembers of each VM of ``vm_ids``: they moved from that host to this one
        (vMotion, live migration). What a policy learned of a VM's guest goes with it; what it
        learned of a host stays there. Must not mutate either. Default: nothing is carried.
        """
        return state

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


def policy_class(name: str) -> type[Policy]:
    """The class of the policy ``name`` (imported on first use)."""
    spec = _POLICIES.get(name)
    if spec is None:
        raise InvalidRequestError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
    import importlib

    module, _, cls_name = spec.partition(":")
    cls: type[Policy] = getattr(importlib.import_module(module), cls_name)
    return cls


def policy_options(name: str, options: Mapping[str, object]) -> dict[str, Any]:
    """``options`` for the policy ``name``, checked against its ``__init__`` and each made its
    option's type (text such as ``"10m"`` or ``"384MiB"`` included): see
    :mod:`hvballoon.policy.options`.

    >>> policy_options("hvballoon", {"calm_seconds": "2m", "surge_fraction": "0.5"})
    {'calm_seconds': 120.0, 'surge_fraction': 0.5}
    >>> policy_options("hvballoon", {"calm": "2m"})
    Traceback (most recent call last):
    ...
    hvballoon.errors.InvalidRequestError: unknown option 'calm' for the hvballoon policy; its options: surge_fraction, ...
    """
    from hvballoon.policy.options import coerce_options

    return coerce_options(policy_class(name), options, policy=name)


def get_policy(name: str | Policy, **options: Any) -> Policy:
    """A policy by name (``static``, ``mom``, ``proxmox``, ``hvballoon``), with its options
    (checked and converted by :func:`policy_options`; a value the policy refuses is an
    :class:`~hvballoon.errors.InvalidRequestError` naming the option).

    >>> get_policy("hvballoon", calm_seconds="5m").calm_seconds
    300.0
    >>> get_policy("hvballoon", surge_fraction=1.5)
    Traceback (most recent call last):
    ...
    hvballoon.errors.InvalidRequestError: invalid policy option surge_fraction=1.5 for the hvballoon policy: surge_fraction is in [0, 1] and free_fraction in [0, 1)
    """
    if isinstance(name, Policy):
        if options:
            raise InvalidRequestError(
                f"options are given to a policy by name; the {name.name} policy object given has its own"
            )
        return name
    cls = policy_class(name)
    values = policy_options(name, options)
    try:
        return cls(**values)
    except ValueError as exc:
        named = [k for k in values if k in str(exc)] or list(values)
        given = ", ".join(f"{k}={options[k]!r}" for k in named)
        raise InvalidRequestError(
            f"invalid policy option{'s' if len(named) > 1 else ''} {given} for the {name} policy: {exc}",
            details={"policy": name, "option": named[0] if named else None, "options": named},
        ) from None
