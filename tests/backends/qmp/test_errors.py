"""The QMP error table: one test per row, then each kind of failure provoked for real through the
backend against an in-test QMP server (a real socket and the real protocol)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from qemu.qmp import ConnectError, ExecInterruptedError
from qemu.qmp.error import ProtocolError

from hvballoon.backend_kit import ErrorRule, ErrorTable
from hvballoon.backends.qmp._errors import ERRORS, qmp_error
from hvballoon.errors import (
    BackendError,
    HVBalloonError,
    HVConnectionError,
    InvalidRequestError,
    OperationTimeoutError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.models import VM
from tests.support.qmp_server import Serve, connect
from tests.support.require import require

#: A native exception, as the library or the OS raises it, for every type the table names.
NATIVE: dict[type[BaseException], Callable[[], BaseException]] = {
    FileNotFoundError: lambda: FileNotFoundError(errno.ENOENT, "No such file or directory"),
    ConnectionRefusedError: lambda: ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    PermissionError: lambda: PermissionError(errno.EACCES, "Permission denied"),
    TimeoutError: lambda: TimeoutError(),
    ExecInterruptedError: lambda: ExecInterruptedError("Disconnected"),
    EOFError: lambda: EOFError(),
    ConnectionResetError: lambda: ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    BrokenPipeError: lambda: BrokenPipeError(errno.EPIPE, "Broken pipe"),
    ProtocolError: lambda: ProtocolError("Server greeting was not understood"),
    OSError: lambda: OSError(errno.ENOTSOCK, "Socket operation on non-socket"),
}


def _native(rule: ErrorRule) -> BaseException:
    if rule.codes:
        (error_class,) = rule.codes
        return qmp_error(str(error_class), "some QEMU message")
    return NATIVE[rule.types[0]]()


@pytest.mark.parametrize("rule", ERRORS.rules, ids=ErrorRule.label)
def test_every_row_of_the_table(rule: ErrorRule) -> None:
    native = _native(rule)
    with pytest.raises(HVBalloonError) as info, ERRORS.mapped("do something", vm="101"):
        raise native
    err = info.value
    assert type(err) is rule.error
    assert err.__cause__ is native and err.native is native
    assert err.backend == "qmp" and err.vm == "101"
    assert err.retryable is (rule.retryable if rule.retryable is not None else rule.error.default_retryable)
    if rule.codes:
        assert err.native_code in rule.codes and "some QEMU message" in err.message
    elif isinstance(native, OSError) and native.errno:
        assert err.native_code == errno.errorcode[native.errno]
    else:
        assert err.native_code == type(native).__name__


def test_every_type_the_table_names_is_tested() -> None:
    named = {t for r in ERRORS.rules if not r.codes for t in r.types}
    assert named == set(NATIVE) | {asyncio.TimeoutError}


def test_the_most_specific_type_wins_whatever_the_row_order() -> None:
    # ConnectionRefusedError is an OSError (a later, broader row): the VM is gone, not a link fault
    for rows in (ERRORS.rules, tuple(reversed(ERRORS.rules))):
        table = ErrorTable("qmp", rows, codes=lambda e: (e.error_class,) if hasattr(e, "error_class") else ())
        assert type(table.map(NATIVE[ConnectionRefusedError](), "x")) is VMNotFoundError
        assert type(table.map(NATIVE[ConnectionResetError](), "x")) is HVConnectionError
        assert type(table.map(qmp_error("GenericError", "no"), "x")) is InvalidRequestError


def test_a_connect_error_is_mapped_by_its_root_cause() -> None:
    err = ERRORS.map(ConnectError("Failed to establish session", EOFError()), "connect")
    assert type(err) is HVConnectionError and err.native_code == "EOFError" and err.retryable


def test_an_unknown_qmp_error_class_is_a_backend_error_with_its_class() -> None:
    err = ERRORS.map(qmp_error("MigrationExpected", "wait for migration"), "x")
    assert type(err) is BackendError and err.native_code == "MigrationExpected"


def test_the_message_text_is_never_used_to_choose() -> None:
    err = ERRORS.map(qmp_error("GenericError", "No balloon device has been activated"), "x")
    assert type(err) is InvalidRequestError


# -- provoked for real through the backend ----------------------------------------------------


def test_generic_error_from_qemu_is_invalid_request(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="web01")
    with connect(f"qmp://{qmp_dir}") as hv:
        vm = hv.resolve("web01")
        with pytest.raises(InvalidRequestError) as info:
            hv.backend.apply_target(vm, 0)  # the session refuses this first; QEMU does too
    assert info.value.native_code == "GenericError" and info.value.vm == "web01"


def test_no_balloon_device(serve: Serve, qmp_dir: Path) -> None:
    vm_state = serve("104", name="plain01", balloon=False)
    with connect(f"qmp://{qmp_dir}") as hv:
        vm = hv.resolve("plain01")
        with pytest.raises(UnsupportedOperationError) as refused:
            hv.set_target(vm, "1GiB", force=True)
        assert "balloon" not in vm_state.received  # refused by the KVM kind before anything was sent
        with pytest.raises(UnsupportedOperationError) as info:
            hv.backend.apply_target(vm, 2**30)  # straight to QEMU, which refuses too
    assert refused.value.details["rule"] == "no_balloon_device"
    assert info.value.native_code == "DeviceNotActive"


def test_a_command_qemu_lacks(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="old", missing={"query-memory-size-summary"})
    with connect(f"qmp://{qmp_dir}") as hv, pytest.raises(UnsupportedOperationError) as info:
        hv.get_stats()
    assert info.value.native_code == "CommandNotFound" and info.value.vm == "101"


def test_a_socket_that_vanished_is_a_stopped_vm(serve: Serve, qmp_dir: Path, servers: list) -> None:
    serve("101", name="web01")
    serve("102", name="web02")
    with connect(f"qmp://{qmp_dir}") as hv:
        vm = hv.resolve("web02")
        servers[1].close()  # QEMU quit cleanly: it removes its socket
        assert [s.vm.name for s in hv.get_stats()] == ["web01"]  # a sweep: gone, not an error
        assert vm.id not in hv.backend._seen  # type: ignore[attr-defined]  # what it held is forgotten
        with pytest.raises(VMNotFoundError) as info:
            hv.get_stats([vm])
        assert info.value.native_code == "ENOENT"
        with pytest.raises(VMNotFoundError):
            hv.set_target(vm, "2GiB")


def test_a_stale_socket_is_a_stopped_vm(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="web01")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(qmp_dir / "102.qmp"))  # a QEMU killed with SIGKILL leaves its socket file
    stale.close()
    with connect(f"qmp://{qmp_dir}") as hv:
        assert [v.name for v in hv.list_vms()] == ["web01"]
    ghost = VM(id="x", name="102", backend="qmp", extra={"socket": str(qmp_dir / "102.qmp")})
    with connect(f"qmp://{qmp_dir}/102.qmp") as hv:
        assert hv.list_vms() == []
        with pytest.raises(VMNotFoundError) as info:
            hv.get_stats([ghost])
    assert info.value.native_code == "ECONNREFUSED"


def test_permission_denied_on_a_root_owned_socket(serve: Serve, qmp_dir: Path) -> None:
    """As an unprivileged user (a forked child drops to nobody), a root-owned 0755 socket refuses."""
    require(os.geteuid() == 0, "needs root, to drop to an unprivileged user")
    serve("101", name="web01")
    os.chmod(qmp_dir, 0o755)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = "none"
        try:
            os.setgid(65534)
            os.setuid(65534)
            with connect(f"qmp://{qmp_dir}") as hv:
                hv.list_vms()
        except HVBalloonError as exc:
            code = f"{exc.code}:{exc.native_code}"
        except BaseException as exc:
            code = f"other:{type(exc).__name__}"
        os.write(write_end, code.encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    answer = os.read(read_end, 200).decode()
    os.close(read_end)
    assert answer == "permission_denied:EACCES"


def test_a_monitor_that_never_answers_is_a_timeout(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="hung", silent=True)
    start = time.monotonic()
    with connect(f"qmp://{qmp_dir}", timeout=0.3) as hv, pytest.raises(OperationTimeoutError) as info:
        hv.list_vms()
    assert (
        info.value.retryable and info.value.vm == "101" and "one QMP client at a time" in info.value.message
    )
    assert time.monotonic() - start < 5


def test_a_monitor_held_by_another_client_is_a_timeout(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="web01")
    other = socket.socket(socket.AF_UNIX)
    other.connect(str(qmp_dir / "101.qmp"))  # someone else holds the one monitor connection
    other.recv(4096)  # greeted: it is being served
    try:
        with connect(f"qmp://{qmp_dir}", timeout=0.3) as hv, pytest.raises(OperationTimeoutError):
            hv.get_stats()
    finally:
        other.close()
    with connect(f"qmp://{qmp_dir}", timeout=5) as hv:  # released: served again
        assert len(hv.get_stats()) == 1


def test_a_connection_lost_mid_call_is_retried_once_transparently(
    serve: Serve, qmp_dir: Path, servers: list
) -> None:
    vm = serve("101", name="web01", hang_up={"query-balloon": 1})
    with connect(f"qmp://{qmp_dir}") as hv:
        (st,) = hv.get_stats()
    assert st.current_bytes == vm.actual and servers[0].connections == 2


def test_a_connection_lost_twice_is_a_retryable_connection_error(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="web01", hang_up={"query-balloon": 2})
    with connect(f"qmp://{qmp_dir}") as hv, pytest.raises(HVConnectionError) as info:
        hv.get_stats()
    assert info.value.retryable and "again on a new connection" in info.value.message
    assert isinstance(info.value.__cause__, (ExecInterruptedError, EOFError, ConnectionError))


def test_a_vm_that_stops_mid_call_is_not_found(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="web01", hang_up={"balloon": 1}, exit_on_hang_up=True)
    with connect(f"qmp://{qmp_dir}") as hv:
        vm = hv.resolve("web01")
        with pytest.raises(VMNotFoundError) as info:
            hv.set_target(vm, "2GiB", force=True)
    assert "stopped during the call" in info.value.message


def test_a_socket_that_does_not_speak_qmp(serve: Serve, qmp_dir: Path) -> None:
    serve("101", garbage=True)
    with connect(f"qmp://{qmp_dir}") as hv, pytest.raises(HVConnectionError) as info:
        hv.list_vms()
    assert info.value.retryable is False and "does not speak QMP" in info.value.message


def test_events_between_replies_are_ignored(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="web01", event_before_replies=True)
    with connect(f"qmp://{qmp_dir}") as hv:
        assert hv.set_target("web01", "3GiB", force=True).changed
        assert hv.wait_for_target("web01", timeout=5, poll_interval=0.05).current_bytes == 3 * 2**30


@pytest.mark.parametrize(
    ("command", "value"),
    [
        ("query-name", []),
        ("query-name", {"name": 5}),
        ("query-uuid", {"UUID": 12}),
        ("query-status", "running"),
        ("query-memory-size-summary", {"base-memory": "4G"}),
        ("query-memory-size-summary", {"base-memory": -4096}),
        ("query-balloon", []),
        ("query-balloon", {"actual": "x"}),
        ("query-balloon", {"actual": -1}),
        ("query-balloon", {"actual": 2**70}),
    ],
    ids=lambda v: str(v)[:24],
)
def test_an_answer_that_breaks_the_schema_is_a_backend_error(
    serve: Serve, qmp_dir: Path, command: str, value: object
) -> None:
    # a well-formed QMP reply whose value is not what QEMU's schema gives (a broken or foreign
    # peer): a typed error naming the command, never an AttributeError or a ValidationError
    serve("101", name="web01", uuid="11111111-1111-4111-8111-111111111111", malformed={command: value})
    with connect(f"qmp://{qmp_dir}") as hv:
        calls: list[Callable[[], object]] = [hv.get_stats, lambda: hv.get_config("web01")]
        if command in ("query-name", "query-uuid", "query-status"):
            calls.append(hv.list_vms)
        for call in calls:
            with pytest.raises(BackendError) as info:
                call()
            assert info.value.native_code == "malformed_reply" and command in info.value.message
            assert info.value.vm == "101"


def test_a_balloon_listed_without_a_name_is_no_balloon(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="web01", malformed={"qom-list": [{"type": "child<virtio-balloon-pci>"}]})
    with connect(f"qmp://{qmp_dir}") as hv:
        (st,) = hv.get_stats()
        assert st.current_bytes == 4 * 2**30 and st.guest_total_bytes is None
