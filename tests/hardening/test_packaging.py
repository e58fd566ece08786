"""Packaging: hvballoon is one distribution with the backends inside and their hypervisor
libraries as extras (the SQLAlchemy model). It builds an sdist and, from that sdist, a wheel; both
pass ``twine check``; the wheel installs with every extra into a fresh virtual environment, and
``hvballoon backends`` then lists every backend as installed; versions and the CHANGELOG agree;
the extras name exactly what each backend declares it needs.

The build runs without isolation in a cached build environment (``.cache/packaging/buildenv``:
setuptools, build, twine — made once, about 30 s, then reused), so a run costs about 25 s. The
fresh environment sees the third-party dependencies of the environment running the suite
(libvirt-python would otherwise be compiled from source, which takes minutes): the base
interpreter's through ``--system-site-packages``, and, when the suite itself runs in a virtual
environment, that environment's too (see :func:`see_this_environment`). The wheel is installed
with ``--no-index``, so every requirement of every extra must already be satisfied there, and the
test checks that the wheel, not this checkout, is what imports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from hvballoon import registry
from tests.support.require import require

tomllib = pytest.importorskip("tomllib")  # Python 3.11+: the packaging checks run on the development version

ROOT = Path(__file__).resolve().parents[2]
BUILDENV = ROOT / ".cache" / "packaging" / "buildenv"
BUILTIN = ("esxi", "hyperv", "kvm", "qmp")


def _bin(venv: Path, name: str) -> str:
    return str(venv / ("Scripts" if sys.platform == "win32" else "bin") / name)


def _run(*cmd: str, timeout: float = 120, cwd: Path | None = None) -> str:
    # run outside the checkout: python -c puts the working directory first on sys.path, and so
    # does a PYTHONPATH naming a checkout (the environment's, not the wheels')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd or Path(sys.prefix), env=env
    )
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _buildenv() -> Path:
    if not Path(_bin(BUILDENV, "twine")).exists():
        _run(sys.executable, "-m", "venv", "--clear", str(BUILDENV))
        _run(
            _bin(BUILDENV, "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "setuptools>=77",
            "build",
            "twine",
            timeout=300,
        )
    return BUILDENV


def see_this_environment(venv: Path) -> list[str]:
    """Let ``venv`` import what the running interpreter's own environment has; the directories.

    A virtual environment made from inside another one is based on the *base* interpreter, so
    ``--system-site-packages`` shows it the base's packages, not those of the environment the
    suite runs in (where setup.sh installed libvirt-python, pyvmomi, …). A ``.pth`` file in
    ``venv``'s site-packages adds the running environment's site directories after ``venv``'s
    own, so the wheels installed into ``venv`` still win. Their ``.pth`` files are not run (a
    path line is not a site directory), so an editable install of this checkout there does not
    shadow the wheels either. Outside a virtual environment there is nothing to add.
    """
    if sys.prefix == sys.base_prefix:
        return []
    dirs = [
        d for d in dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib")]) if Path(d).is_dir()
    ]
    out = _run(_bin(venv, "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    (Path(out.strip()) / "_hvballoon_outer_environment.pth").write_text(
        "\n".join(dirs) + "\n", encoding="utf-8"
    )
    return dirs


def _version() -> str:
    text = (ROOT / "hvballoon" / "_version.py").read_text()
    m = re.search(r'__version__ = "([^"]+)"', text)
    assert m
    return m.group(1)


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.slow
def test_the_distribution_builds_checks_installs_with_every_extra_and_lists_every_backend(tmp_path: Path) -> None:
    env = _buildenv()
    dist = tmp_path / "dist"
    # sdist first, then the wheel built from the unpacked sdist (what pip does with an sdist)
    _run(_bin(env, "python"), "-m", "build", "--no-isolation", "-q", "--outdir", str(dist), str(ROOT), timeout=300)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    checked = _run(_bin(env, "twine"), "check", "--strict", str(wheel), str(sdist))
    assert checked.count("PASSED") == 2, checked
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in BUILTIN:
        assert f"hvballoon/backends/{name}/__init__.py" in names and f"hvballoon/backends/{name}/backend.py" in names
    assert "hvballoon/py.typed" in names and not any(n.startswith(("tests/", "backends/")) for n in names)

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", str(venv))
    see_this_environment(venv)
    py = _bin(venv, "python")
    # --no-index: each extra's requirements must be satisfied by what the environment has
    _run(py, "-m", "pip", "install", "-q", "--no-index", "--force-reinstall", "--no-deps", str(wheel))
    _run(py, "-m", "pip", "install", "-q", "--no-index", f"{wheel}[{','.join(BUILTIN)}]")
    where = json.loads(
        _run(py, "-c", "import json, hvballoon, hvballoon.backends.kvm.backend as k, hvballoon.backends.qmp as q; "
             "print(json.dumps([m.__file__ for m in (hvballoon, k, q)]))")
    )  # fmt: skip
    assert all(str(venv) in f for f in where), where  # the wheel, not this checkout
    listed = json.loads(_run(_bin(venv, "hvballoon"), "backends", "--json"))
    status = {b["name"]: b["status"] for b in listed}
    assert status == {"fake": "installed", "kvm": "installed", "esxi": "installed", "hyperv": "installed", "qmp": "installed"}  # fmt: skip
    assert {b["version"] for b in listed} == {_version()} and {b["distribution"] for b in listed} == {"hvballoon"}
    # installed from a wheel, a missing library's hint is the extra from an index
    hint = _run(py, "-c", "from hvballoon.registry import get_spec; print(get_spec('kvm').install_hint)")
    assert hint.startswith("pip install 'hvballoon[kvm]'; libvirt-python builds against libvirt's headers")


def test_each_extra_installs_what_its_backend_declares() -> None:
    """The extras (pyproject) and the backends' declarations (``SPEC.requirements``) agree, and
    ``all`` is every backend's extra."""
    extras = _project()["project"]["optional-dependencies"]
    for name in BUILTIN:
        spec = registry.get_spec(name)
        assert spec.extra == name and spec.builtin
        assert tuple(extras[name]) == spec.requirements, name
    assert extras["all"] == [f"hvballoon[{','.join(['kvm', 'esxi', 'hyperv', 'qmp'])}]"]
    assert set(BUILTIN) | {"fake"} == {s.name for s in registry._table().values()}
    assert "tox>=4" in extras["test"] and any(r.startswith("mkdocs") for r in extras["docs"])


