"""Counting what a session asks its backend: the calls by method, and the VMs each bulk read of
``set_targets`` names.

>>> import hvballoon
>>> with hvballoon.connect("fake://seed") as hv:
...     calls = counted(hv)
...     _ = hv.get_stats()
...     dict(calls)
{'get_stats': 1}
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import hvballoon

__all__ = ["counted", "deny_reading", "spy_reads"]


def counted(hv: hvballoon.Hypervisor) -> Counter[str]:
    """Count the calls the session makes to its backend, by method."""
    calls: Counter[str] = Counter()
    backend = hv.backend
    for name in (
        "list_vms",
        "lookup_vms",
        "get_stats",
        "get_config",
        "get_configs",
        "get_stats_and_configs",
        "get_host_stats",
        "apply_target",
        "apply_targets",
        "apply_config",
    ):
        original = getattr(backend, name)

        def wrapper(*a: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            calls[_name] += 1
            return _original(*a, **kw)

        setattr(backend, name, wrapper)
    return calls


def spy_reads(hv: hvballoon.Hypervisor) -> list[list[str]]:
    """The names of the VMs of each bulk read ``set_targets`` makes (``get_stats_and_configs``),
    appended as they happen."""
    seen: list[list[str]] = []
    original = hv.backend.get_stats_and_configs

    def spy(vms: Any) -> Any:
        seen.append([vm.name for vm in vms])
        return original(vms)

    hv.backend.get_stats_and_configs = spy  # type: ignore[method-assign]
    return seen


def deny_reading(hv: hvballoon.Hypervisor, name: str, *methods: str) -> list[list[str]]:
    """Make the backend's bulk reads ``methods`` refuse VM ``name`` as the ESXi backend refuses a
    VM whose allocation the account may not read: the whole call fails, naming that VM. Returns
    the names each read was asked for (filled in as the session reads)."""
    from hvballoon.errors import PermissionDeniedError

    reads: list[list[str]] = []
    backend: Any = hv.backend
    for method in methods:
        real = getattr(backend, method)

        def read(vms: Any, real: Any = real) -> Any:
            reads.append([vm.name for vm in vms])
            if any(vm.name == name for vm in vms):
                raise PermissionDeniedError(f"cannot read config.memoryAllocation of {name!r}", vm=name)
            return real(vms)

        setattr(backend, method, read)
    return reads
