"""Fixtures: the loopback WinRM peer with a fake Hyper-V host behind it, and sessions on it
(built on :mod:`tests.support.hyperv`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.hyperv.peer import COMBO_IDS, COMBOS, Peer, start_peer


@pytest.fixture(scope="module", params=COMBOS, ids=COMBO_IDS)
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    """One server per transport for the module; each test gets a fresh world (see ``hv``)."""
    transport, https = request.param
    yield from start_peer(transport, https)


@pytest.fixture
def basic_peer() -> Iterator[Peer]:
    """A private Basic/HTTP server for tests that script faults or inspect counts."""
    yield from start_peer("basic", False)


@pytest.fixture
def hv(peer: Peer) -> Iterator[Any]:
    """A session on a fresh ``seed`` world (hyperv flavour)."""
    from tests.support.hyperv.fakehost import hyperv_world

    peer.host.world = hyperv_world()
    peer.server.reset_counts()
    with peer.connect() as session:
        yield session
