"""Which backend serves which URI, loaded only when first used.

The registry holds *strings* ("module:Class" plus how to install what it needs), never imported
classes, so ``import hvballoon`` imports no hypervisor library and no backend. The built-in
backends ship inside hvballoon (:mod:`hvballoon.backends`): each subpackage declares its
:class:`BackendSpec` (``SPEC``: its URI schemes, its class, the extra that installs its library)
in an ``__init__`` that imports no hypervisor library, and the registry reads those declarations
the first time a name or scheme is looked up. Third-party backends register through the
``hvballoon.backends`` entry-point group (name = backend name, value = "module:Class"; the class
declares its URI ``schemes``); entry points are scanned lazily, the first time a name or scheme
misses the built-in table.

>>> spec_for_scheme("qemu+ssh").name
'kvm'
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import shlex
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from hvballoon._version import __version__
from hvballoon.errors import (
    BackendBrokenError,
    BackendNotInstalledError,
    BackendUnavailableError,
    InvalidRequestError,
    InvalidURIError,
)

if TYPE_CHECKING:
    from hvballoon.backend import Backend

__all__ = ["BackendInfo", "BackendSpec", "backends", "install_command", "load_backend", "spec_for_scheme"]

ENTRY_POINT_GROUP = "hvballoon.backends"
#: Where the built-in backends' packages are (each declares ``SPEC``).
BUILTIN_PACKAGE = "hvballoon.backends"


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives and how to install what it needs.

    A built-in backend names its ``extra`` of hvballoon and the ``requirements`` that extra
    installs (its hypervisor library; ``native_module`` is what that library is imported as) and,
    in ``system_note``, what the library needs from the system to install. A third-party backend
    names its ``distribution``.
    """

    name: str
    target: str
    schemes: tuple[str, ...]
    distribution: str | None = None
    extra: str | None = None
    native_module: str | None = None
    requirements: tuple[str, ...] = ()
    system_note: str | None = None

    @property
    def builtin(self) -> bool:
        """Whether it ships inside hvballoon (the fake, and the hypervisor backends)."""
        return self.distribution is None

    @property
    def install_hint(self) -> str:
        """A command that installs what this backend needs, here (see :func:`install_command`)."""
        if not self.builtin:
            return f"pip install {self.distribution}"
        if self.extra is None:
            return "it ships with hvballoon"
        hint = install_command(self.extra, self.requirements)
        return f"{hint}; {self.system_note}" if self.system_note else hint


def _origin() -> tuple[str, Path | None]:
    """How the running hvballoon was installed: ``("editable", checkout)``, ``("installed", None)``
    (a wheel or an sdist), or ``("source", None)`` (a source tree on ``sys.path``, not the
    installed distribution's)."""
    here = Path(__file__).resolve().parent  # .../hvballoon
    try:
        dist = metadata.distribution("hvballoon")
    except metadata.PackageNotFoundError:
        return "source", None
    direct = dist.read_text("direct_url.json")
    if direct:
        try:
            info = json.loads(direct)
        except ValueError:
            info = {}
        url = str(info.get("url", ""))
        if info.get("dir_info", {}).get("editable") and url.startswith("file:"):
            checkout = Path(unquote(urlparse(url).path))
            if (checkout / "hvballoon").resolve() == here:
                return "editable", checkout
            return "source", None
    located = Path(str(dist.locate_file("hvballoon/__init__.py"))).resolve().parent
    return ("installed", None) if located == here else ("source", None)


def install_command(
    extra: str, requirements: tuple[str, ...], origin: tuple[str, Path | None] | None = None
) -> str:
    """The command that installs the ``extra`` of the hvballoon that is running.

    Installed from an index, an sdist or a wheel: ``pip install 'hvballoon[kvm]'``; installed
    editable from a clone: ``pip install -e '/path/to/clone[kvm]'`` (installing from the index
    would replace the clone); run from a source tree that is not installed: the extra's own
    requirements.

    >>> install_command("kvm", ("libvirt-python>=9.0",), ("installed", None))
    "pip install 'hvballoon[kvm]'"
    >>> install_command("kvm", ("libvirt-python>=9.0",), ("editable", Path("/src/hvballoon")))
    "pip install -e '/src/hvballoon[kvm]'"
    >>> install_command("hyperv", ("pywinrm>=0.5", "requests-ntlm>=1.2"), ("source", None))
    "pip install 'pywinrm>=0.5' 'requests-ntlm>=1.2'"
    """
    how, checkout = origin if origin is not None else _origin()
    if how == "editable" and checkout is not None:
        return f"pip install -e {shlex.quote(f'{checkout}[{extra}]')}"
    if how == "installed" or not requirements:
        return f"pip install 'hvballoon[{extra}]'"
    return "pip install " + " ".join(
        shlex.quote(r) if any(c in r for c in "<>=!~[;") else r for r in requirements
    )


