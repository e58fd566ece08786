"""The VMware ESXi / vCenter backend (pyvmomi): ``esxi://user@host``, ``vcenter://user@host/?datacenter=DC``.

Installed with hvballoon's ``esxi`` extra (``pip install 'hvballoon[esxi]'``, from a clone
``pip install -e '.[esxi]'``), which brings pyvmomi.

- :mod:`.backend` — the backend: stats in one PropertyCollector round trip, limits as targets;
- :mod:`._client` — the vSphere session: TLS, login (again, once, when it expires), bulk reads;
- :mod:`._fast` — the sweep's hand-written SOAP request and ElementTree reader;
- :mod:`._faults` — vSphere faults mapped onto hvballoon's errors;
- :mod:`._options` — the options and URI parameters it accepts.

Importing this package imports no pyvmomi: it only declares :data:`SPEC` for the registry.
User documentation: ``docs/backends/esxi.md``.
"""

from hvballoon.registry import BackendSpec

__all__ = ["SPEC"]

SPEC = BackendSpec(
    "esxi",
    "hvballoon.backends.esxi.backend:ESXiBackend",
    ("esxi", "vcenter"),
    extra="esxi",
    native_module="pyVmomi",
    requirements=("pyvmomi>=8.0",),
)
