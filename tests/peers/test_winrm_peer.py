"""The loopback WinRM server, proven with the unmodified pywinrm client.

Each test starts its own server on a free loopback port (about a millisecond; a few more with
HTTPS for the certificate). The latency test prints a table of per-command times.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.require import require
from tests.support.winrm.harness import HandlerError, WinRMServer, prerequisites
from tests.support.winrm.server import OPERATION_TIMEOUT, SHELL_NOT_FOUND, Router

pytestmark = pytest.mark.peer

USER, PASSWORD = "admin", "s3cret"
COMBOS = [("basic", False), ("ntlm", False), ("basic", True), ("ntlm", True)]
COMBO_IDS = [f"{t}-{'https' if h else 'http'}" for t, h in COMBOS]


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    reasons = prerequisites(transport="ntlm", https=True)
    require(not reasons, "; ".join(reasons))


@contextlib.contextmanager
def peer(
    transport: str = "basic", https: bool = False, handler: Any = None, **options: Any
) -> Iterator[WinRMServer]:
    with WinRMServer(handler, transport=transport, https=https, **options) as server:
        yield server


def session(server: WinRMServer, password: str = PASSWORD, **overrides: Any) -> Any:
    import winrm

    return winrm.Session(server.endpoint, auth=(USER, password), **{**server.client_options(), **overrides})


def protocol(server: WinRMServer, password: str = PASSWORD, **overrides: Any) -> Any:
    from winrm.protocol import Protocol

    options = {**server.client_options(), **overrides}
    return Protocol(server.endpoint, username=USER, password=password, **options)


def encoded(script: str) -> str:
    return "powershell -encodedcommand " + base64.b64encode(script.encode("utf-16-le")).decode("ascii")


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("transport", "https"), COMBOS, ids=COMBO_IDS)
def test_run_ps_round_trip(transport: str, https: bool) -> None:
    with peer(transport, https) as server:
        response = session(server).run_ps("Write-Output 'hello from the peer'")
        assert (response.status_code, response.std_out, response.std_err) == (
            0,
            b"hello from the peer\r\n",
            b"",
        )
        assert server.counts() == {"Create": 1, "Command": 1, "Receive": 1, "Signal": 1, "Delete": 1}
        assert server.shells == {}  # run_ps deletes its shell
        [record] = server.history
        assert record.script == "Write-Output 'hello from the peer'"
        assert record.user == USER
        stats = server.stats()
        if transport == "ntlm" and not https:
            # pywinrm encrypts every SOAP body with the NTLM session key over plain HTTP.
            assert stats["encrypted_requests"] == 5
        else:
            assert stats.get("encrypted_requests", 0) == 0
        if transport == "ntlm":
            assert stats["auth_rejections"] == 2  # the two 401 legs of the NTLM handshake


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_https_without_the_ca_fails_verification(transport: str) -> None:
    import requests

    with peer(transport, https=True) as server:
        unverified = session(server, server_cert_validation="validate", ca_trust_path=None)
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            unverified.run_ps("Write-Output 'x'")
        assert server.counts() == {}


@pytest.mark.parametrize(("transport", "https"), [COMBOS[0], COMBOS[1]], ids=COMBO_IDS[:2])
def test_large_output_is_split_across_receives(transport: str, https: bool) -> None:
    # 600 KB of varied lines (a repeated byte would hide reordered or dropped chunks).
    big = "".join(f"{i:06d} {hashlib.sha256(str(i).encode()).hexdigest()}\r\n" for i in range(8_500))
    assert len(big) > 500_000
    handler = Router()
    handler.add(r"Get-Big", lambda m, stdin: (big, "warning line\r\n", 0))
    with peer(transport, https, handler) as server:
        response = session(server).run_ps("Get-Big")
        assert response.std_out == big.encode("ascii")
        assert response.std_err == b"warning line\r\n"
        assert server.counts()["Receive"] >= 5
        assert server.stats()["max_envelope_bytes"] <= 153600


def test_non_ascii_output_needs_codepage_65001() -> None:
    text = "VM Überprüfung \u2013 \u0432\u043c-1 \u2713 東京"  # en dash, Cyrillic, check mark
    handler = Router()
    handler.add(r"Get-Name", lambda m, stdin: (text + "\r\n", "", 0))
    with peer(handler=handler) as server:
        client = protocol(server)
        utf8_shell = client.open_shell(codepage=65001)
        oem_shell = client.open_shell()  # pywinrm's default, 437
        assert server.shells[utf8_shell].codepage == 65001
        assert server.shells[oem_shell].codepage == 437
        outputs = {}
        for shell_id in (utf8_shell, oem_shell):
            command_id = client.run_command(shell_id, encoded("Get-Name"))
            outputs[shell_id] = client.get_command_output(shell_id, command_id)
            client.cleanup_command(shell_id, command_id)
        client.close_shell(oem_shell, close_session=False)
        client.close_shell(utf8_shell)
        assert outputs[utf8_shell] == ((text + "\r\n").encode("utf-8"), b"", 0)
        # As on a real host, codepage 437 cannot carry these characters.
        assert outputs[oem_shell][0] == (text + "\r\n").encode("cp437", "replace")
        assert b"?" in outputs[oem_shell][0]


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_bad_password_is_invalid_credentials(transport: str) -> None:
    from winrm.exceptions import InvalidCredentialsError

    with peer(transport) as server:
        with pytest.raises(InvalidCredentialsError):
            session(server, password="wrong").run_ps("Write-Output 'x'")
        assert server.counts() == {}
        assert server.stats()["auth_rejections"] >= 1


def test_scripted_fault_is_wsman_fault_error() -> None:
    from winrm.exceptions import WSManFaultError

    with peer() as server:
        server.fail_next("Command", 2147942405, reason="Access is denied.")
        with pytest.raises(WSManFaultError) as info:
            session(server).run_ps("Write-Output 'x'")
        assert info.value.wsman_fault_code == 2147942405
        assert info.value.reason == "Access is denied."
        assert server.counts() == {"Create": 1, "Command": 1}


def test_receive_timeouts_are_retried_by_pywinrm() -> None:
    with peer("ntlm") as server:
        server.fail_next("Receive", OPERATION_TIMEOUT, times=3)
        response = session(server).run_ps("Write-Output 'late'")
        assert response.std_out == b"late\r\n"
        assert server.counts()["Receive"] == 4


def test_operation_timeout_outside_receive_is_raised() -> None:
    from winrm.exceptions import WinRMOperationTimeoutError

    with peer() as server:
        server.fail_next("Create", OPERATION_TIMEOUT)
        with pytest.raises(WinRMOperationTimeoutError):
            session(server).run_ps("Write-Output 'x'")


@pytest.mark.parametrize(("transport", "https"), COMBOS, ids=COMBO_IDS)
def test_one_protocol_shell_costs_three_requests_per_command(transport: str, https: bool) -> None:
    with peer(transport, https) as server:
        client = protocol(server)
        shell_id = client.open_shell(codepage=65001)
        for i in range(5):
            command_id = client.run_command(shell_id, encoded(f"Write-Output '{i}'"))
            assert client.get_command_output(shell_id, command_id) == (f"{i}\r\n".encode(), b"", 0)
            client.cleanup_command(shell_id, command_id)
        assert server.counts() == {"Create": 1, "Command": 5, "Receive": 5, "Signal": 5}
        assert server.counts(shell_id) == server.counts()
        server.reset_counts()
        client.close_shell(shell_id)
        assert server.counts() == {"Delete": 1}
        assert server.shells == {}


def test_deleted_or_expired_shell_is_unknown() -> None:
    from winrm.exceptions import WSManFaultError

    with peer() as server:
        client = protocol(server)
        deleted = client.open_shell()
        client.close_shell(deleted, close_session=False)
        with pytest.raises(WSManFaultError) as info:
            client.run_command(deleted, encoded("Write-Output 'x'"))
        assert info.value.wsman_fault_code == SHELL_NOT_FOUND

        expired = client.open_shell()
        assert server.expire_shells() == [expired]
        with pytest.raises(WSManFaultError) as info:
            client.run_command(expired, encoded("Write-Output 'x'"))
        assert info.value.wsman_fault_code == SHELL_NOT_FOUND
        client.transport.close_session()


def test_idle_timeout_expires_shells() -> None:
    from winrm.exceptions import WSManFaultError

    with peer(idle_timeout_seconds=0.05) as server:
        client = protocol(server)
        shell_id = client.open_shell()
        time.sleep(0.1)
        with pytest.raises(WSManFaultError) as info:
            client.run_command(shell_id, encoded("Write-Output 'x'"))
        assert info.value.wsman_fault_code == SHELL_NOT_FOUND
        client.transport.close_session()


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_stdin_reaches_the_handler(transport: str) -> None:
    payload = '{"vms": ["web1", "db1"]}'
    with peer(transport) as server:
        client = protocol(server)
        shell_id = client.open_shell(codepage=65001)
        command_id = client.run_command(shell_id, encoded("[Console]::In.ReadToEnd()"))
        client.send_command_input(shell_id, command_id, payload[:10].encode())
        client.send_command_input(shell_id, command_id, payload[10:].encode(), end=True)
        assert client.get_command_output(shell_id, command_id) == (payload.encode(), b"", 0)
        client.cleanup_command(shell_id, command_id)
        client.close_shell(shell_id)
        assert server.history[-1].stdin == payload.encode()
        assert server.counts()["Send"] == 2


def test_receive_waits_for_the_end_of_stdin() -> None:
    from winrm.exceptions import WinRMOperationTimeoutError

    with peer(stdin_wait_seconds=0.05) as server:
        client = protocol(server)
        shell_id = client.open_shell()
        command_id = client.run_command(shell_id, encoded("$input | Out-String"))
        client.send_command_input(shell_id, command_id, b"part one, ")
        # The command would block reading stdin: Receive times out, as on a real host.
        with pytest.raises(WinRMOperationTimeoutError):
            client.get_command_output_raw(shell_id, command_id)
        client.send_command_input(shell_id, command_id, b"part two", end=True)
        assert client.get_command_output(shell_id, command_id) == (b"part one, part two", b"", 0)
        client.cleanup_command(shell_id, command_id)
        client.close_shell(shell_id)


def test_concurrent_clients() -> None:
    import threading

    results: list[bytes] = []
    errors: list[BaseException] = []

    def work(n: int, server: WinRMServer) -> None:
        try:
            client_session = session(server)
            for i in range(5):
                results.append(client_session.run_ps(f"Write-Output '{n}-{i}'").std_out)
        except BaseException as exc:
            errors.append(exc)

    with peer("ntlm") as server:
        threads = [threading.Thread(target=work, args=(n, server)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert sorted(results) == sorted(f"{n}-{i}\r\n".encode() for n in range(4) for i in range(5))
        assert server.counts()["Create"] == 20
        assert server.shells == {}


def test_command_without_stdin_gets_none() -> None:
    seen = []

    def handler(script: str, *, stdin: bytes | None) -> tuple[str, str, int]:
        seen.append((script, stdin))
        return "", "", 7

    with peer(handler=handler) as server:
        response = session(server).run_cmd("ipconfig", ["/all"])
        assert response.status_code == 7
        assert seen == [("ipconfig /all", None)]


def test_command_line_limit_of_cmd_exe() -> None:
    with peer() as server:
        fits = "Write-Output '" + "a" * 3030 + "'"  # 3,045 characters: 8,187 on the command line
        too_long = "Write-Output '" + "a" * 3100 + "'"
        assert session(server).run_ps(fits).status_code == 0
        response = session(server).run_ps(too_long)
        assert (response.status_code, response.std_err) == (1, b"The command line is too long.\r\n")


def test_handler_errors_surface() -> None:
    from winrm.exceptions import WSManFaultError

    def broken(script: str, *, stdin: bytes | None) -> tuple[str, str, int]:
        raise KeyError("no such VM")

    server = WinRMServer(broken)

    def run() -> None:
        with server:
            with pytest.raises(WSManFaultError, match="no such VM"):
                session(server).run_ps("Get-VM")

    with pytest.raises(HandlerError, match="no such VM"):
        run()


def test_two_ntlm_servers_keep_their_own_users() -> None:
    from winrm.exceptions import InvalidCredentialsError

    before = os.environ.get("NTLM_USER_FILE")
    with peer("ntlm") as first, peer("ntlm", users={USER: "other"}) as second:
        for _ in range(2):  # alternate, so the credential store really switches
            assert session(first).run_ps("exit 3").status_code == 3
            assert session(second, password="other").run_ps("exit 4").status_code == 4
        with pytest.raises(InvalidCredentialsError):
            session(second).run_ps("exit 0")
    assert os.environ.get("NTLM_USER_FILE") == before


def test_stop_is_prompt_with_an_open_connection() -> None:
    server = WinRMServer(transport="ntlm").start()
    client = protocol(server)
    client.open_shell()  # leaves an authenticated keep-alive connection open
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 1.0
    client.transport.close_session()


# ------------------------------------------------------------------------------------------------


def test_latency_per_command() -> None:
    """Median time of one run_ps (5 requests, new HTTP session) and of one command on a reused
    Protocol shell (3 requests), for each transport, printed (figures, not a timed assertion:
    they depend on the machine's load). What keeps them low is asserted instead: every
    connection the peer holds has Nagle's algorithm off, which otherwise meets the client's
    delayed ACK at ~40 ms per request."""
    rows = []
    for (transport, https), name in zip(COMBOS, COMBO_IDS, strict=True):
        with peer(transport, https) as server:
            client_session = session(server)
            run_ps = []
            for _ in range(15):
                started = time.perf_counter()
                client_session.run_ps("Write-Output 'x'")
                run_ps.append(time.perf_counter() - started)
            client = protocol(server)
            shell_id = client.open_shell()
            held = server.nodelay()
            assert held and all(held), name
            reused = []
            for _ in range(30):
                started = time.perf_counter()
                command_id = client.run_command(shell_id, encoded("Write-Output 'x'"))
                client.get_command_output(shell_id, command_id)
                client.cleanup_command(shell_id, command_id)
                reused.append(time.perf_counter() - started)
            client.close_shell(shell_id)
        rows.append((name, statistics.median(run_ps) * 1000, statistics.median(reused) * 1000))
    report = "\n".join(
        f"  {name:12s} run_ps {ps:6.1f} ms   reused shell {shell:6.1f} ms/command" for name, ps, shell in rows
    )
    print("\nWinRM peer latency (median):\n" + report)
