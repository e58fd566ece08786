"""The backends' layout: one distribution, declarations the registry reads without importing a
hypervisor library, no backend reached from the core but through the registry's strings, and options
declared as models (module sizes: tests/test_module_size.py)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon import registry
from hvballoon.backend import Backend
from hvballoon.backend_kit import BackendOptions
from hvballoon.errors import InvalidRequestError
from tests.support.source import imports_in

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hvballoon"
BUILTIN = ("esxi", "hyperv", "kvm", "qmp")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in imports_in(path):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_nothing_in_the_core_imports_a_backend() -> None:
    """Only the backends' own modules import ``hvballoon.backends…``; the registry reaches them by
    strings (``"hvballoon.backends"``, ``"…kvm.backend:KVMBackend"``)."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "backends"):
            continue
        found = {
            n for n in _imports(path) if n == "hvballoon.backends" or n.startswith("hvballoon.backends.")
        }
        if found:
            offenders[str(path.relative_to(ROOT))] = sorted(found)
    assert not offenders, offenders
    assert registry.BUILTIN_PACKAGE == "hvballoon.backends"


def test_the_import_walker_sees_a_backend_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from hvballoon.backends.kvm import backend\nimport hvballoon.backends.qmp._errors\n")
    assert {"hvballoon.backends.kvm.backend", "hvballoon.backends.qmp._errors"} <= _imports(probe)


@pytest.mark.slow
def test_the_declarations_import_no_hypervisor_library_and_name_their_backend() -> None:
    code = (
        "import json, sys, hvballoon.registry as r; specs = r._table(); "
        "print(json.dumps({'specs': {n: [s.target, list(s.schemes)] for n, s in specs.items()}, "
        "'modules': sorted(sys.modules)}))"
    )
    out = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    loaded = set(out["modules"])
    for heavy in ("libvirt", "pyVmomi", "winrm", "requests", "qemu", "qemu.qmp"):
        assert heavy not in loaded, f"reading the declarations imported {heavy}"
    assert not [m for m in loaded if m.startswith("hvballoon.backends.") and m.count(".") > 2]
    assert set(out["specs"]) == {"fake", *BUILTIN}
    for name in BUILTIN:
        target, schemes = out["specs"][name]
        assert target.startswith(f"hvballoon.backends.{name}.backend:")
        cls = registry.load_backend(name)
        assert cls.name == name and tuple(cls.schemes) == tuple(schemes)  # one list, the declaration's


@pytest.mark.parametrize("name", BUILTIN)
def test_options_are_a_model_and_the_names_follow_from_it(name: str) -> None:
    cls = registry.load_backend(name)
    assert issubclass(cls.options_model, BackendOptions)
    assert cls.option_names == frozenset(cls.options_model.model_fields)


def _bool_options() -> list[tuple[str, str]]:
    out = []
    for name in BUILTIN:
        model = registry.load_backend(name).options_model
        out += [
            (name, field)
            for field, info in model.model_fields.items()
            if info.annotation in (bool, bool | None)
        ]
    return out


@pytest.mark.parametrize(("backend", "option"), _bool_options())
@pytest.mark.parametrize("value", ["no", "yes", 1, 0, "false"])
def test_a_bool_option_takes_only_true_or_false(backend: str, option: str, value: Any) -> None:
    """``perf_counters="no"`` once became True on ESXi; now every bool option of every backend
    refuses anything but True and False, before anything is opened."""
    model = registry.load_backend(backend).options_model
    with pytest.raises(InvalidRequestError, match=f"option {option} must be true or false, got {value!r}"):
        model.parse({option: value}, backend=backend)


def test_every_backend_has_a_bool_option_under_test() -> None:
    assert {b for b, _ in _bool_options()} >= {"esxi", "kvm", "qmp"}
    assert ("esxi", "perf_counters") in _bool_options()


def test_a_backend_without_a_model_keeps_its_option_names() -> None:
    class Legacy(Backend):  # a third-party backend written before the models
        name = "legacy"
        schemes = ("legacy",)
        option_names = frozenset({"world"})

    assert Legacy.option_names == {"world"} and Legacy.options_model is BackendOptions
    assert hvballoon.connect("fake://seed", world=None).backend_name == "fake"


@pytest.mark.slow
def test_hvballoon_backends_stays_callable_once_the_backends_package_is_imported() -> None:
    code = (
        "import hvballoon; before = [b.name for b in hvballoon.backends(load=False)]; "
        "import hvballoon.backends.kvm; after = [b.name for b in hvballoon.backends(load=False)]; "
        "print(before == after and 'kvm' in after and hvballoon.backends.kvm.SPEC.name == 'kvm')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
