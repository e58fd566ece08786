"""The KVM (libvirt) backend: ``hvballoon.connect("qemu:///system")``.

Installed with hvballoon's ``kvm`` extra (``pip install 'hvballoon[kvm]'``, from a clone
``pip install -e '.[kvm]'``), which brings libvirt-python. libvirt-python ships as source only and
builds against libvirt's C headers: on Debian/Ubuntu first ``apt install libvirt-dev pkg-config
gcc python3-dev`` (or use the distribution's ``python3-libvirt``). The URI goes to libvirt
verbatim, so every libvirt transport works: ``qemu+ssh://user@host/system``, ``qemu:///embed?…``,
and libvirt's own ``test:///default`` driver.

- :mod:`.backend` — the backend: stats (one ``getAllDomainStats``), targets, configuration;
- :mod:`._connection` — the connection: deadlines (a worker thread), one transparent reconnect;
- :mod:`._errors` — libvirt's error codes mapped onto hvballoon's errors;
- :mod:`._domain` — what a domain's XML and libvirt's stats records say;
- :mod:`._options` — the options :func:`hvballoon.connect` accepts for it.

Importing this package imports no libvirt: it only declares :data:`SPEC` for the registry.
User documentation: ``docs/backends/kvm.md``.
"""

from hvballoon.registry import BackendSpec

__all__ = ["SCHEMES", "SPEC"]

#: libvirt's drivers this backend serves, with every transport libvirt knows.
SCHEMES = tuple(
    f"{driver}{transport}"
    for driver in ("qemu", "test")
    for transport in ("", "+ssh", "+libssh", "+libssh2", "+tcp", "+tls", "+unix", "+ext")
)

SPEC = BackendSpec(
    "kvm",
    "hvballoon.backends.kvm.backend:KVMBackend",
    SCHEMES,
    extra="kvm",
    native_module="libvirt",
    requirements=("libvirt-python>=9.0",),
    system_note="libvirt-python builds against libvirt's headers "
    "(Debian: apt install libvirt-dev pkg-config gcc python3-dev)",
)
