"""Marks on libvirt domains: one element per mark in the running domain's ``<metadata>``.

libvirt keeps an application's own data in a domain's ``<metadata>``, one element per
namespace URI (formatdomain, "Metadata"; ``virDomainSetMetadata`` / ``virDomainGetMetadata``
with ``VIR_DOMAIN_METADATA_ELEMENT``). Each mark has its own namespace,
:data:`NAMESPACE` followed by the mark's key, so that a write sets or removes that mark alone
in one call (absolute, safe to retry, never a read-modify-write racing another writer) and a
read asks each domain for that mark alone. In ``virsh dumpxml`` a mark reads::

    <metadata>
      <hvballoon:mark xmlns:hvballoon="https://hvballoon.dev/xmlns/marks/1/hvballoon.controller.before"
                      key="hvballoon.controller.before" value="8589934592"/>
    </metadata>

Marks are written to the *live* definition only (``VIR_DOMAIN_AFFECT_LIVE``), whatever the
session's ``persist`` option: libvirt drops the live definition when the domain stops, so a
mark lasts exactly the run of the domain, as a balloon target does (the KVM kind's
``marks_last_one_run``). A domain restored from a save comes back with its live definition,
mark and lowered balloon alike.

>>> element("hvballoon.example", "a<b")
'<mark key="hvballoon.example" value="a&lt;b" />'
>>> value_of(element("hvballoon.example", "a<b"), "hvballoon.example")
'a<b'
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from hvballoon.errors import BackendError, HVBalloonError
from hvballoon.kinds import KVM
from hvballoon.models import VM

from ._errors import BACKEND, CONNECTION_LOST_CODES, ERRORS, error_code
from ._native import libvirt, libvirt_error

__all__ = ["NAMESPACE", "PREFIX", "element", "read_marks", "value_of", "write_mark"]

#: The namespace of hvballoon's marks; a mark's own is this followed by its key.
NAMESPACE = "https://hvballoon.dev/xmlns/marks/1/"
#: The prefix libvirt writes the element with.
PREFIX = "hvballoon"


def namespace(key: str) -> str:
    """The namespace URI of the mark ``key`` (the session has checked the key: dotted words)."""
    return NAMESPACE + key


def element(key: str, value: str) -> str:
    """The metadata element of a mark (without namespace: libvirt adds it with the prefix)."""
    return ET.tostring(ET.Element("mark", {"key": key, "value": value}), encoding="unicode")


def value_of(xml: str, key: str) -> str | None:
    """The value of the mark ``key`` in the element libvirt gave back, or ``None`` when the
    element is not a mark (another program wrote under the namespace): then it is unreadable."""
    try:
        root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    except ET.ParseError:
        return None
    value = root.get("value")
    if root.tag.rpartition("}")[2] != "mark" or root.get("key") != key or not value:
        return None
    return value


def read_marks(
    conn: Any, key: str, uri: str | None, vm_of: Callable[[Any, int | None], VM]
) -> tuple[dict[str, str], dict[str, HVBalloonError]]:
    """Every running domain's value of the mark ``key`` (VM id → value), and the domains whose
    metadata could not be read (VM id → why): one listing of the active domains, then one
    ``virDomainGetMetadata`` per active domain. A domain that is not running has no live
    definition and so no mark (it is not read at all); one that stops or goes while it is
    read has none either. A lost connection fails the whole read (the link reads again)."""
    values: dict[str, str] = {}
    unreadable: dict[str, HVBalloonError] = {}
    where = namespace(key)
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        try:
            xml = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, where, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt_error as exc:
            code = error_code(exc)
            if code in CONNECTION_LOST_CODES:
                raise
            if code in _UNMARKED_CODES:
                continue  # no such element, stopped or gone since the listing: no mark
            vm = vm_of(dom, None)
            error = ERRORS.map(exc, f"read the marks of {vm.name!r}", vm=vm.name, uri=uri)
            error.__cause__ = exc
            unreadable[vm.id] = error
            continue
        value = value_of(xml, key)
        if value is None:
            vm = vm_of(dom, None)
            unreadable[vm.id] = BackendError(
                f"the metadata of {vm.name!r} under {where} is not an hvballoon mark: {xml[:200]!r}",
                backend=BACKEND,
                uri=uri,
                vm=vm.name,
            )
            continue
        values[dom.UUIDString()] = value
    return values, unreadable


def write_mark(dom: Any, vm: VM, key: str, value: str | None) -> None:
    """Set (or, with ``None``, remove) the mark in the running domain's live metadata: one
    call. A powered-off domain has no mark to remove; marking one is refused by the kind."""
    if not KVM.mark_kept(vm, value):
        return
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
    if value is None:
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None, namespace(key), flags)
    else:
        dom.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, element(key, value), PREFIX, namespace(key), flags
        )


#: What ``virDomainGetMetadata`` answers for a running domain without the mark, one that
#: stopped since the listing ("domain is not running") and one that is gone.
_UNMARKED_CODES = frozenset(
    {libvirt.VIR_ERR_NO_DOMAIN_METADATA, libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN}
)