def test_versions_and_changelog_agree() -> None:
    version = _version()
    assert _project()["project"]["name"] == "hvballoon"
    assert not (ROOT / "backends").exists(), "the backends ship inside hvballoon (hvballoon/backends)"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", changelog, re.MULTILINE)
    assert headings and headings[0] in ("Unreleased", version), headings
    released = [h for h in headings if h != "Unreleased"]
    newer = [h for h in released if tuple(map(int, h.split("."))) > tuple(map(int, version.split(".")))]
    assert not newer, f"the CHANGELOG has releases newer than {version}: {newer}"


def test_build_system_can_read_the_spdx_license() -> None:
    """``license = "Apache-2.0"`` (a PEP 639 expression) needs setuptools 77 or newer; an older
    one refuses the pyproject, so the floor in ``build-system.requires`` must say so."""
    data = _project()
    assert isinstance(data["project"].get("license"), str)
    req = next(r for r in data["build-system"]["requires"] if r.startswith("setuptools"))
    m = re.search(r">=\s*(\d+)", req)
    assert m and int(m.group(1)) >= 77, req


USER_SCRIPT = '''\
import hvballoon


def names(uri: str) -> list[str]:
    with hvballoon.connect(uri) as hv:
        return [vm.name for vm in hv.list_vms()]


size: int = hvballoon.parse_size("4GiB")
'''


@pytest.mark.slow
def test_an_editable_install_is_type_checkable(tmp_path: Path) -> None:
    """``pip install -e .`` (the README's install) into a fresh venv, then ``mypy --strict`` on a
    user's script that imports hvballoon: mypy finds the package and its types (a script with a
    type error is caught, so the package is really seen, not skipped as missing)."""
    require(shutil.which("mypy"), "mypy is not installed (pip install -e '.[lint]')")
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, clone / name)
    shutil.copytree(ROOT / "hvballoon", clone / "hvballoon", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    # no dependencies: what is checked is how the package itself is found
    _run(_bin(venv, "python"), "-m", "pip", "install", "-q", "--no-deps", "-e", str(clone), timeout=300)
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(USER_SCRIPT)
    bad.write_text(USER_SCRIPT.replace("size: int", "size: str"))

    def mypy(script: Path) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable",
             _bin(venv, "python"), "--cache-dir", str(tmp_path / "cache"), str(script)],
            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env, check=False,
        )  # fmt: skip

    ok = mypy(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = mypy(bad)
    assert wrong.returncode == 1 and 'variable has type "str"' in wrong.stdout, wrong.stdout + wrong.stderr


def _quick_start() -> list[str]:
    readme = (ROOT / "README.md").read_text("utf-8")
    m = re.search(r"^## Quick start\n.*?```bash\n(.*?)```", readme, re.MULTILINE | re.DOTALL)
    assert m, "the README has a quick start with a bash block"
    return [line for line in m.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_the_quick_start_is_two_commands_in_a_venv_and_ci_runs_the_second() -> None:
    """The README's quick start is exactly two commands, each making the virtual environment a
    fresh Debian needs for pip; CI runs the second one, word for word."""
    first, second = _quick_start()
    for command in (first, second):
        assert command.startswith("python3 -m venv .venv && "), command
    assert "pip install -e ." in first and first.endswith("hvballoon stats fake://seed"), first
    assert "bash scripts/setup.sh" in second and "-m pytest" in second, second
    ci = [line for line in (ROOT / ".ci" / "run").read_text("utf-8").splitlines() if line and line[0] != "#"]
    assert ci[-1] == second, ci[-1]