_FAKE = BackendSpec("fake", "hvballoon.fake.backend:FakeBackend", ("fake",))

_lock = threading.RLock()
#: Every known backend by name: the built-in declarations, read on first use, and what the entry
#: points (or a test) added.
_specs: dict[str, BackendSpec] = {}
_loaded = False
_scanned = False


def _table() -> dict[str, BackendSpec]:
    """:data:`_specs`, with the built-in backends' declarations read in (once; importing them
    imports no hypervisor library)."""
    global _loaded
    with _lock:
        if not _loaded:
            _specs.setdefault(_FAKE.name, _FAKE)
            package = importlib.import_module(BUILTIN_PACKAGE)
            for info in pkgutil.iter_modules(package.__path__, f"{BUILTIN_PACKAGE}."):
                spec = getattr(importlib.import_module(info.name), "SPEC", None)
                if isinstance(spec, BackendSpec):
                    _specs.setdefault(spec.name, spec)
            _loaded = True
        return _specs


def _scan_entry_points() -> None:
    """Add third-party backends from the entry-point group (once, on the first miss)."""
    global _scanned
    with _lock:
        if _scanned:
            return
        _scanned = True
        table = _table()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in table:
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
        for spec in _table().values():
            if scheme in spec.schemes:
                return spec
        base = scheme.split("+", 1)[0]
        for spec in _table().values():
            if base in spec.schemes:
                return spec
        if attempt == 0:
            _scan_entry_points()
    known = sorted({s for spec in _table().values() for s in spec.schemes if "+" not in s})
    raise InvalidURIError(
        f"no backend for URI scheme {scheme!r}; known schemes: {', '.join(known)} "
        "(libvirt transports such as qemu+ssh are accepted too)"
    )


def get_spec(name: str) -> BackendSpec:
    """The backend named ``name`` (unknown → BackendUnavailableError)."""
    if name not in _table():
        _scan_entry_points()
    try:
        return _table()[name]
    except KeyError:
        raise BackendUnavailableError(
            f"no backend named {name!r}; known: {', '.join(sorted(_table()))}"
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
        if missing_top == top and not spec.builtin:
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


def backends(*names: str, load: bool = True) -> list[BackendInfo]:
    """Every known backend and whether it can be used here; or only those ``names`` give (a
    backend's name or a URI scheme it serves: ``backends("kvm")``, ``backends("vcenter")``).

    With ``load=True`` (the default) each backend is imported, so a broken install is reported
    as ``"broken"``; with ``load=False`` only the presence of its distribution (a third-party
    backend) or of its hypervisor library (a built-in one) is checked. A name that is no
    backend's, or a name that is not a string (``backends(False)`` for ``load=False``), is an
    :class:`~hvballoon.errors.InvalidRequestError`.

    >>> [b.name for b in backends("qemu+ssh", "esxi", load=False)]
    ['kvm', 'esxi']
    """
    from hvballoon.units import true_or_false

    true_or_false(load, what="load")
    _scan_entry_points()
    specs = [_named(n) for n in names] if names else sorted(_table().values(), key=lambda s: s.name)
    out = []
    for spec in dict.fromkeys(specs):
        distribution = spec.distribution or "hvballoon"
        version = __version__ if spec.builtin else _version_of(distribution)
        status, problem = "installed", None
        if load:
            try:
                load_backend(spec.name)
            except BackendNotInstalledError as exc:
                status, problem = "missing", exc.message
            except BackendUnavailableError as exc:
                status, problem = "broken", exc.message
        elif (not spec.builtin and version is None) or (
            spec.native_module and not _importable(spec.native_module)
        ):
            status = "missing"
        primary = tuple(s for s in spec.schemes if "+" not in s)
        out.append(BackendInfo(spec.name, primary, status, distribution, version, spec.install_hint, problem))
    return out


def _named(name: object) -> BackendSpec:
    """The backend ``name`` gives to :func:`backends`: its own name or a URI scheme it serves."""
    if isinstance(name, bool):
        raise InvalidRequestError(
            f"backends() takes backend names and load= by keyword (backends(load={name})), got {name!r}"
        )
    known = sorted(_table())
    if not isinstance(name, str):
        raise InvalidRequestError(
            f"backends() takes backend names (e.g. backends('kvm')), got {type(name).__name__}; "
            f"known: {', '.join(known)}"
        )
    if name in _table():
        return _table()[name]
    try:
        return spec_for_scheme(name) if name and name.strip() == name else _table()[name]
    except (InvalidURIError, KeyError):
        from hvballoon._modelkeys import suggest

        raise InvalidRequestError(
            f"no backend named {name!r}{suggest(name, known)}; known: {', '.join(known)} "
            "(or a URI scheme one serves, e.g. 'qemu+ssh')",
            details={"known": known},
        ) from None


def _version_of(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False
