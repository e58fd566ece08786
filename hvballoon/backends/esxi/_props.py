"""Reading vSphere's properties: names as the user wrote them, values in their units, and what
the server would not let us read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hvballoon.errors import HVBalloonError, InvalidStateError
from hvballoon.kinds.esxi import HOT_ADD, HOT_ADD_INCREMENT, HOT_ADD_LIMIT
from hvballoon.units import MiB

from ._fast import MISSING
from ._faults import ERRORS

__all__ = [
    "BALLOON_CAP_KEY",
    "HOT_ADD_PATHS",
    "balloon_cap_bytes",
    "entity_name",
    "extra_config_unreadable",
    "config_extra",
    "limit_mb",
    "scaled",
    "unreadable_error",
]

#: The VM property of its advanced options (its marks among them).
EXTRA_CONFIG = "config.extraConfig"

#: The extraConfig key of the balloon cap (MB; -1 or absent: ESXi's default, 65 % of memory).
BALLOON_CAP_KEY = "sched.mem.maxmemctl"

#: Memory hot-add (VirtualMachineConfigInfo): whether it is on; the most a running VM's memory may
#: grow to, and the step it grows by (MB; "specified only if memoryHotAddEnabled").
HOT_ADD_PATHS: tuple[str, ...] = (
    "config.memoryHotAddEnabled",
    "config.hotPlugMemoryLimit",
    "config.hotPlugMemoryIncrementSize",
)

#: vSphere stores every managed entity's name escaped: "Any / (slash), \\ (backslash), character
#: used in this name element will be escaped. Similarly, any % (percent) character [...] will be
#: escaped, unless it is used to start an escape sequence. A slash is escaped as %2F or %2f. A
#: backslash is escaped as %5C or %5c, and a percent is escaped as %25." (vSphere API,
#: ManagedEntity.name). Only these three sequences are undone, in one left-to-right pass.
_NAME_ESCAPE = re.compile(r"%(2[fF]|5[cC]|25)")


def entity_name(props: Mapping[str, Any], default: str) -> str:
    """The ``name`` of ``props`` as the user wrote it (vSphere's escapes undone), else ``default``.

    >>> entity_name({"name": "web%2f01 50%25"}, "vm-1"), entity_name({}, "vm-1")
    ('web/01 50%', 'vm-1')
    """
    name = props.get("name")
    if name is None:
        return default
    return _NAME_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), str(name))


def scaled(value: Any, unit: int) -> int | None:
    """``value`` (an int in ``unit``, or unset) in bytes."""
    return None if value is None else int(value) * unit


def limit_mb(alloc: Any) -> int | None:
    """The allocation's limit in MB, or None for unlimited (-1) or unset."""
    limit = getattr(alloc, "limit", None)
    return None if limit is None or limit < 0 else int(limit)


def balloon_cap_bytes(extra_config: Any) -> int | None:
    """The balloon cap an extraConfig holds (``None``: unset or not a number: ESXi's default)."""
    for option in extra_config or ():
        if option.key == BALLOON_CAP_KEY:
            try:
                mb = int(str(option.value).strip())
            except ValueError:
                return None
            return mb * MiB if mb >= 0 else None
    return None


def unreadable_error(uri: str | None, vm: str, missing: Mapping[str, BaseException]) -> HVBalloonError:
    """The error for properties of a VM the server would not read (its ``missingSet``, a
    NoPermission typically): a figure read as unset would be a wrong one (an unreadable limit is
    not "unlimited"), so a read of that VM, and any change to it, stops here."""
    paths = sorted(missing)
    fault = missing[paths[0]]
    error = ERRORS.map(fault, f"cannot read {', '.join(paths)} of {vm!r}", vm=vm, uri=uri)
    error.details.setdefault("unreadable", paths)
    error.__cause__ = fault
    return error


def extra_config_unreadable(props: Mapping[str, Any], uri: str | None, vm: str) -> HVBalloonError | None:
    """Why the VM's ``config.extraConfig`` (its marks) is not known, or ``None`` when it was
    read (absent from a VM whose configuration was read: no option set): the server would not
    give it (``missingSet``: a permission fault, the VM removed meanwhile), or the VM has no
    configuration (being created, or its files not accessible).

    >>> extra_config_unreadable({"config.instanceUuid": "u"}, None, "web01") is None
    True
    >>> extra_config_unreadable({"name": "web01"}, None, "web01").code
    'invalid_state'
    """
    missing = props.get(MISSING) or {}
    refused = {path: fault for path, fault in missing.items() if EXTRA_CONFIG.startswith(path)}
    if refused:
        return unreadable_error(uri, vm, refused)
    if EXTRA_CONFIG not in props and "config.instanceUuid" not in props:
        return InvalidStateError(
            f"cannot read the marks of {vm!r}: vSphere gives no configuration for it (being "
            "created or removed, or its files are not accessible)",
            vm=vm,
            uri=uri,
            details={"unreadable": [EXTRA_CONFIG]},
        )
    return None


def config_extra(props: Mapping[str, Any], *, hot_add: bool = True) -> dict[str, Any]:
    """A configuration's ``extra``: its memory hot-add (keys of :mod:`hvballoon.kinds.esxi`) when
    ``hot_add`` (its paths were read; unset is off): whether it is on, and — only then, where
    the server gives them — its limit and increment in bytes; and the paths the server would not
    let us read (a sweep does not fail for one VM it may not read: its unreadable fields are
    named).

    >>> config_extra({"config.memoryHotAddEnabled": True, "config.hotPlugMemoryLimit": 65536})
    {'memory_hot_add': True, 'hot_add_limit_bytes': 68719476736}
    """
    on = bool(props.get("config.memoryHotAddEnabled"))
    out: dict[str, Any] = {HOT_ADD: on} if hot_add else {}
    for key, path in ((HOT_ADD_LIMIT, HOT_ADD_PATHS[1]), (HOT_ADD_INCREMENT, HOT_ADD_PATHS[2])):
        mb = props.get(path)
        if on and mb:  # unset (or 0, which a server leaving it unset may send): not known
            out[key] = int(mb) * MiB
    if props.get(MISSING):
        out["unreadable"] = sorted(props[MISSING])
    return out
