"""Auto-ballooning: a controller that moves memory targets by a policy, on any backend.

The :class:`Controller` reads every VM's stats in one call each interval, asks a
:class:`Policy` for targets, and applies them through the session's guard rails, explaining each
decision. Policies are pure functions of an inputs :class:`Snapshot` and their own state:
``static`` (never moves), ``mom`` (oVirt MoM's default balloon rules), ``proxmox`` (Proxmox VE's
auto-ballooning) and ``hvballoon`` (ours).

>>> import hvballoon
>>> from hvballoon.policy import Controller, ControllerSettings, VMSettings
>>> settings = ControllerSettings(host_memory_bytes="120GiB", vms={"jvm01": VMSettings(self_managed=True)})
>>> with hvballoon.connect("fake://seed") as hv:
...     ctl = Controller(hv, "mom", settings, dry_run=True)
...     d = ctl.step()[0]
>>> d.vm, d.policy, d.action, d.rule
('web01', 'mom', 'hold', 'mom.hold')

Importing :mod:`hvballoon` does not import this package.
"""

from hvballoon.policy.base import POLICY_NAMES, Plan, Policy, get_policy
from hvballoon.policy.controller import Controller
from hvballoon.policy.model import (
    BufferProposal,
    ControllerSettings,
    Decision,
    HostView,
    Proposal,
    Snapshot,
    VMSettings,
    VMView,
)

__all__ = [
    "POLICY_NAMES",
    "BufferProposal",
    "Controller",
    "ControllerSettings",
    "Decision",
    "HostView",
    "Plan",
    "Policy",
    "Proposal",
    "Snapshot",
    "VMSettings",
    "VMView",
    "get_policy",
]
