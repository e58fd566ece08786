"""The QMP backend: ``hvballoon.connect("qmp:///var/run/qemu-server")``.

QEMU's own monitor protocol over its UNIX sockets, without libvirt: Proxmox VE nodes, hand-rolled
QEMU, CI runners. Installed with hvballoon's ``qmp`` extra (``pip install 'hvballoon[qmp]'``, from
a clone ``pip install -e '.[qmp]'``), which brings ``qemu.qmp``, QEMU's own QMP client library.

- :mod:`.backend` — the backend: sweeps side by side, the balloon, its stats period;
- :mod:`._monitor` — one short conversation per call on a private event loop;
- :mod:`._stats` — what QEMU's answers say, as hvballoon's models;
- :mod:`._errors` — QMP and socket errors mapped onto hvballoon's errors;
- :mod:`._options` — the options :func:`hvballoon.connect` accepts for it.

Importing this package imports no qemu.qmp: it only declares :data:`SPEC` for the registry.
User documentation: ``docs/backends/qmp.md``.
"""

from hvballoon.registry import BackendSpec

__all__ = ["SPEC"]

SPEC = BackendSpec(
    "qmp",
    "hvballoon.backends.qmp.backend:QMPBackend",
    ("qmp",),
    extra="qmp",
    native_module="qemu.qmp",
    requirements=("qemu.qmp>=0.0.6",),
)
