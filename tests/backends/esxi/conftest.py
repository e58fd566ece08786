"""Fixtures for the ESXi backend's tests: a vSphere simulator populated with sensible figures.

Each simulator starts in well under a second once built, so tests that change VMs get a fresh
one (``peer``); read-only tests share a module-wide one (``shared_peer``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.require import require
from tests.support.vsphere.fleet import FLEET
from tests.support.vsphere.harness import VcsimServer, prerequisites


@pytest.fixture(scope="session", autouse=True)
def _vcsim_prerequisites() -> None:
    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))


@pytest.fixture(params=[True, False], ids=["fast_sweep", "pyvmomi_sweep"])
def fast_sweep(request: pytest.FixtureRequest) -> bool:
    """Both ways of reading the sweep: hand-written SOAP + ElementTree, and pyvmomi's."""
    return bool(request.param)


@pytest.fixture
def peer() -> Iterator[VcsimServer]:
    """A fresh https simulator per test (tests may change it)."""
    with VcsimServer(FLEET, https=True, hosts=2) as server:
        yield server


@pytest.fixture(scope="module")
def shared_peer() -> Iterator[VcsimServer]:
    """One http simulator per module, for tests that change nothing."""
    with VcsimServer(FLEET, hosts=2) as server:
        yield server
