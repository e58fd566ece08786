from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

import hvballoon
from hvballoon import registry
from hvballoon.errors import BackendBrokenError, BackendNotInstalledError, InvalidURIError


@pytest.mark.parametrize(
    ("scheme", "name"),
    [
        ("qemu", "kvm"),
        ("qemu+ssh", "kvm"),
        ("qemu+tls", "kvm"),
        ("test", "kvm"),
        ("esxi", "esxi"),
        ("vcenter", "esxi"),
        ("hyperv", "hyperv"),
        ("qmp", "qmp"),
        ("fake", "fake"),
        ("QEMU+SSH", "kvm"),
    ],
)
def test_scheme_to_backend(scheme: str, name: str) -> None:
    assert registry.spec_for_scheme(scheme).name == name


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(InvalidURIError, match=r"known schemes: .*esxi.*fake.*hyperv.*qmp"):
        hvballoon.connect("xen://host")


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(("hvb_test_", "hvb_native_"))]:
        del sys.modules[name]


def _register(monkeypatch: pytest.MonkeyPatch, name: str, target: str) -> None:
    spec = registry.BackendSpec(name, target, (name,), f"hvballoon-{name}", name, None)
    monkeypatch.setitem(registry._specs, name, spec)


def test_missing_distribution_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch, "nothere", "hvb_test_nothere.backend:B")
    with pytest.raises(BackendNotInstalledError) as info:
        hvballoon.connect("nothere://h")
    assert "pip install hvballoon-nothere" in str(info.value)
    assert info.value.details["install"].startswith("pip install hvballoon-nothere")
    assert info.value.exit_code == 3


def test_missing_native_library_is_not_installed(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (plugin_dir / "hvb_test_nolib.py").write_text("import hvb_native_absent\n")
    _register(monkeypatch, "nolib", "hvb_test_nolib:B")
    with pytest.raises(BackendNotInstalledError, match="hvb_native_absent"):
        hvballoon.connect("nolib://h")


def test_broken_native_library_is_told_apart(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the library is present, but its C extension cannot load (what a missing libvirt.so looks like)
    (plugin_dir / "hvb_native_broken.py").write_text(
        "raise ImportError('libvirt.so.0: cannot open shared object file', name='hvb_native_broken_c')\n"
    )
    (plugin_dir / "hvb_native_broken_c.py").write_text("")
    (plugin_dir / "hvb_test_broken.py").write_text("import hvb_native_broken\n")
    _register(monkeypatch, "broken", "hvb_test_broken:B")
    with pytest.raises(BackendBrokenError) as info:
        hvballoon.connect("broken://h")
    assert isinstance(info.value.__cause__, ImportError)
    assert "cannot open shared object" in str(info.value)


def test_oserror_on_load_is_broken(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (plugin_dir / "hvb_test_oserr.py").write_text("raise OSError('undefined symbol: virConnectOpen')\n")
    _register(monkeypatch, "oserr", "hvb_test_oserr:B")
    with pytest.raises(BackendBrokenError):
        hvballoon.connect("oserr://h")


def test_third_party_backend_through_entry_points(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (plugin_dir / "hvb_test_third.py").write_text(
        textwrap.dedent("""
        from hvballoon.fake.backend import FakeBackend
        class ThirdBackend(FakeBackend):
            name = "third"
            schemes = ("third",)
    """)
    )

    class EP:
        name = "third"
        value = "hvb_test_third:ThirdBackend"
        dist = None

        def load(self) -> type:
            import hvb_test_third

            return hvb_test_third.ThirdBackend

    monkeypatch.setattr(registry, "_scanned", False)
    monkeypatch.setattr(registry, "_specs", dict(registry._specs))
    monkeypatch.setattr(
        registry.metadata, "entry_points", lambda group: [EP()] if group == registry.ENTRY_POINT_GROUP else []
    )
    with hvballoon.connect("third://seed") as hv:
        assert hv.backend_name == "third"
        assert len(hv.list_vms()) == 10


def test_backends_lists_fake_installed() -> None:
    rows = {r.name: r for r in hvballoon.backends()}
    assert rows["fake"].status == "installed"
    assert set(rows) >= {"fake", "kvm", "esxi", "hyperv"}
    for row in rows.values():
        assert row.status in {"installed", "missing", "broken"}
        if row.status != "installed":
            assert "pip install" in row.install_hint


class _Dist:
    """Stands in for hvballoon's installed distribution metadata."""

    def __init__(self, direct_url: str | None, located: Path) -> None:
        self.direct_url, self.located = direct_url, located

    def read_text(self, name: str) -> str | None:
        return self.direct_url if name == "direct_url.json" else None

    def locate_file(self, path: str) -> Path:
        return self.located / path


ROOT = Path(registry.__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("dist", "hint"),
    [
        # editable from this checkout: the clone's extra (installing from an index would replace it)
        (
            _Dist(json.dumps({"url": ROOT.as_uri(), "dir_info": {"editable": True}}), ROOT),
            f"pip install -e '{ROOT}[kvm]'",
        ),
        # a wheel or sdist install of this very package: the extra from the index
        (_Dist(None, ROOT), "pip install 'hvballoon[kvm]'"),
        # installed elsewhere (this source tree is on sys.path instead): the library itself
        (
            _Dist(
                json.dumps({"url": "file:///elsewhere", "dir_info": {"editable": True}}), Path("/elsewhere")
            ),
            "pip install 'libvirt-python>=9.0'",
        ),
        (None, "pip install 'libvirt-python>=9.0'"),
    ],
    ids=["editable", "installed", "elsewhere", "not-installed"],
)
def test_the_install_hint_works_where_hvballoon_runs(
    monkeypatch: pytest.MonkeyPatch, dist: _Dist | None, hint: str
) -> None:
    def distribution(name: str) -> _Dist:
        if dist is None:
            raise registry.metadata.PackageNotFoundError(name)
        return dist

    monkeypatch.setattr(registry.metadata, "distribution", distribution)
    kvm = registry.get_spec("kvm")
    assert (
        kvm.install_hint
        == f"{hint}; libvirt-python builds against libvirt's headers (Debian: apt install libvirt-dev pkg-config gcc python3-dev)"
    )
    assert registry.get_spec("esxi").install_hint.startswith(
        hint.replace("[kvm]", "[esxi]").replace("'libvirt-python>=9.0'", "'pyvmomi>=8.0'")
    )
