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
hvballoon, so it stays callable. ``hvballoon.backends("kvm", "vcenter")`` lists only the
backends named (by name or by a URI scheme each serves); ``load`` is given by keyword.

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

    def __call__(self, *names: str, **keywords: bool) -> list[BackendInfo]:
        from hvballoon.errors import InvalidRequestError
        from hvballoon.registry import backends

        # what the function takes, said as a typed error rather than Python's TypeError
        unknown = sorted(k for k in keywords if k != "load")
        if unknown:
            raise InvalidRequestError(
                f"backends() takes no keyword {', '.join(unknown)}; accepted: load "
                "(and backend names: backends('kvm', load=False))"
            )
        return backends(*names, load=keywords.get("load", True))


sys.modules[__name__].__class__ = _Package
