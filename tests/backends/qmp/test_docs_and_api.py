"""The backend's docstring examples run, its public surface is what it says, it is declared as
the KVM kind (as the fake's kvm flavour), and it registers."""

from __future__ import annotations

import doctest

import pytest

import hvballoon
import hvballoon.backends.qmp
from hvballoon.backends.qmp import _errors, _monitor, _stats, backend
from hvballoon.kinds import KVM

pytest.importorskip("qemu.qmp")


@pytest.mark.parametrize("module", [backend, _errors, _stats, _monitor], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.failed == 0


def test_all_is_sorted_and_exported() -> None:
    assert hvballoon.backends.qmp.__all__ == sorted(hvballoon.backends.qmp.__all__)
    assert all(hasattr(hvballoon.backends.qmp, name) for name in hvballoon.backends.qmp.__all__)


def test_declared_by_the_kvm_kind_like_libvirt_and_the_fake_kvm_flavour() -> None:
    assert backend.QMPBackend.kind is KVM
    with hvballoon.connect("fake://?flavor=kvm") as fake:
        fake_caps = fake.capabilities
    kind_caps = KVM.capabilities(backend="qmp")
    for name in ("mechanism", "bulk_stats", "readable", "set_live", "set_offline", "alignment_bytes"):
        assert getattr(fake_caps, name) == getattr(backend.CAPABILITIES, name) == getattr(kind_caps, name), (
            name
        )
    assert backend.CAPABILITIES.backend == "qmp" and backend.CAPABILITIES.target_observable
    # QEMU's monitor has no place for marks (libvirt keeps them in the domain's metadata)
    assert fake_caps.marks and KVM.marks and not backend.CAPABILITIES.marks
