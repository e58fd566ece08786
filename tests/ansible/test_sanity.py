"""``ansible-test sanity`` on the collection (validate-modules, pep8, pylint, compile, import,
yamllint, …), in ansible-test's own virtual environments, without containers.

ansible-test bootstraps pip in its environments with a ``get-pip.py`` it downloads from outside
the package index; where that download is not possible, the cached copy it looks for first is
provided by ``tests/support/ansible/get_pip_shim.py`` (pip from :mod:`ensurepip`, then the index). The first run
installs each test's pinned requirements from the index (about a minute); later runs reuse them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ansible import GET_PIP_SHIM
from tests.support.require import require

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "ansible_collections" / "hvballoon" / "memory"


def _bootstrap_pip_version() -> str | None:
    try:
        import ansible_test
    except ImportError:
        return None
    source = Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
    m = re.search(r"pip='([0-9.]+)'", source.read_text(encoding="utf-8"))
    return m.group(1) if m else None


@pytest.mark.slow
def test_ansible_test_sanity() -> None:
    exe = shutil.which("ansible-test")
    require(exe, "ansible-core is not installed (pip install -e '.[test]')")
    version = _bootstrap_pip_version()
    require(version, "cannot tell which pip ansible-test bootstraps")
    assert version is not None and exe is not None
    cache = Path.home() / ".ansible" / "test" / "cache" / f"get_pip_{version.replace('.', '_')}.py"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(GET_PIP_SHIM, cache)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    r = subprocess.run(
        [exe, "sanity", "--python", python, "--color", "no"],
        cwd=COLLECTION,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    ran = re.findall(r'Running sanity test "([^"]+)"', r.stdout + r.stderr)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    assert {"validate-modules", "pep8", "pylint", "compile", "import", "yamllint", "ansible-doc"} <= set(ran)


@pytest.mark.slow
def test_collection_builds(tmp_path: Path) -> None:
    exe = shutil.which("ansible-galaxy")
    require(exe, "ansible-core is not installed (pip install -e '.[test]')")
    assert exe is not None
    r = subprocess.run(
        [exe, "collection", "build", str(COLLECTION), "--output-path", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    import tarfile

    (built,) = tmp_path.glob("hvballoon-memory-*.tar.gz")
    with tarfile.open(built) as tar:
        names = set(tar.getnames())
    for path in (
        "README.md",
        "meta/runtime.yml",
        "plugins/modules/memory_info.py",
        "plugins/modules/target.py",
        "plugins/modules/config.py",
        "plugins/module_utils/hvballoon_common.py",
        "plugins/doc_fragments/connection.py",
    ):
        assert path in names, path
    assert not any(n.startswith("tests/output") for n in names)
