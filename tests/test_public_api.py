from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import hvballoon


def test_all_is_sorted_and_complete() -> None:
    names = hvballoon.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(hvballoon, name)
    public = {
        n
        for n in dir(hvballoon)
        if not n.startswith("_") and not isinstance(getattr(hvballoon, n), types.ModuleType)
    }
    assert public <= set(names)


@pytest.mark.slow
def test_import_is_light() -> None:
    code = "import sys, json, hvballoon; print(json.dumps(sorted(m for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    for heavy in (
        "libvirt",
        "pyVmomi",
        "winrm",
        "requests",
        "pytest",
        "numpy",
        "matplotlib",
        "hvballoon.backends.kvm",
        "hvballoon.backends.esxi",
        "hvballoon.backends.hyperv",
        "hvballoon.backends.qmp",
        "qemu",
        "hvballoon.cli",
        "rich",
        "tenacity",
        "yaml",
        "hvballoon.fake",
    ):
        assert heavy not in loaded, f"import hvballoon imported {heavy}"


@pytest.mark.slow
def test_a_command_loads_only_its_own_module() -> None:
    """``hvballoon stats URI`` imports the commands on targets, not the controller, the
    exporter or the simulator's plots behind the others (the same process runs the command)."""
    code = (
        "import sys, json\n"
        "from hvballoon.cli import main\n"
        "try:\n"
        "    main(['stats', 'fake://seed', 'web01', '--json'])\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print(json.dumps([code, sorted(sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    code, modules = json.loads(out.splitlines()[-1])
    assert code == 0
    loaded = set(modules)
    assert "hvballoon.cli.targets" in loaded and "hvballoon.fake" in loaded
    for other in ("hvballoon.cli.fleet", "hvballoon.cli.autoballoon", "hvballoon.cli.simulate"):
        assert other not in loaded, other
    for heavy in ("hvballoon.policy", "hvballoon.outputs", "hvballoon.exporter", "matplotlib"):
        assert heavy not in loaded, f"hvballoon stats imported {heavy}"


def test_session_api_names() -> None:
    for name in (
        "list_vms",
        "get_stats",
        "get_config",
        "set_target",
        "set_config",
        "wait_for_target",
        "capabilities",
        "native",
        "close",
        "__enter__",
        "__exit__",
    ):
        assert hasattr(hvballoon.Hypervisor, name)
