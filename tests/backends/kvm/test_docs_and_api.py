"""The backend's docstring examples run, its public surface is what it says, and it registers."""

from __future__ import annotations

import doctest

import pytest

import hvballoon
import hvballoon.backends.kvm
from hvballoon import registry
from hvballoon.backends.kvm import _domain, _errors, _marks, backend
from hvballoon.kinds import KVM

pytest.importorskip("libvirt")


@pytest.mark.parametrize("module", [backend, _errors, _domain, _marks], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.failed == 0


def test_all_is_sorted_and_exported() -> None:
    assert hvballoon.backends.kvm.__all__ == sorted(hvballoon.backends.kvm.__all__)
    assert all(hasattr(hvballoon.backends.kvm, name) for name in hvballoon.backends.kvm.__all__)


def test_the_registry_loads_this_backend() -> None:
    assert registry.load_backend("kvm") is backend.KVMBackend


def test_declared_by_the_kvm_kind_like_the_fake_kvm_flavour() -> None:
    assert backend.KVMBackend.kind is KVM
    with hvballoon.connect("fake://?flavor=kvm") as fake:
        fake_caps = fake.capabilities
    kind_caps = KVM.capabilities(backend="kvm")
    for name in ("mechanism", "bulk_stats", "readable", "set_live", "set_offline", "alignment_bytes"):
        assert getattr(fake_caps, name) == getattr(backend.CAPABILITIES, name) == getattr(kind_caps, name), (
            name
        )
    with hvballoon.connect("test:///default") as hv:
        assert hv.capabilities is backend.CAPABILITIES
    # libvirt keeps marks in the domain's metadata, as the kind declares and the fake models
    assert backend.CAPABILITIES.marks and fake_caps.marks and KVM.marks and KVM.marks_last_one_run
