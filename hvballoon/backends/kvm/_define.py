"""Changes to a stopped domain's persistent definition (libvirt's domain XML).

A field that changes only with the domain off was checked by the KVM kind against the state
read before; these helpers make sure it is still so when the change is sent, and edit the
``<memballoon>`` element's attributes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from hvballoon.kinds import KVM
from hvballoon.models import VM

__all__ = ["BALLOON_ATTRIBUTES", "still_off", "with_balloon_attribute"]


def still_off(dom: Any, vm: VM, field: str) -> Any:
    """``dom``, if it is still off: a field that changes only with the domain off was checked
    against the state read before, and a domain started since would take the change into its
    next boot's definition only, silently (libvirt accepts AFFECT_CONFIG on a running domain)."""
    if dom.isActive():
        KVM.refuse(
            KVM.offline_rules[field],
            f"{vm.name!r} was started since it was read: {field} changes only with the domain off",
            vm=vm,
            field=field,
        )
    return dom


#: Config fields that are attributes of the domain's ``<memballoon>`` (libvirt's domain XML).
BALLOON_ATTRIBUTES = {"deflate_on_oom": "autodeflate", "free_page_reporting": "freePageReporting"}


def with_balloon_attribute(xml: str, attribute: str, on: bool, vm_name: str) -> str:
    """The domain XML with ``<memballoon attribute=on|off>`` set (namespaced metadata kept)."""
    namespaces: dict[str, str] = {}
    for _event, (prefix, uri) in ET.iterparse(_StringSource(xml), events=("start-ns",)):  # noqa: S314
        namespaces.setdefault(prefix, uri)
    for prefix, uri in namespaces.items():
        ET.register_namespace(prefix, uri)
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    balloon = root.find("./devices/memballoon")
    if balloon is None or balloon.get("model") == "none":
        # the kind refuses this before anything is sent; the definition may have changed since
        KVM.refuse(
            "no_balloon_device",
            f"{vm_name!r} has no memory balloon device, so it has no {attribute} setting",
            field=attribute,
        )
    balloon.set(attribute, "on" if on else "off")
    return ET.tostring(root, encoding="unicode")


class _StringSource:
    """A file-like view of a string, for ``ET.iterparse``."""

    def __init__(self, text: str) -> None:
        self._data = text.encode()
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk
