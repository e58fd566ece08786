"""One rule set per hypervisor kind, shared by the real backends and the fake's flavours.

A kind is an object with behaviour (think of SQLAlchemy's dialects): it owns what a VM of that
hypervisor can read and change (its capabilities, per variant), the ceiling of a target, every
rule a target or a configuration change must obey — each with a stable id in
``err.details["rule"]`` and one typed error class — and what a target *is* (which field it
sets). The real backend and the fake's flavour of the same kind hold the same object and ask
it everything, so they refuse the same things the same way; test peers never import it.

===========  ========================  ==========================================
kind         object                    used by
===========  ========================  ==========================================
``kvm``      :data:`KVM`               libvirt backend, fake ``?flavor=kvm``
``esxi``     :data:`ESXI`              ESXi/vCenter backend, fake ``?flavor=esxi``
``hyperv``   :data:`HYPERV`            Hyper-V backend, fake ``?flavor=hyperv``
===========  ========================  ==========================================

The API, for a backend (set ``kind`` on the class and the base class delegates to it). A
configuration request is the caller's :class:`~hvballoon.models.ConfigUpdate`; the plan a kind
returns is a ``ConfigUpdate`` of only what changes (the startup size below already has its
value), derived fields included:

>>> from hvballoon.kinds import get_kind
>>> from hvballoon.models import VM, MemoryConfig, PowerState
>>> hv = get_kind("hyperv")
>>> caps = hv.capabilities(backend="mine", variant="static")
>>> caps.mechanism.value, caps.alignment_bytes, "buffer_percent" in caps.set_offline
('runtime_resize', 2097152, False)
>>> vm = VM(id="1", name="web01", backend="mine", power_state=PowerState.RUNNING)
>>> cfg = MemoryConfig(vm=vm, mechanism=caps.mechanism, dynamic=False, startup_bytes=2**32,
...                    minimum_bytes=2**29, maximum_bytes=2**34, buffer_percent=20, priority=50)
>>> hv.target_field(cfg), hv.variant_of(cfg).name
('startup_bytes', 'static')
>>> from hvballoon.models import ConfigUpdate
>>> plan = hv.plan_config(vm, ConfigUpdate(priority=80, startup_bytes=2**32), cfg)
>>> plan.changed(), plan.priority
(('priority',), 80)
>>> try:
...     hv.plan_config(vm, ConfigUpdate(buffer_percent=30), cfg)
... except Exception as err:
...     type(err).__name__, err.details["rule"]
('InvalidRequestError', 'dynamic_memory_required')
>>> hv.rule("range_order").error.__name__, len(hv.rules)
('InvalidRequestError', 11)
"""

from __future__ import annotations

from hvballoon.kinds._base import GENERIC_RULES, Kind, Rule, Variant, check_settable, is_off
from hvballoon.kinds.esxi import ESXI, ESXiKind
from hvballoon.kinds.hyperv import HYPERV, HyperVKind
from hvballoon.kinds.kvm import KVM, KVMKind

__all__ = [
    "ESXI",
    "ESXiKind",
    "GENERIC_RULES",
    "HYPERV",
    "HyperVKind",
    "KINDS",
    "KVM",
    "KVMKind",
    "Kind",
    "Rule",
    "Variant",
    "check_settable",
    "get_kind",
    "is_off",
]

#: Every built-in kind, by name.
KINDS: dict[str, Kind] = {k.name: k for k in (KVM, ESXI, HYPERV)}


def get_kind(name: str) -> Kind:
    """The kind called ``name`` (``kvm``, ``esxi``, ``hyperv``); KeyError names the known ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"no hypervisor kind {name!r}; known: {', '.join(KINDS)}") from None
