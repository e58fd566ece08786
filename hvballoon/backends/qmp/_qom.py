"""What a VM's QEMU object tree (QOM) says: where its balloon device is, which of its devices
are assigned through VFIO, and the balloon's own properties.

QEMU puts the devices of ``-device`` under ``/machine/peripheral`` (with an id: Proxmox's
``balloon0``) and ``/machine/peripheral-anon`` (without one); ``qom-list`` of both finds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qemu.qmp import ExecuteError

from ._monitor import Monitor

__all__ = [
    "BALLOON_PROPERTIES",
    "DEVICE_TREES",
    "PERIOD",
    "VFIO_PCI_TYPES",
    "Command",
    "balloon_properties",
    "count_vfio",
    "find_balloon",
    "guest_answers",
    "guest_queries",
]

#: One QMP command and its arguments.
Command = tuple[str, Mapping[str, object] | None]

#: The balloon's stats period property (seconds; 0: off).
PERIOD = "guest-stats-polling-interval"
# where QEMU puts the devices of -device (with an id, and without one)
DEVICE_TREES = ("/machine/peripheral", "/machine/peripheral-anon")


def find_balloon(listings: Sequence[Any]) -> tuple[str, str] | None:
    """The balloon device's QOM path and type (``virtio-balloon-pci`` …) from ``qom-list`` of the
    device trees (named ones first)."""
    for tree, listing in zip(DEVICE_TREES, listings, strict=False):
        if not isinstance(listing, list):
            continue
        for entry in listing:
            kind = entry.get("type", "") if isinstance(entry, Mapping) else ""
            name = entry.get("name") if isinstance(entry, Mapping) else None
            if isinstance(kind, str) and kind.startswith("child<virtio-balloon") and isinstance(name, str):
                return f"{tree}/{name}", kind.removeprefix("child<").removesuffix(">")
    return None


#: The balloon's own settings a configuration reads (``qom-get``; on QEMU's command line only).
BALLOON_PROPERTIES = ("deflate-on-oom", "free-page-reporting")

#: QOM types of a device assigned through VFIO-PCI (QEMU's hw/vfio/types.h, ``TYPE_VFIO_PCI``
#: and ``TYPE_VFIO_PCI_NOHOTPLUG``; ``vfio-ccw`` and ``vfio-ap`` leave discarding on): while one
#: is attached QEMU's balloon discards nothing (docs/backends/kvm.md).
VFIO_PCI_TYPES = frozenset({"child<vfio-pci>", "child<vfio-pci-nohotplug>"})


def count_vfio(listings: Sequence[Any]) -> int | None:
    """How many devices ``qom-list`` of the device trees shows assigned through VFIO-PCI
    (``None``: a tree could not be listed)."""
    count = 0
    for listing in listings:
        if not isinstance(listing, list):
            return None
        count += sum(1 for e in listing if isinstance(e, Mapping) and e.get("type") in VFIO_PCI_TYPES)
    return count


def guest_queries(balloon_path: str) -> list[Command]:
    """The balloon's stats period and the guest's latest report."""
    return [
        ("qom-get", {"path": balloon_path, "property": PERIOD}),
        ("qom-get", {"path": balloon_path, "property": "guest-stats"}),
    ]


def guest_answers(answers: Sequence[Any]) -> tuple[int | None, Mapping[str, Any] | None]:
    """The stats period and the guest-stats object from their ``qom-get`` answers (None: failed)."""
    if len(answers) < 2:
        return None, None
    period, stats = answers[0], answers[1]
    for answer in (period, stats):
        if isinstance(answer, BaseException) and not isinstance(answer, ExecuteError):
            raise answer  # the connection broke
    return (
        period if isinstance(period, int) and not isinstance(period, bool) else None,
        stats if isinstance(stats, Mapping) else None,
    )


async def balloon_properties(mon: Monitor, balloon_path: str | None) -> dict[str, bool | None]:
    """:data:`BALLOON_PROPERTIES` of the balloon at ``balloon_path`` (``None``: unknown), in one
    round trip: properties of the device, or for a PCI balloon of its virtio-backend child
    (free-page-reporting: QEMU 5.1 and later, else unknown)."""
    found: dict[str, bool | None] = dict.fromkeys(BALLOON_PROPERTIES)
    if balloon_path is None:
        return found
    paths = (balloon_path, f"{balloon_path}/virtio-backend")
    answers = await mon.batch(
        [("qom-get", {"path": p, "property": prop}) for prop in BALLOON_PROPERTIES for p in paths]
    )
    for i, prop in enumerate(BALLOON_PROPERTIES):
        pair = answers[i * len(paths) : (i + 1) * len(paths)]
        found[prop] = next((a for a in pair if isinstance(a, bool)), None)
    return found
