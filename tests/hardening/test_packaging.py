"""Packaging: every distribution (core + four backends) builds, passes ``twine check``, installs
from its wheel into a fresh virtual environment, and ``hvballoon backends`` then lists every
backend as installed; versions and the CHANGELOG agree.

The build runs without isolation in a cached build environment (``.cache/packaging/buildenv``:
setuptools, build, twine — made once, about 30 s, then reused), so a run costs about 25 s. The
fresh environment sees the third-party dependencies of the environment running the suite
(libvirt-python would otherwise be compiled from source, which takes minutes): the base
interpreter's through ``--system-site-packages``, and, when the suite itself runs in a virtual
environment, that environment's too (see :func:`see_this_environment`). Our five wheels are
installed into it with ``--no-deps`` and the test checks that they, not this checkout, are what
imports.
"""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+: the packaging checks run on the development version

ROOT = Path(__file__).resolve().parents[2]
DISTS = {".": "hvballoon", "backends/kvm": "hvballoon-kvm", "backends/esxi": "hvballoon-esxi",
         "backends/hyperv": "hvballoon-hyperv", "backends/qmp": "hvballoon-qmp"}  # fmt: skip
BUILDENV = ROOT / ".cache" / "packaging" / "buildenv"


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


@pytest.mark.slow
def test_every_distribution_builds_checks_installs_and_is_listed(tmp_path: Path) -> None:
    env = _buildenv()
    dist = tmp_path / "dist"
    for where in DISTS:
        _run(
            _bin(env, "python"),
            "-m",
            "build",
            "--no-isolation",
            "-q",
            "--outdir",
            str(dist),
            str(ROOT / where),
        )
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    assert len(wheels) == len(sdists) == len(DISTS), sorted(p.name for p in dist.iterdir())
    checked = _run(_bin(env, "twine"), "check", "--strict", *map(str, wheels + sdists))
    assert checked.count("PASSED") == 2 * len(DISTS), checked

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", str(venv))
    see_this_environment(venv)
    py = _bin(venv, "python")
    _run(py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall", *map(str, wheels))
    where = json.loads(
        _run(py, "-c", "import json, hvballoon, hvballoon_kvm, hvballoon_esxi, hvballoon_hyperv as h, hvballoon_qmp as q; "
             "print(json.dumps([m.__file__ for m in (hvballoon, hvballoon_kvm, hvballoon_esxi, h, q)]))")
    )  # fmt: skip
    assert all(str(venv) in f for f in where), where  # the wheels, not this checkout
    listed = json.loads(_run(_bin(venv, "hvballoon"), "backends", "--json"))
    status = {b["name"]: b["status"] for b in listed}
    assert status == {
        "fake": "installed", "kvm": "installed", "esxi": "installed", "hyperv": "installed", "qmp": "installed"
    }  # fmt: skip
    assert {b["version"] for b in listed} == {_version()}


def test_versions_and_changelog_agree() -> None:
    version = _version()
    for where, name in DISTS.items():
        project = tomllib.loads((ROOT / where / "pyproject.toml").read_text())["project"]
        assert project["name"] == name
        if where != ".":
            assert project["version"] == version, f"{name} is {project['version']}, the core {version}"
            deps = project["dependencies"]
            assert f"hvballoon>={version}" in deps or any(d.startswith("hvballoon>=") for d in deps), deps
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", changelog, re.MULTILINE)
    assert headings and headings[0] in ("Unreleased", version), headings
    released = [h for h in headings if h != "Unreleased"]
    newer = [h for h in released if tuple(map(int, h.split("."))) > tuple(map(int, version.split(".")))]
    assert not newer, f"the CHANGELOG has releases newer than {version}: {newer}"


@pytest.mark.parametrize("where", list(DISTS))
def test_build_system_can_read_the_spdx_license(where: str) -> None:
    """``license = "Apache-2.0"`` (a PEP 639 expression) needs setuptools 77 or newer; an older
    one refuses the pyproject, so the floor in ``build-system.requires`` must say so."""
    data = tomllib.loads((ROOT / where / "pyproject.toml").read_text())
    if not isinstance(data["project"].get("license"), str):
        return
    req = next(r for r in data["build-system"]["requires"] if r.startswith("setuptools"))
    m = re.search(r">=\s*(\d+)", req)
    assert m and int(m.group(1)) >= 77, req
