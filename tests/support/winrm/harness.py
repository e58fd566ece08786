"""Start and stop the loopback WinRM server for a test.

Typical use, with the prerequisites check every real-peer test makes::

    from tests.support.require import require
    from tests.support.winrm.harness import WinRMServer, prerequisites

    def test_something():
        reasons = prerequisites(transport="ntlm", https=True)
        require(not reasons, "; ".join(reasons))
        with WinRMServer(my_handler, transport="ntlm", https=True) as peer:
            session = winrm.Session(peer.endpoint, auth=("admin", "s3cret"), transport="ntlm",
                                    server_cert_validation="validate", ca_trust_path=peer.ca_file)
            ...
            assert peer.counts()["Command"] == 1

``my_handler(script, *, stdin) -> (stdout, stderr, exit_code)`` answers each command; see
``tests.support.winrm.server`` for the contract and :class:`~tests.support.winrm.server.Router`.

For HTTPS the harness makes a throwaway CA and a server certificate signed by it (ECDSA P-256,
subjectAltName = the listening IP and ``localhost``) in a temporary directory; ``ca_file`` is
the CA to trust. Everything is removed on exit.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import ipaddress
import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from tests.support.peer_guard import note_started
from tests.support.winrm.server import (
    CommandRecord,
    Handler,
    ShellInfo,
    WSManServer,
    default_handler,
)

__all__ = ["HandlerError", "WinRMServer", "prerequisites"]

_PACKAGES = {
    # module: (distribution to install, what it is needed for)
    "winrm": ("pywinrm", "the WinRM client under test"),
    "requests_ntlm": ("requests-ntlm", "pywinrm's NTLM authentication"),
    "spnego": ("pyspnego", "the server side of NTLM"),
    "cryptography": ("cryptography", "the test TLS certificate and NTLM channel bindings"),
}


def prerequisites(*, transport: str = "ntlm", https: bool = True) -> list[str]:
    """What is missing to run the loopback WinRM peer with this configuration ([] when nothing).

    The defaults ask for everything (NTLM and HTTPS). A package that is installed but fails to
    import is reported as broken, with the error, rather than as missing.
    """
    modules = ["winrm"]
    if transport == "ntlm":
        modules += ["requests_ntlm", "spnego", "cryptography"]
    if https and "cryptography" not in modules:
        modules.append("cryptography")
    reasons = []
    for module in modules:
        distribution, purpose = _PACKAGES[module]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                reasons.append(f"{distribution} is not installed ({purpose}): pip install {distribution}")
            else:
                reasons.append(f"{distribution} is installed but broken: {exc}")
        except Exception as exc:  # an installed package that fails to import is broken, not missing
            reasons.append(f"{distribution} is installed but broken: {type(exc).__name__}: {exc}")
    return reasons


class HandlerError(AssertionError):
    """The test's handler raised while the server ran (the client saw a WSManFault)."""


