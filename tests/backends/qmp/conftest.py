"""Fixtures for the QMP backend's fast tests: in-test QMP servers (see
:mod:`tests.support.qmp_server`) in a short-named directory (UNIX socket paths are limited to
108 bytes)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hvballoon.session import Hypervisor
from tests.support.qmp_server import FakeQemu, Gauge, QmpServer, Serve, booted_long_ago, connect

pytest.importorskip("qemu.qmp")


@pytest.fixture
def qmp_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hvbq-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def gauge() -> Gauge:
    """Counts the clients served at once by every server of a test."""
    return Gauge()


@pytest.fixture
def servers() -> list[QmpServer]:
    return []


@pytest.fixture
def serve(qmp_dir: Path, gauge: Gauge, servers: list[QmpServer]) -> Iterator[Serve]:
    """``serve("101", name="web01", …)``: a QMP server at ``<qmp_dir>/101.qmp`` for a FakeQemu."""

    def start(stem: str, **state: Any) -> FakeQemu:
        vm = FakeQemu(**state)
        servers.append(QmpServer(qmp_dir / f"{stem}.qmp", vm, gauge))
        return vm

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def node(serve: Serve, qmp_dir: Path) -> str:
    """A small Proxmox-like node: named, unnamed, paused, balloon-less and already-polled VMs."""
    serve("101", name="web01", uuid="11111111-1111-4111-8111-111111111111", last_update=booted_long_ago())
    serve("102", name="db01", uuid="22222222-2222-4222-8222-222222222222", base_memory=8192 * 2**20,
          period=2, last_update=int(time.time()), balloon_id=None, pci=False)  # fmt: skip
    serve("103", name=None, uuid="33333333-3333-4333-8333-333333333333", status="paused")
    serve("104", name="plain01", uuid="44444444-4444-4444-8444-444444444444", balloon=False)
    (qmp_dir / "101.qga").write_text("not a socket: the guest agent's would be one, but it is no .qmp")
    (qmp_dir / "105.pid").write_text("12345")
    return f"qmp://{qmp_dir}"


@pytest.fixture
def node_hv(node: str) -> Iterator[Hypervisor]:
    with connect(node, stats_period=2) as hv:
        yield hv
