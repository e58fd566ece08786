"""qmp:// URIs and the backend's options: malformed input is a clear, typed error, nothing opened."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon import registry
from hvballoon.backends.qmp.backend import QMPBackend
from hvballoon.errors import HVConnectionError, InvalidRequestError, InvalidURIError
from tests.support.qmp_server import Serve, connect


def test_the_scheme_is_served_by_this_backend() -> None:
    spec = registry.spec_for_scheme("qmp")
    assert spec.name == "qmp" and spec.native_module == "qemu.qmp"
    assert spec.extra == "qmp" and spec.install_hint.startswith("pip install ") and spec.builtin
    assert registry.load_backend("qmp") is QMPBackend


def test_a_directory_and_a_single_socket(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="web01")
    serve("102", name="web02")
    with connect(f"qmp://{qmp_dir}") as hv:
        assert sorted(v.name for v in hv.list_vms()) == ["web01", "web02"]
    with connect(f"qmp://{qmp_dir}/102.qmp") as hv:
        assert [v.name for v in hv.list_vms()] == ["web02"]
    with connect(f"qmp://localhost{qmp_dir}/") as hv:  # localhost and a trailing slash are fine
        assert len(hv.list_vms()) == 2


def test_a_percent_encoded_path(serve: Serve, qmp_dir: Path) -> None:
    spaced = qmp_dir / "my vms"
    spaced.mkdir()
    (spaced / "a.qmp").symlink_to(qmp_dir / "x.qmp")  # a link to a socket is that socket
    serve("x", name="linked")
    with connect(f"qmp://{qmp_dir}/my%20vms") as hv:
        assert [v.name for v in hv.list_vms()] == ["linked"]


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("qmp://pve1/var/run/qemu-server", "three slashes"),
        ("qmp://root@/var/run/qemu-server", "three slashes"),
        ("qmp://localhost:4444/var/run/qemu-server", "three slashes"),
        ("qmp://var/run/qemu-server", "three slashes"),
        ("qmp:///var/run/qemu-server?concurrency=4", "no query parameters"),
        ("qmp:///", "absolute path"),
        ("qmp://", "absolute path"),
        ("qmp:///a%00b", "absolute path"),
    ],
)
def test_malformed_uris(uri: str, words: str) -> None:
    with pytest.raises(InvalidURIError, match=words):
        hvballoon.connect(uri)


def test_a_missing_path_is_a_connection_error_that_says_where(tmp_path: Path) -> None:
    with pytest.raises(HVConnectionError) as info:
        connect(f"qmp://{tmp_path}/nothing-here.qmp")
    err = info.value
    assert not err.retryable and err.native_code == "ENOENT" and "is the VM running" in err.message


def test_neither_a_directory_nor_a_socket(tmp_path: Path) -> None:
    (tmp_path / "vm.qmp").write_text("a regular file")
    with pytest.raises(InvalidURIError, match="neither a directory nor a UNIX socket"):
        connect(f"qmp://{tmp_path}/vm.qmp")


def test_only_qmp_sockets_of_a_directory_count(node: str, qmp_dir: Path) -> None:
    bound = socket.socket(socket.AF_UNIX)
    bound.bind(str(qmp_dir / "105.qga"))  # a guest agent's socket: not a monitor
    try:
        with connect(node) as hv:
            stems = [Path(p).stem for p in hv.backend.sockets()]  # type: ignore[attr-defined]
    finally:
        bound.close()
    assert stems == ["101", "102", "103", "104"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"read_only": "yes"}, "read_only must be true or false"),
        ({"stats_period": -1}, "stats_period must be a whole number >= 0"),
        ({"stats_period": "10"}, "stats_period must be a whole number"),
        ({"stats_period": True}, "stats_period must be a whole number"),
        ({"stats_period": 2**31}, "stats_period must be a whole number >= 0 and <= 2147483647"),
        ({"concurrency": 0}, "concurrency must be a whole number >= 1"),
        ({"concurrency": 2.5}, "concurrency must be a whole number"),
        ({"persist": True}, "unknown option"),
    ],
)
def test_malformed_options(node: str, options: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidRequestError, match=words):
        connect(node, **options)
