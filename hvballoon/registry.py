"""Which backend serves which URI, loaded only when first used.

The registry holds *strings* ("module:Class" plus an install hint), never imported classes, so
``import hvballoon`` imports no hypervisor library. Third-party backends register through the
``hvballoon.backends`` entry-point group (name = backend name, value = "module:Class"; the class
declares its URI ``schemes``); entry points are scanned lazily, the first time a name or scheme
misses the built-in table.

>>> spec_for_scheme("qemu+ssh").name
'kvm'
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from hvballoon.errors import (
    BackendBrokenError,
    BackendNotInstalledError,
    BackendUnavailableError,
    InvalidURIError,
)

if TYPE_CHECKING:
    from hvballoon.backend import Backend

__all__ = ["BackendInfo", "BackendSpec", "backends", "load_backend", "spec_for_scheme"]

ENTRY_POINT_GROUP = "hvballoon.backends"


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives and how to install it."""

    name: str
    target: str
    schemes: tuple[str, ...]
    distribution: str | None = None
    extra: str | None = None
    native_module: str | None = None

    @property
    def install_hint(self) -> str:
        if self.distribution is None:
            return "it ships with hvballoon"
        return f"pip install {self.distribution}  (or: pip install 'hvballoon[{self.extra}]')"


_KVM_SCHEMES = tuple(
    f"{driver}{transport}"
    for driver in ("qemu", "test")
    for transport in ("", "+ssh", "+libssh", "+libssh2", "+tcp", "+tls", "+unix", "+ext")
)

_BUILTIN: tuple[BackendSpec, ...] = (
    BackendSpec("fake", "hvballoon.fake.backend:FakeBackend", ("fake",)),
    BackendSpec("kvm", "hvballoon_kvm.backend:KVMBackend", _KVM_SCHEMES, "hvballoon-kvm", "kvm", "libvirt"),
    BackendSpec(
        "esxi", "hvballoon_esxi.backend:ESXiBackend", ("esxi", "vcenter"), "hvballoon-esxi", "esxi", "pyVmomi"
    ),
    BackendSpec(
        "hyperv", "hvballoon_hyperv.backend:HyperVBackend", ("hyperv",), "hvballoon-hyperv", "hyperv", "winrm"
    ),
    BackendSpec("qmp", "hvballoon_qmp.backend:QMPBackend", ("qmp",), "hvballoon-qmp", "qmp", "qemu.qmp"),
)

_lock = threading.Lock()
_specs: dict[str, BackendSpec] = {s.name: s for s in _BUILTIN}
_scanned = False


def _scan_entry_points() -> None:
    """Add third-party backends from the entry-point group (once, on the first miss)."""
    global _scanned
    with _lock:
        if _scanned:
            return
        _scanned = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in _specs:
                # a built-in's own distribution registering itself: the table already knows it
                continue
            try:
                cls = ep.load()
                schemes = tuple(getattr(cls, "schemes", ()))
            except Exception:  # a broken third-party plug-in must not break the others
                schemes = ()
            dist = ep.dist.name if ep.dist is not None else None
            _specs[ep.name] = BackendSpec(ep.name, ep.value, schemes, dist, None, None)


def spec_for_scheme(scheme: str) -> BackendSpec:
    """The backend serving a URI scheme (``qemu+ssh`` → kvm). Unknown → InvalidURIError."""
    scheme = scheme.lower()
    for attempt in range(2):
        for spec in _specs.values():
            if scheme in spec.schemes:
                return spec
        base = scheme.split("+", 1)[0]
        for spec in _specs.values():
            if base in spec.schemes:
                return spec
        if attempt == 0:
            _scan_entry_points()
    known = sorted({s for spec in _specs.values() for s in spec.schemes if "+" not in s})
    raise InvalidURIError(
        f"no backend for URI scheme {scheme!r}; known schemes: {', '.join(known)} "
        "(libvirt transports such as qemu+ssh are accepted too)"
    )


def get_spec(name: str) -> BackendSpec:
    if name not in _specs:
        _scan_entry_points()
    try:
        return _specs[name]
    except KeyError:
        raise BackendUnavailableError(
            f"no backend named {name!r}; known: {', '.join(sorted(_specs))}"
        ) from None


def load_backend(name: str) -> type[Backend]:
    """Import a backend class, telling a missing install apart from a broken one."""
    spec = get_spec(name)
    module_name, _, attr = spec.target.partition(":")
    top = module_name.split(".", 1)[0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or ""
        missing_top = missing.split(".", 1)[0]
        if missing_top == top:
            raise BackendNotInstalledError(
                f"the {name!r} backend is not installed; run: {spec.install_hint}",
                backend=name,
                details={"install": spec.install_hint, "distribution": spec.distribution},
            ) from exc
        if missing_top and importlib.util.find_spec(missing_top) is None:
            raise BackendNotInstalledError(
                f"the {name!r} backend needs the Python package providing {missing_top!r}, "
                f"which is not installed; run: {spec.install_hint}",
                backend=name,
                details={"install": spec.install_hint, "missing": missing_top},
            ) from exc
        raise BackendBrokenError(
            f"the {name!r} backend is installed but fails to import ({exc}); "
            "its hypervisor library or the C library under it is broken or missing",
            backend=name,
        ) from exc
    except OSError as exc:
        raise BackendBrokenError(
            f"the {name!r} backend is installed but a shared library failed to load ({exc})",
            backend=name,
        ) from exc
    try:
        cls: type[Backend] = getattr(module, attr)
    except AttributeError as exc:
        raise BackendBrokenError(
            f"the {name!r} backend's module {module_name} has no {attr}", backend=name
        ) from exc
    return cls


@dataclass(frozen=True)
class BackendInfo:
    """One row of :func:`backends`."""

    name: str
    schemes: tuple[str, ...]
    status: str  # "installed", "missing" or "broken"
    distribution: str | None
    version: str | None
    install_hint: str
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schemes": list(self.schemes),
            "status": self.status,
            "distribution": self.distribution,
            "version": self.version,
            "install": self.install_hint,
            "problem": self.problem,
        }


def backends(*, load: bool = True) -> list[BackendInfo]:
    """Every known backend and whether it can be used here.

    With ``load=True`` (the default) each backend is imported, so a broken install is reported
    as ``"broken"``; with ``load=False`` only the presence of its distribution is checked.
    """
    _scan_entry_points()
    out = []
    for spec in sorted(_specs.values(), key=lambda s: s.name):
        version = None
        if spec.distribution:
            try:
                version = metadata.version(spec.distribution)
            except metadata.PackageNotFoundError:
                version = None
        else:
            version = metadata.version("hvballoon") if _has_dist("hvballoon") else None
        status, problem = "installed", None
        if load:
            try:
                load_backend(spec.name)
            except BackendNotInstalledError as exc:
                status, problem = "missing", exc.message
            except BackendUnavailableError as exc:
                status, problem = "broken", exc.message
        elif spec.distribution and version is None:
            status = "missing"
        primary = tuple(s for s in spec.schemes if "+" not in s)
        out.append(
            BackendInfo(spec.name, primary, status, spec.distribution, version, spec.install_hint, problem)
        )
    return out


def _has_dist(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True
