"""The inventory root a session reads under: ``vcenter://…/?datacenter=&cluster=&folder=``.

Looked up once, at connect, each name through a short-lived ``ContainerView``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from hvballoon.errors import InvalidURIError

from ._client import Client
from ._props import entity_name

# pyvmomi's types are generated at run time: typed as Any at this boundary.
vim: Any = _vim
vmodl: Any = _vmodl

__all__ = ["find_root"]


def find_root(client: Client, query: Mapping[str, str], *, uri: str) -> Any:
    """The datacenter, cluster or VM folder the URI's ``query`` names (the root folder when it
    names none); a name that matches no object, or several, is an :class:`InvalidURIError`."""
    root = client.content.rootFolder
    if "datacenter" in query:
        root = _named(client, root, vim.Datacenter, query["datacenter"], "datacenter", uri)
    if "cluster" in query:
        root = _named(client, root, vim.ClusterComputeResource, query["cluster"], "cluster", uri)
    if "folder" in query:
        root = _named(client, root, vim.Folder, query["folder"], "folder", uri)
    return root


def _named(c: Client, root: Any, kind: Any, name: str, what: str, uri: str) -> Any:
    """The one ``kind`` named ``name`` under ``root``.

    A folder is a VM folder (its ``childType`` holds VirtualMachine): host, datastore and
    network folders hold no VM of their own, and may share a VM folder's name.
    """
    view = c.content.viewManager.CreateContainerView(root, [kind], True)
    paths = ["name", "childType"] if kind is vim.Folder else ["name"]
    try:
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[
                vmodl.query.PropertyCollector.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[
                        vmodl.query.PropertyCollector.TraversalSpec(
                            name="v", path="view", skip=False, type=vim.view.ContainerView
                        )
                    ],
                )
            ],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=kind, pathSet=paths)],
        )
        rows = c.retrieve(spec)
    finally:
        view.DestroyView()
    if kind is vim.Folder:
        rows = [(ref, props) for ref, props in rows if "VirtualMachine" in (props.get("childType") or ())]
    found = [ref for ref, props in rows if entity_name(props, "") == name]
    if len(found) != 1:
        known = sorted(entity_name(props, ref._moId) for ref, props in rows)
        problem = f"no {what}" if not found else f"{len(found)} {what}s"
        raise InvalidURIError(
            f"{problem} named {name!r} here; {what}s: {', '.join(known) or 'none'}", uri=uri
        )
    return found[0]
