"""The built-in backends, shipped in the hvballoon distribution and loaded on first use.

Each subpackage is one hypervisor's backend; its ``__init__`` declares, as a
:class:`~hvballoon.registry.BackendSpec` named ``SPEC``, what the registry needs to know — the
URI schemes it serves, the class that implements it (a ``"module:Class"`` string), the extra
that installs its hypervisor library — without importing that library::

    kvm/     libvirt-python   qemu:///system, qemu+ssh://…, test:///default   pip install 'hvballoon[kvm]'
    esxi/    pyvmomi          esxi://user@host, vcenter://user@host            pip install 'hvballoon[esxi]'
    hyperv/  pywinrm          hyperv://user@host                              pip install 'hvballoon[hyperv]'
    qmp/     qemu.qmp         qmp:///var/run/qemu-server                      pip install 'hvballoon[qmp]'

Nothing in the rest of hvballoon imports these packages: :mod:`hvballoon.registry` finds them by
name, and a backend's own modules load only when a URI of its scheme is connected to
(SQLAlchemy's dialects, with their drivers as extras). Third-party backends are separate
distributions registering themselves in the ``hvballoon.backends`` entry-point group.

This package is also the function ``hvballoon.backends()`` (:func:`hvballoon.registry.backends`,
the table ``hvballoon backends`` prints): importing it makes it the ``backends`` attribute of
hvballoon, so it stays callable.

>>> from hvballoon.backends import kvm
>>> kvm.SPEC.extra, kvm.SPEC.target
('kvm', 'hvballoon.backends.kvm.backend:KVMBackend')
>>> import hvballoon
>>> "kvm" in {b.name for b in hvballoon.backends(load=False)}
True
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hvballoon.registry import BackendInfo

__all__: list[str] = []


class _Package(types.ModuleType):
    """This package, callable as :func:`hvballoon.registry.backends`."""

    def __call__(self, *, load: bool = True) -> list[BackendInfo]:
        from hvballoon.registry import backends

        return backends(load=load)


sys.modules[__name__].__class__ = _Package
