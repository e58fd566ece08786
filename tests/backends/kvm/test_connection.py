"""URIs, options, credentials, read-only use, deadlines and the one transparent reconnect."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

import hvballoon
from hvballoon import registry
from hvballoon.backends.kvm import _connection
from hvballoon.backends.kvm.backend import KVMBackend
from hvballoon.errors import HVConnectionError, InvalidRequestError, OperationTimeoutError
from hvballoon.session import Hypervisor

libvirt = pytest.importorskip("libvirt")

URIS = [
    "qemu:///system",
    "qemu:///session",
    "qemu+ssh://admin@kvm01.example.com/system",
    "qemu+tcp://kvm01.example.com/system",
    "qemu+tls://kvm01.example.com:16514/system?pkipath=/etc/pki/libvirt",
    "qemu+unix:///system?socket=/run/libvirt/libvirt-sock-ro",
    "qemu:///embed?root=/var/tmp/hvb-root",
    "test:///default",
]


class _Captured(Exception):
    pass


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stop at libvirt's open and record what the backend handed it."""
    calls: list[dict[str, Any]] = []

    def fake_open(uri: str, auth: list[Any], flags: int) -> Any:
        calls.append({"uri": uri, "auth": auth, "flags": flags})
        raise _Captured

    monkeypatch.setattr(_connection.libvirt, "openAuth", fake_open)
    monkeypatch.setattr(_connection, "ensure_event_loop", lambda: False)
    return calls


def _connect(uri: str, **kw: Any) -> None:
    with pytest.raises(_Captured):
        hvballoon.connect(uri, retry=hvballoon.RetryPolicy(max_attempts=1), **kw)


@pytest.mark.parametrize("uri", URIS)
def test_uri_reaches_libvirt_verbatim(uri: str, captured: list[dict[str, Any]]) -> None:
    assert registry.spec_for_scheme(uri.split(":", 1)[0]).name == "kvm"
    _connect(uri)
    assert captured[0]["uri"] == uri
    assert captured[0]["flags"] == 0


def test_every_declared_scheme_is_the_registry_s(captured: list[dict[str, Any]]) -> None:
    for scheme in KVMBackend.schemes:
        assert registry.spec_for_scheme(scheme).name == "kvm"


def test_read_only_opens_with_vir_connect_ro(captured: list[dict[str, Any]]) -> None:
    _connect("qemu:///system", read_only=True)
    assert captured[0]["flags"] & libvirt.VIR_CONNECT_RO


def test_password_answers_the_credential_callback_and_is_never_shown(
    captured: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _connect("qemu+tcp://alice@kvm01.example.com/system", password="s3cret-pw")
    credtypes, callback, data = captured[0]["auth"]
    assert libvirt.VIR_CRED_PASSPHRASE in credtypes and libvirt.VIR_CRED_AUTHNAME in credtypes
    creds = [
        [libvirt.VIR_CRED_AUTHNAME, "Username", "", "", None],
        [libvirt.VIR_CRED_PASSPHRASE, "Password", "", "", None],
    ]
    assert callback(creds, data) == 0
    assert creds[0][4] == "alice" and creds[1][4] == "s3cret-pw"
    assert "s3cret-pw" not in caplog.text
    assert "s3cret-pw" not in str(captured[0]["uri"])


def test_without_a_password_the_callback_refuses(captured: list[dict[str, Any]]) -> None:
    _connect("qemu+tcp://alice@kvm01.example.com/system")
    _, callback, data = captured[0]["auth"]
    assert callback([[libvirt.VIR_CRED_PASSPHRASE, "Password", "", "", None]], data) == -1


def test_embedded_uri_starts_an_event_loop_unless_told_not_to(
    captured: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[bool] = []
    monkeypatch.setattr("hvballoon.backends.kvm.backend.ensure_event_loop", lambda: started.append(True) or True)
    _connect("qemu:///embed?root=/var/tmp/x")
    _connect("qemu:///embed?root=/var/tmp/x", event_loop=False)
    _connect("test:///default")
    assert started == [True]


@pytest.mark.parametrize(
    "options",
    [
        {"read_only": "yes"},
        {"persist": 1},
        {"stats_period": -1},
        {"stats_period": 2.5},
        {"stats_period": 2**32},  # libvirt takes a C int: 2**31 - 1 at most
        {"keepalive": (5,)},
        {"keepalive": (2**31, 3)},
        {"no_such_option": True},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        hvballoon.connect("test:///default", **options)


def test_an_existing_event_loop_is_detected_and_kept() -> None:
    # registering is process-wide; after it, the probe must see it and not register again
    _connection.ensure_event_loop()
    assert _connection.event_loop_registered()
    assert _connection.ensure_event_loop() is False


# -- read-only use against the test driver ---------------------------------------------------


def test_read_only_session_reads_but_does_not_arm_the_period(node_uri: str) -> None:
    with hvballoon.connect(node_uri, read_only=True) as hv:
        stats = {s.vm.name: s for s in hv.get_stats()}
        assert stats["web01"].current_bytes == 3072 * 2**20
        assert hv.get_config("web01").stats_period_seconds == 0


# -- the one transparent reconnect -----------------------------------------------------------


def test_a_closed_connection_is_reopened_once_transparently(hv: Hypervisor) -> None:
    link = hv.backend.link  # type: ignore[attr-defined]
    old = hv.native
    old.close()  # the connection dies under the backend (as when libvirtd restarts)
    assert [v.name for v in hv.list_vms()] == ["test"]
    assert link.reconnects == 1 and hv.native is not old
    assert hv.get_stats()[0].current_bytes == 2 * 2**30


def test_a_second_failure_is_a_retryable_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with hvballoon.connect("test:///default", retry=hvballoon.RetryPolicy(max_attempts=1)) as hv:
        link = hv.backend.link  # type: ignore[attr-defined]
        real_open = link.connect

        def dead_open() -> Any:
            conn = real_open()
            conn.close()  # reconnecting "succeeds" but the link is dead again at once
            return conn

        monkeypatch.setattr(link, "connect", dead_open)
        hv.native.close()
        with pytest.raises(HVConnectionError) as info:
            hv.list_vms()
        assert info.value.retryable
        assert "reconnecting once" in info.value.message
        assert info.value.__cause__ is not None


def test_connection_errors_that_are_not_a_dead_link_are_not_retried_by_reconnecting(
    hv: Hypervisor,
) -> None:
    from hvballoon.backends.kvm._errors import fake_error

    link = hv.backend.link  # type: ignore[attr-defined]

    def fails(_conn: Any) -> None:
        raise fake_error(libvirt.VIR_ERR_RPC, "rpc hiccup")

    with pytest.raises(HVConnectionError) as info:
        link.call("poke", fails)
    assert link.reconnects == 0  # the connection is still alive: mapped, not reopened
    assert info.value.native_code == "VIR_ERR_RPC" and info.value.retryable


# -- deadlines -------------------------------------------------------------------------------


def test_a_call_past_its_deadline_is_a_retryable_timeout_and_the_next_call_works() -> None:
    with hvballoon.connect("test:///default", timeout=0.2) as hv:
        link = hv.backend.link  # type: ignore[attr-defined]
        release = threading.Event()
        start = time.monotonic()
        with pytest.raises(OperationTimeoutError) as info:
            link.call("hang", lambda _c: release.wait(10))
        assert time.monotonic() - start < 2
        assert info.value.retryable and info.value.details["timeout_seconds"] == 0.2
        release.set()
        assert [v.name for v in hv.list_vms()] == ["test"]