class WinRMServer:
    """A running loopback WinRM service, as a context manager.

    ``handler`` answers commands (default: a few fixed scripts). ``transport`` is ``"basic"``
    or ``"ntlm"``; ``users`` maps user name to password. Extra keyword options go to
    :class:`~tests.support.winrm.server.WSManServer`: ``max_command_line`` (8191, cmd.exe's
    limit; ``None`` turns the check off), ``max_receive_bytes`` (cap on output per Receive, to
    force splitting), ``idle_timeout_seconds`` (shells expire after this idle time),
    ``stdin_wait_seconds``.

    With ``raise_handler_errors`` (default) leaving the ``with`` block raises
    :class:`HandlerError` if the handler raised, so a handler bug never hides behind a client
    error.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        transport: str = "basic",
        https: bool = False,
        users: Mapping[str, str] | None = None,
        address: str = "127.0.0.1",
        port: int = 0,
        raise_handler_errors: bool = True,
        **server_options: Any,
    ) -> None:
        if transport not in ("basic", "ntlm"):
            raise ValueError(f"transport must be 'basic' or 'ntlm', not {transport!r}")
        if ipaddress.ip_address(address) not in ipaddress.ip_network("127.0.0.0/8"):
            raise ValueError(f"the test peer listens on loopback addresses only, not {address}")
        self.handler = handler or default_handler
        self.transport = transport
        self.https = https
        self.users = dict(users if users is not None else {"admin": "s3cret"})
        self.address = address
        self._port = port
        self.raise_handler_errors = raise_handler_errors
        self._server_options = server_options
        self._server: WSManServer | None = None
        self._tmpdir: str | None = None
        self.ca_file: str | None = None
        self.cert_file: str | None = None
        self.key_file: str | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> WinRMServer:
        if self._server is not None:
            return self
        note_started("WinRM server")
        try:
            context = None
            binding_hash = None
            if self.https:
                self._tmpdir = tempfile.mkdtemp(prefix="winrm-peer-tls-")
                binding_hash = self._make_certificate(self._tmpdir)
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(self.cert_file or "", self.key_file)
            self._server = WSManServer(
                (self.address, self._port),
                self.handler,
                auth=self.transport,
                users=self.users,
                ssl_context=context,
                channel_binding_hash=binding_hash if self.transport == "ntlm" else None,
                **self._server_options,
            )
            self._server.start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def stop(self) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        server, self._server = self._server, None
        try:
            if server is not None:
                server.stop()
        finally:
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None

    def __enter__(self) -> WinRMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        errors = list(self._running().handler_errors) if self._server is not None else []
        self.stop()
        if errors and exc_type is None and self.raise_handler_errors:
            raise HandlerError("the WinRM test handler raised:\n" + "\n".join(errors))

    def _running(self) -> WSManServer:
        if self._server is None:
            raise RuntimeError("the WinRM test server is not running (use it inside 'with')")
        return self._server

    # -- where it is ----------------------------------------------------------------------------

    def nodelay(self) -> list[bool]:
        """For each connection the peer holds now, whether Nagle's algorithm is off on it."""
        server = self._running()
        with server.lock:
            held = list(server._connections)
        return [bool(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)) for c in held]

    @property
    def host(self) -> str:
        return str(self._running().server_address[0])

    @property
    def port(self) -> int:
        return int(self._running().server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    @property
    def endpoint(self) -> str:
        """The full URL pywinrm wants, e.g. ``http://127.0.0.1:40123/wsman``."""
        return f"{self.scheme}://{self.host}:{self.port}/wsman"

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``winrm.Session``/``winrm.protocol.Protocol`` that fit this server
        (transport, and for HTTPS certificate validation against ``ca_file``)."""
        # An explicit trust path also keeps pywinrm from reading REQUESTS_CA_BUNDLE.
        return {
            "transport": self.transport,
            "server_cert_validation": "validate",
            "ca_trust_path": self.ca_file,
        }

    # -- scripting and inspection ------------------------------------------------------------------

    def counts(self, shell_id: str | None = None) -> dict[str, int]:
        """Requests per WS-Man action (Create, Command, Send, Receive, Signal, Delete) since the
        start or the last :meth:`reset_counts`; for one shell when ``shell_id`` is given.
        Faulted requests count too; authentication round trips do not (see :meth:`stats`)."""
        server = self._running()
        with server.lock:
            if shell_id is None:
                return dict(server.action_counts)
            return dict(server.shell_action_counts.get(shell_id, {}))

    def shell_counts(self) -> dict[str, dict[str, int]]:
        server = self._running()
        with server.lock:
            return {sid: dict(c) for sid, c in server.shell_action_counts.items()}

    def stats(self) -> dict[str, int]:
        """Transport-level counters: ``http_requests`` (every POST, including NTLM legs and 401s),
        ``auth_rejections`` (401s sent), ``faults``, ``max_envelope_bytes`` (largest SOAP
        response), ``ntlm_failures``, ``tls_handshake_failures``, ``decrypt_failures``."""
        server = self._running()
        with server.lock:
            return dict(server.stats)

    def reset_counts(self) -> None:
        self._running().reset_counts()

    def fail_next(
        self,
        action: str,
        fault_code: int,
        *,
        times: int = 1,
        reason: str | None = None,
        subcode: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests of ``action`` with a WSManFault of ``fault_code``
        (e.g. ``fail_next("Receive", OPERATION_TIMEOUT, times=3)``: pywinrm retries those)."""
        self._running().fail_next(action, fault_code, times=times, reason=reason, subcode=subcode)

    @property
    def shells(self) -> dict[str, ShellInfo]:
        """The open shells (a snapshot), by shell id."""
        server = self._running()
        with server.lock:
            return {sid: shell.info() for sid, shell in server.shells_by_id.items()}

    def expire_shells(self, shell_id: str | None = None) -> list[str]:
        """Drop one shell, or all, as an idle timeout would; the client then gets SHELL_NOT_FOUND."""
        return self._running().expire_shells(shell_id)

    @property
    def history(self) -> list[CommandRecord]:
        """Every command the handler answered, in order (script, stdin, output, exit code...)."""
        server = self._running()
        with server.lock:
            return list(server.history)

    @property
    def handler_errors(self) -> list[str]:
        server = self._running()
        with server.lock:
            return list(server.handler_errors)

    # -- TLS ---------------------------------------------------------------------------------------

    def _make_certificate(self, directory: str) -> bytes:
        """Write ca.pem, cert.pem and key.pem; return the certificate's channel-binding hash."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hvballoon WinRM test CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )

        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address(self.address)),
            x509.DNSName("localhost"),
        ]
        if self.address != "127.0.0.1":
            names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.address)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )

        self.ca_file = os.path.join(directory, "ca.pem")
        self.cert_file = os.path.join(directory, "cert.pem")
        self.key_file = os.path.join(directory, "key.pem")
        with open(self.ca_file, "wb") as fd:
            fd.write(ca_cert.public_bytes(serialization.Encoding.PEM))
        with open(self.cert_file, "wb") as fd:
            fd.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fd:
            fd.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        # RFC 5929 tls-server-end-point: the certificate's signature hash (SHA-256 here).
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
