"""A loopback WS-Management (WinRM) server that the unmodified pywinrm client talks to.

It speaks the part of MS-WSMV that a ``cmd`` remote shell uses: Create, Command, Send, Receive,
Signal and Delete, over HTTP or HTTPS, with Basic or NTLM authentication (NTLM with MS-WSMV
message encryption over plain HTTP). It does **not** run PowerShell: every command goes to a
*handler* supplied by whoever starts the server::

    def handler(script: str, *, stdin: bytes | None) -> tuple[str, str, int]:
        return stdout, stderr, exit_code

``script`` is the decoded PowerShell script for ``powershell -EncodedCommand <base64 UTF-16LE>``
(what ``winrm.Session.run_ps`` sends) or for ``powershell -Command <text>``; for any other command
it is the command line itself. ``stdin`` is everything the client sent with the Send action, or
``None`` when it sent nothing. The returned text is encoded with the shell's codepage (the
``WINRS_CODEPAGE`` option: 437 unless the client asked for another, so non-ASCII turns into
``?`` exactly as on a real host; ask for 65001 to get UTF-8). Newlines are passed through as
given: PowerShell writes ``\\r\\n``.

:class:`Router` turns a table of regular expressions into a handler; :data:`default_handler` is one
that answers a few fixed scripts. The usual entry point is the context manager in
``tests.support.winrm.harness``, which also makes the TLS certificate.

Faults use the WSManFault codes of a real host: :data:`OPERATION_TIMEOUT` (pywinrm retries it
silently during Receive), :data:`SHELL_NOT_FOUND` for a deleted or expired shell. Any code can be
scripted per action with :meth:`WSManServer.fail_next`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import collections
import hmac
import http.server
import os
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

__all__ = [
    "ACTIONS",
    "INTERNAL_ERROR",
    "OPERATION_TIMEOUT",
    "RESOURCE_NOT_FOUND",
    "SHELL_NOT_FOUND",
    "CommandRecord",
    "Handler",
    "Router",
    "ShellInfo",
    "WSManServer",
    "decode_command_line",
    "default_handler",
]

Handler = Callable[..., tuple[str, str, int]]
"""``handler(script: str, *, stdin: bytes | None) -> (stdout, stderr, exit_code)``."""

# WSManFault codes a Windows host returns (decimal, as in the Code attribute).
OPERATION_TIMEOUT = 2150858793  # 0x80338029 ERROR_WSMAN_OPERATION_TIMEDOUT
SHELL_NOT_FOUND = 2150858843  # 0x8033805B ERROR_WSMAN_UNEXPECTED_SELECTORS ("shell not found")
RESOURCE_NOT_FOUND = 2150858752  # 0x80338000 ERROR_WSMAN_RESOURCE_NOT_FOUND
INTERNAL_ERROR = 2147500037  # 0x80004005 E_FAIL: used when the handler itself raises

_NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
_SHELL_URI = _NS["rsp"]
_CMD_RESOURCE_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
_FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

ACTIONS: Mapping[str, str] = {
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create": "Create",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete": "Delete",
    _SHELL_URI + "/Command": "Command",
    _SHELL_URI + "/Send": "Send",
    _SHELL_URI + "/Receive": "Receive",
    _SHELL_URI + "/Signal": "Signal",
}
"""WS-Man action URI -> the short name used by counts and :meth:`WSManServer.fail_next`."""

_RESPONSE_ACTIONS = {
    "Create": "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
    "Delete": "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
    "Command": _SHELL_URI + "/CommandResponse",
    "Send": _SHELL_URI + "/SendResponse",
    "Receive": _SHELL_URI + "/ReceiveResponse",
    "Signal": _SHELL_URI + "/SignalResponse",
}

_ENVELOPE_OPEN = (
    '<s:Envelope xml:lang="en-US"' + "".join(f' xmlns:{prefix}="{uri}"' for prefix, uri in _NS.items()) + ">"
)

_ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
_BOUNDARY = b"--Encrypted Boundary"
_OCTET_STREAM = b"\tContent-Type: application/octet-stream\r\n"

# What a Receive response costs besides the base64 of the streams (headers, CommandState, a few
# Stream elements); measured at well under 2 KiB, kept generous.
_RECEIVE_OVERHEAD = 4096
_DEFAULT_MAX_ENVELOPE = 153600


# --------------------------------------------------------------------------------------------
# Command lines and handlers


_PS_EXECUTABLES = {"powershell", "powershell.exe", "pwsh", "pwsh.exe"}
# powershell.exe switches that take a value (so that value is not mistaken for the script).
_PS_VALUE_SWITCHES = {
    "executionpolicy",
    "ep",
    "inputformat",
    "inf",
    "if",
    "outputformat",
    "of",
    "o",
    "windowstyle",
    "w",
    "version",
    "v",
    "psconsolefile",
    "configurationname",
    "workingdirectory",
    "wd",
}


def decode_command_line(command_line: str) -> str:
    """The script a command line runs: decoded for PowerShell, else the line itself.

    >>> import base64
    >>> script = base64.b64encode("echo ü".encode("utf-16-le")).decode()
    >>> decode_command_line("powershell -encodedcommand " + script)
    'echo ü'
    >>> decode_command_line("powershell -NoProfile -Command Get-VM | Select Name")
    'Get-VM | Select Name'
    >>> decode_command_line("ipconfig /all")
    'ipconfig /all'
    """
    tokens = command_line.split()
    if not tokens or tokens[0].strip('"').lower().rsplit("\\", 1)[-1] not in _PS_EXECUTABLES:
        return command_line
    i = 1
    while i < len(tokens):
        switch = tokens[i].lower()
        if not switch.startswith(("-", "/")):
            # PowerShell treats leftover text as -Command.
            return " ".join(tokens[i:])
        name = switch.lstrip("-/")
        if name and (name == "ec" or (name.startswith("e") and "encodedcommand".startswith(name))):
            if i + 1 >= len(tokens):
                return command_line
            try:
                return base64.b64decode(tokens[i + 1], validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError):
                return command_line
        if name and "command".startswith(name):
            return " ".join(tokens[i + 1 :])
        i += 2 if name in _PS_VALUE_SWITCHES else 1
    return command_line


RouteFunction = Callable[["re.Match[str]", "bytes | None"], "tuple[str, str, int]"]


class Router:
    """A handler made of ``(regex, function)`` routes, tried in order against the whole script.

    Each function gets the match and the stdin bytes and returns ``(stdout, stderr, exit_code)``.
    A script no route matches gets ``fallback`` (default: an error on stderr and exit code 1).

    >>> router = Router()
    >>> @router.route(r"Get-VMMemory -VMName '(?P<name>[^']+)'")
    ... def _(match, stdin):
    ...     return f"{match['name']}: 1024\\r\\n", "", 0
    >>> router("Get-VMMemory -VMName 'web1'", stdin=None)
    ('web1: 1024\\r\\n', '', 0)
    """

    def __init__(self, fallback: Handler | None = None) -> None:
        self._routes: list[tuple[re.Pattern[str], RouteFunction]] = []
        self._fallback = fallback

    def add(self, pattern: str | re.Pattern[str], function: RouteFunction) -> None:
        compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, re.DOTALL)
        self._routes.append((compiled, function))

    def route(self, pattern: str | re.Pattern[str]) -> Callable[[RouteFunction], RouteFunction]:
        def register(function: RouteFunction) -> RouteFunction:
            self.add(pattern, function)
            return function

        return register

    def __call__(self, script: str, *, stdin: bytes | None) -> tuple[str, str, int]:
        text = script.strip()
        for pattern, function in self._routes:
            match = pattern.fullmatch(text)
            if match is not None:
                return function(match, stdin)
        if self._fallback is not None:
            return self._fallback(script, stdin=stdin)
        return "", f"loopback WinRM peer: no handler route matches the script {script!r}\r\n", 1


def _ps_single_quoted(text: str) -> str:
    return text.replace("''", "'")


default_handler = Router()
"""Answers a few fixed scripts (anything else: an error on stderr and exit code 1):

* ``Write-Output '<text>'`` and cmd's ``echo <text>``: the text and ``\\r\\n`` on stdout;
* ``Write-Error '<text>'``: the text on stderr, exit code 1;
* ``exit <n>``: exit code n;
* ``$PSVersionTable.PSVersion.Major``: ``5``;
* ``[Console]::In.ReadToEnd()`` or ``$input | Out-String``: stdin echoed (as UTF-8) on stdout.
"""
default_handler.add(r"Write-Output '((?:[^']|'')*)'", lambda m, _: (_ps_single_quoted(m[1]) + "\r\n", "", 0))
default_handler.add(r"echo (.*)", lambda m, _: (m[1] + "\r\n", "", 0))
default_handler.add(r"Write-Error '((?:[^']|'')*)'", lambda m, _: ("", _ps_single_quoted(m[1]) + "\r\n", 1))
default_handler.add(r"exit (-?\d+)", lambda m, _: ("", "", int(m[1])))
default_handler.add(r"\$PSVersionTable\.PSVersion\.Major", lambda m, _: ("5\r\n", "", 0))
default_handler.add(
    r"\[Console\]::In\.ReadToEnd\(\)|\$input \| Out-String",
    lambda m, stdin: ((stdin or b"").decode("utf-8", "replace"), "", 0),
)


# --------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True)
class ShellInfo:
    """What the server knows about one open shell (a snapshot)."""

    shell_id: str
    user: str
    codepage: int
    noprofile: bool
    input_streams: str
    output_streams: str
    working_directory: str | None
    environment: Mapping[str, str]
    idle_timeout_seconds: float | None
    created_at: float
    commands: tuple[str, ...]


@dataclass(frozen=True)
class CommandRecord:
    """One command the handler answered, for tests that assert what a client sent."""

    shell_id: str
    command_id: str
    command_line: str
    script: str
    stdin: bytes | None
    stdout: str
    stderr: str
    exit_code: int
    codepage: int
    user: str


class _Fault(Exception):
    def __init__(
        self,
        wsman_code: int,
        reason: str,
        *,
        subcode: str = "w:InternalError",
        value: str = "s:Receiver",
        http_status: int = 500,
    ) -> None:
        super().__init__(reason)
        self.wsman_code = wsman_code
        self.reason = reason
        self.subcode = subcode
        self.value = value
        self.http_status = http_status


@dataclass
class _Command:
    command_id: str
    command_line: str
    script: str
    skip_cmd_shell: bool
    stdin: list[bytes] = field(default_factory=list)
    stdin_started: bool = False
    stdin_closed: bool = False
    ran: bool = False
    pending: collections.deque[tuple[str, bytes]] = field(default_factory=collections.deque)
    exit_code: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stdin_arrived: threading.Condition = field(default_factory=threading.Condition)


@dataclass
class _Shell:
    shell_id: str
    user: str
    codepage: int
    noprofile: bool
    input_streams: str
    output_streams: str
    working_directory: str | None
    environment: dict[str, str]
    idle_timeout: float | None
    created_at: float
    last_used: float
    commands: dict[str, _Command] = field(default_factory=dict)

    def info(self) -> ShellInfo:
        return ShellInfo(
            shell_id=self.shell_id,
            user=self.user,
            codepage=self.codepage,
            noprofile=self.noprofile,
            input_streams=self.input_streams,
            output_streams=self.output_streams,
            working_directory=self.working_directory,
            environment=dict(self.environment),
            idle_timeout_seconds=self.idle_timeout,
            created_at=self.created_at,
            commands=tuple(self.commands),
        )


def _duration_seconds(text: str | None) -> float | None:
    """xs:duration as WinRM uses it (``PT20S``, ``PT7200.000S``, ``PT1H``); a bare number is seconds."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d*)?)S)?)?", text)
    if not match:
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _codec(codepage: int) -> str:
    if codepage == 65001:
        return "utf-8"
    try:
        return codecs.lookup(f"cp{codepage}").name
    except LookupError:
        return "utf-8"


# --------------------------------------------------------------------------------------------
# NTLM: pyspnego's acceptor reads its users from the file named by the process-wide NTLM_USER_FILE
# variable, at context creation and again when it checks the AUTHENTICATE message.
#
# Changing os.environ per handshake would race with every other thread that reads the
# environment (and setenv/getenv are not thread-safe in C). Instead, while any NTLM server runs,
# the variable points at one private file, set once; each server keeps its own users, and the
# file's content is swapped, under one lock, to the users of the server whose handshake step
# runs. Two NTLM servers in one process therefore work, each with its own users; only NTLM
# handshake steps are serialised (about a millisecond each).

_NTLM_LOCK = threading.Lock()
_ntlm_refs = 0
_ntlm_dir: str | None = None
_ntlm_previous_env: str | None = None
_ntlm_owner: object = None


def _ntlm_store_path() -> str:
    assert _ntlm_dir is not None
    return os.path.join(_ntlm_dir, "ntlm_users")


def _ntlm_acquire() -> None:
    global _ntlm_refs, _ntlm_dir, _ntlm_previous_env, _ntlm_owner
    with _NTLM_LOCK:
        if _ntlm_refs == 0:
            _ntlm_dir = tempfile.mkdtemp(prefix="winrm-peer-ntlm-")
            with open(_ntlm_store_path(), "w", encoding="utf-8"):
                pass
            _ntlm_previous_env = os.environ.get("NTLM_USER_FILE")
            os.environ["NTLM_USER_FILE"] = _ntlm_store_path()
            _ntlm_owner = None
        _ntlm_refs += 1


def _ntlm_release() -> None:
    global _ntlm_refs, _ntlm_dir, _ntlm_owner
    with _NTLM_LOCK:
        _ntlm_refs -= 1
        if _ntlm_refs > 0:
            return
        if os.environ.get("NTLM_USER_FILE") == _ntlm_store_path():
            if _ntlm_previous_env is None:
                del os.environ["NTLM_USER_FILE"]
            else:
                os.environ["NTLM_USER_FILE"] = _ntlm_previous_env
        shutil.rmtree(_ntlm_dir or "", ignore_errors=True)
        _ntlm_dir = None
        _ntlm_owner = None


def _ntlm_use_store(owner: object, content: str) -> None:
    """Make the store hold ``owner``'s users. Call with _NTLM_LOCK held."""
    global _ntlm_owner
    if _ntlm_owner is owner:
        return
    path = _ntlm_store_path()
    temporary = path + ".new"
    with open(temporary, "w", encoding="utf-8") as fd:
        fd.write(content)
    os.replace(temporary, path)
    _ntlm_owner = owner


def _ntlm_store_content(users: Mapping[str, str]) -> str:
    lines = []
    for user, password in users.items():
        if ":" in password or "\n" in password or ":" in user or "\n" in user:
            raise ValueError(f"NTLM users and passwords cannot contain ':' or newlines: {user!r}")
        domain, _, name = user.rpartition("\\")
        lines.append(f"{domain}:{name}:{password}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The server


class WSManServer(http.server.ThreadingHTTPServer):
    """The WinRM service: one thread per connection, state shared under one lock.

    ``auth`` is ``"basic"`` or ``"ntlm"``; ``users`` maps user name (``DOMAIN\\\\user`` allowed
    for NTLM) to password. ``ssl_context`` (a server context with the certificate loaded) turns
    on HTTPS; with NTLM, ``channel_binding_hash`` (the RFC 5929 ``tls-server-end-point`` hash of
    the certificate) makes the server check the client's channel binding token.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        handler: Handler = default_handler,
        *,
        auth: str = "basic",
        users: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        channel_binding_hash: bytes | None = None,
        max_command_line: int | None = 8191,
        max_receive_bytes: int | None = None,
        idle_timeout_seconds: float | None = None,
        stdin_wait_seconds: float = 1.0,
        connection_timeout_seconds: float = 120.0,
    ) -> None:
        if auth not in ("basic", "ntlm"):
            raise ValueError(f"auth must be 'basic' or 'ntlm', not {auth!r}")
        self.handler = handler
        self.auth = auth
        self.users = dict(users if users is not None else {"admin": "s3cret"})
        self.ssl_context = ssl_context
        self.max_command_line = max_command_line
        self.max_receive_bytes = max_receive_bytes
        self.idle_timeout_seconds = idle_timeout_seconds
        self.stdin_wait_seconds = stdin_wait_seconds
        self.connection_timeout_seconds = connection_timeout_seconds
        self.channel_bindings: Any = None
        self._ntlm_users = ""
        if auth == "ntlm":
            self._ntlm_users = _ntlm_store_content(self.users)
            # Imported here so that a missing pyspnego fails at start, not at the first request.
            import spnego.channel_bindings

            if channel_binding_hash is not None:
                self.channel_bindings = spnego.channel_bindings.GssChannelBindings(
                    application_data=b"tls-server-end-point:" + channel_binding_hash
                )
        self.lock = threading.RLock()
        self.shells_by_id: dict[str, _Shell] = {}
        self.action_counts: collections.Counter[str] = collections.Counter()
        self.shell_action_counts: dict[str, collections.Counter[str]] = {}
        self.stats: collections.Counter[str] = collections.Counter()
        self.history: list[CommandRecord] = []
        self.handler_errors: list[str] = []
        self.scripted_faults: dict[str, collections.deque[_Fault]] = collections.defaultdict(
            collections.deque
        )
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._serve_thread: threading.Thread | None = None
        super().__init__(address, _WSManRequestHandler)
        if auth == "ntlm":
            _ntlm_acquire()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._serve_thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="winrm-peer", daemon=True
        )
        self._serve_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, cut every open connection, wait for the connection threads."""
        if self._serve_thread is not None:
            self.shutdown()
            self._serve_thread.join(timeout)
            self._serve_thread = None
        with self.lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for _, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.server_close()
        if self.auth == "ntlm":
            self.auth = "closed-ntlm"
            _ntlm_release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops its connection (or refuses our certificate) is not our error.
        self.bump("connection_errors")

    def bump(self, stat: str, value: int = 1) -> None:
        with self.lock:
            self.stats[stat] += value

    # -- scripting and inspection --------------------------------------------------------------

    def fail_next(
        self,
        action: str,
        fault_code: int,
        *,
        times: int = 1,
        reason: str | None = None,
        subcode: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests of ``action`` with a WSManFault of ``fault_code``."""
        if action not in _RESPONSE_ACTIONS:
            raise ValueError(f"unknown action {action!r}; one of {sorted(_RESPONSE_ACTIONS)}")
        if fault_code == OPERATION_TIMEOUT:
            fault = _Fault(
                fault_code,
                reason
                or "The WS-Management service cannot complete the operation within the "
                "time specified in OperationTimeout.",
                subcode=subcode or "w:TimedOut",
            )
        else:
            fault = _Fault(
                fault_code, reason or f"Scripted fault {fault_code}.", subcode=subcode or "w:InternalError"
            )
        with self.lock:
            for _ in range(times):
                self.scripted_faults[action].append(fault)

    def expire_shells(self, shell_id: str | None = None) -> list[str]:
        """Drop one shell (or all) as if its idle timeout had passed; returns the ids dropped."""
        with self.lock:
            ids = [shell_id] if shell_id is not None else list(self.shells_by_id)
            return [i for i in ids if self.shells_by_id.pop(i, None) is not None]

    def reset_counts(self) -> None:
        with self.lock:
            self.action_counts.clear()
            self.shell_action_counts.clear()
            self.stats.clear()

    # -- request processing (called from connection threads) -----------------------------------

    def _count(self, action: str, shell_id: str | None) -> None:
        with self.lock:
            self.action_counts[action] += 1
            if shell_id is not None:
                self.shell_action_counts.setdefault(shell_id, collections.Counter())[action] += 1

    def _shell(self, shell_id: str | None) -> _Shell:
        now = time.monotonic()
        with self.lock:
            shell = self.shells_by_id.get(shell_id or "")
            idle = shell.idle_timeout if shell is not None else None
            if shell is not None and idle is not None and now - shell.last_used > idle:
                del self.shells_by_id[shell.shell_id]
                shell = None
            if shell is None:
                raise _Fault(
                    SHELL_NOT_FOUND,
                    f"The request for the Windows Remote Shell with ShellId {shell_id} failed "
                    "because the shell was not found on the server. Possible causes are: the "
                    "specified ShellId is incorrect or the shell no longer exists on the server. "
                    "Provide the correct ShellId or create a new shell and try again.",
                )
            shell.last_used = now
            return shell

    def process_soap(self, body: bytes, user: str, client_ip: str) -> tuple[int, str, int]:
        """Answer one SOAP envelope: ``(http_status, response_xml, max_envelope_size)``."""
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return 400, "", _DEFAULT_MAX_ENVELOPE
        header = root.find("s:Header", _NS)
        soap_body = root.find("s:Body", _NS)
        if header is None:
            header = ET.Element("none")
        if soap_body is None:
            soap_body = ET.Element("none")
        message_id = header.findtext("a:MessageID", "", _NS).strip()
        action_uri = header.findtext("a:Action", "", _NS).strip()
        resource_uri = header.findtext("w:ResourceURI", "", _NS).strip()
        max_envelope = int(header.findtext("w:MaxEnvelopeSize", "", _NS).strip() or _DEFAULT_MAX_ENVELOPE)
        operation_timeout = _duration_seconds(header.findtext("w:OperationTimeout", "", _NS)) or 60.0
        shell_id = None
        for selector in header.iterfind("w:SelectorSet/w:Selector", _NS):
            if selector.get("Name") == "ShellId":
                shell_id = (selector.text or "").strip()
        options = {
            option.get("Name", ""): (option.text or "").strip()
            for option in header.iterfind("w:OptionSet/w:Option", _NS)
        }
        action = ACTIONS.get(action_uri)
        try:
            if action is None:
                raise _Fault(
                    RESOURCE_NOT_FOUND,
                    f"The WS-Management service does not support the action {action_uri!r}.",
                    subcode="a:ActionNotSupported",
                    value="s:Sender",
                )
            self._count(action, shell_id if action != "Create" else None)
            with self.lock:
                queue = self.scripted_faults.get(action)
                scripted = queue.popleft() if queue else None
            if scripted is not None:
                raise scripted
            if resource_uri != _CMD_RESOURCE_URI:
                raise _Fault(
                    RESOURCE_NOT_FOUND,
                    f"The WS-Management service cannot find the resource {resource_uri!r}.",
                    subcode="w:DestinationUnreachable",
                    value="s:Sender",
                )
            ctx = _Request(self, header, soap_body, options, user, client_ip, max_envelope, operation_timeout)
            method = getattr(self, "_do_" + action.lower())
            response_body = method(ctx, shell_id)
        except _Fault as fault:
            self.bump("faults")
            return fault.http_status, _fault_envelope(fault, message_id), max_envelope
        envelope = (
            _ENVELOPE_OPEN
            + "<s:Header>"
            + f"<a:Action>{_RESPONSE_ACTIONS[action]}</a:Action>"
            + f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
            + f"<a:To>{_ANONYMOUS}</a:To>"
            + f"<a:RelatesTo>{escape(message_id)}</a:RelatesTo>"
            + "</s:Header><s:Body>"
            + response_body
            + "</s:Body></s:Envelope>"
        )
        return 200, envelope, max_envelope

    def _do_create(self, ctx: _Request, _shell_id: str | None) -> str:
        shell_element = ctx.body.find("rsp:Shell", _NS)
        if shell_element is None:
            raise _Fault(RESOURCE_NOT_FOUND, "Create without a Shell element.", value="s:Sender")
        try:
            codepage = int(ctx.options.get("WINRS_CODEPAGE") or 437)
        except ValueError:
            codepage = 437
        environment = {
            v.get("Name", ""): v.text or ""
            for v in shell_element.iterfind("rsp:Environment/rsp:Variable", _NS)
        }
        idle = _duration_seconds(shell_element.findtext("rsp:IdleTimeOut", None, _NS))
        if idle is None:
            idle = self.idle_timeout_seconds
        elif self.idle_timeout_seconds is not None:
            idle = min(idle, self.idle_timeout_seconds)
        now = time.monotonic()
        shell = _Shell(
            shell_id=str(uuid.uuid4()).upper(),
            user=ctx.user,
            codepage=codepage,
            noprofile=ctx.options.get("WINRS_NOPROFILE", "FALSE").upper() == "TRUE",
            input_streams=(shell_element.findtext("rsp:InputStreams", "", _NS) or "").strip(),
            output_streams=(shell_element.findtext("rsp:OutputStreams", "", _NS) or "").strip(),
            working_directory=shell_element.findtext("rsp:WorkingDirectory", None, _NS),
            environment=environment,
            idle_timeout=idle,
            created_at=time.time(),
            last_used=now,
        )
        with self.lock:
            self.shells_by_id[shell.shell_id] = shell
            self.shell_action_counts.setdefault(shell.shell_id, collections.Counter())["Create"] += 1
        idle_text = "PT%.3fS" % (idle if idle is not None else 7200)
        sid = escape(shell.shell_id)
        return (
            "<x:ResourceCreated>"
            f"<a:Address>{_ANONYMOUS}</a:Address>"
            "<a:ReferenceParameters>"
            f"<w:ResourceURI>{_CMD_RESOURCE_URI}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{sid}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters>"
            "</x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{sid}</rsp:ShellId>"
            f"<rsp:ResourceUri>{_CMD_RESOURCE_URI}</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(ctx.user)}</rsp:Owner><rsp:ClientIP>{escape(ctx.client_ip)}</rsp:ClientIP>"
            f"<rsp:IdleTimeOut>{idle_text}</rsp:IdleTimeOut>"
            f"<rsp:InputStreams>{escape(shell.input_streams)}</rsp:InputStreams>"
            f"<rsp:OutputStreams>{escape(shell.output_streams)}</rsp:OutputStreams>"
            "<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>"
            "<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
            "</rsp:Shell>"
        )

    def _do_command(self, ctx: _Request, shell_id: str | None) -> str:
        shell = self._shell(shell_id)
        command_line_element = ctx.body.find("rsp:CommandLine", _NS)
        if command_line_element is None:
            raise _Fault(RESOURCE_NOT_FOUND, "Command without a CommandLine element.", value="s:Sender")
        command = (command_line_element.findtext("rsp:Command", "", _NS) or "").strip()
        arguments = [a.text or "" for a in command_line_element.iterfind("rsp:Arguments", _NS)]
        command_line = " ".join([command, *arguments]) if arguments else command
        record = _Command(
            command_id=str(uuid.uuid4()).upper(),
            command_line=command_line,
            script=decode_command_line(command_line),
            skip_cmd_shell=ctx.options.get("WINRS_SKIP_CMD_SHELL", "FALSE").upper() == "TRUE",
        )
        with self.lock:
            shell.commands[record.command_id] = record
        return (
            f"<rsp:CommandResponse><rsp:CommandId>{record.command_id}</rsp:CommandId></rsp:CommandResponse>"
        )

    def _command(self, shell: _Shell, command_id: str | None) -> _Command:
        with self.lock:
            record = shell.commands.get(command_id or "")
        if record is None:
            raise _Fault(
                SHELL_NOT_FOUND,
                f"The command {command_id} was not found in shell {shell.shell_id}.",
            )
        return record

    def _do_send(self, ctx: _Request, shell_id: str | None) -> str:
        shell = self._shell(shell_id)
        for stream in ctx.body.iterfind("rsp:Send/rsp:Stream", _NS):
            record = self._command(shell, stream.get("CommandId"))
            if stream.get("Name", "stdin") != "stdin":
                raise _Fault(RESOURCE_NOT_FOUND, "Only the stdin stream can be sent.", value="s:Sender")
            with record.stdin_arrived:
                if record.ran or record.stdin_closed:
                    raise _Fault(
                        INTERNAL_ERROR,
                        "Input was sent after the command's stdin was closed or after it ran "
                        "(this server runs a command at its first Receive).",
                    )
                try:
                    record.stdin.append(base64.b64decode((stream.text or "").strip()))
                except binascii.Error:
                    raise _Fault(RESOURCE_NOT_FOUND, "stdin is not base64.", value="s:Sender") from None
                record.stdin_started = True
                if (stream.get("End") or "").lower() in ("true", "1"):
                    record.stdin_closed = True
                record.stdin_arrived.notify_all()
        return "<rsp:SendResponse/>"

    def _run(self, shell: _Shell, record: _Command, ctx: _Request) -> None:
        stdin = b"".join(record.stdin) if record.stdin_started else None
        if (
            self.max_command_line is not None
            and not record.skip_cmd_shell
            and len(record.command_line) > self.max_command_line
        ):
            # cmd.exe refuses the line before PowerShell (or the handler) ever sees it.
            stdout, stderr, exit_code = "", "The command line is too long.\r\n", 1
        else:
            try:
                stdout, stderr, exit_code = self.handler(record.script, stdin=stdin)
            except Exception:
                message = traceback.format_exc()
                with self.lock:
                    self.handler_errors.append(message)
                raise _Fault(INTERNAL_ERROR, "The test handler raised:\n" + message) from None
        codec = _codec(shell.codepage)
        out = stdout.encode(codec, "replace")
        err = stderr.encode(codec, "replace")
        record.exit_code = int(exit_code)
        if out:
            record.pending.append(("stdout", out))
        if err:
            record.pending.append(("stderr", err))
        record.ran = True
        with self.lock:
            self.history.append(
                CommandRecord(
                    shell_id=shell.shell_id,
                    command_id=record.command_id,
                    command_line=record.command_line,
                    script=record.script,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    exit_code=record.exit_code,
                    codepage=shell.codepage,
                    user=shell.user,
                )
            )

    def _do_receive(self, ctx: _Request, shell_id: str | None) -> str:
        shell = self._shell(shell_id)
        desired = ctx.body.find("rsp:Receive/rsp:DesiredStream", _NS)
        record = self._command(shell, desired.get("CommandId") if desired is not None else None)
        with record.lock:
            if not record.ran:
                with record.stdin_arrived:
                    if record.stdin_started and not record.stdin_closed:
                        # The process would block reading stdin: wait a little for the rest.
                        record.stdin_arrived.wait_for(
                            lambda: record.stdin_closed,
                            min(ctx.operation_timeout, self.stdin_wait_seconds),
                        )
                        if not record.stdin_closed:
                            raise _Fault(
                                OPERATION_TIMEOUT,
                                "The WS-Management service cannot complete the operation within "
                                "the time specified in OperationTimeout.",
                                subcode="w:TimedOut",
                            )
                self._run(shell, record, ctx)
            budget = max(ctx.max_envelope - _RECEIVE_OVERHEAD, 1024) // 4 * 3
            if self.max_receive_bytes is not None:
                budget = min(budget, self.max_receive_bytes)
            parts = []
            cid = escape(record.command_id)
            while record.pending and budget > 0:
                name, data = record.pending.popleft()
                if len(data) > budget:
                    record.pending.appendleft((name, data[budget:]))
                    data = data[:budget]
                budget -= len(data)
                parts.append(
                    f'<rsp:Stream Name="{name}" CommandId="{cid}">'
                    + base64.b64encode(data).decode("ascii")
                    + "</rsp:Stream>"
                )
            if record.pending:
                parts.append(
                    f'<rsp:CommandState CommandId="{cid}" State="{_SHELL_URI}/CommandState/Running"/>'
                )
            else:
                parts.append(f'<rsp:Stream Name="stdout" CommandId="{cid}" End="true"/>')
                parts.append(f'<rsp:Stream Name="stderr" CommandId="{cid}" End="true"/>')
                parts.append(
                    f'<rsp:CommandState CommandId="{cid}" State="{_SHELL_URI}/CommandState/Done">'
                    f"<rsp:ExitCode>{record.exit_code}</rsp:ExitCode></rsp:CommandState>"
                )
        return "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>"

    def _do_signal(self, ctx: _Request, shell_id: str | None) -> str:
        shell = self._shell(shell_id)
        signal = ctx.body.find("rsp:Signal", _NS)
        command_id = signal.get("CommandId") if signal is not None else None
        self._command(shell, command_id)
        with self.lock:
            # terminate and ctrl_c both end the command as far as this server is concerned.
            shell.commands.pop(command_id or "", None)
        return "<rsp:SignalResponse/>"

    def _do_delete(self, ctx: _Request, shell_id: str | None) -> str:
        shell = self._shell(shell_id)
        with self.lock:
            self.shells_by_id.pop(shell.shell_id, None)
        return ""


@dataclass
class _Request:
    server: WSManServer
    header: ET.Element
    body: ET.Element
    options: dict[str, str]
    user: str
    client_ip: str
    max_envelope: int
    operation_timeout: float


def _fault_envelope(fault: _Fault, relates_to: str) -> str:
    return (
        _ENVELOPE_OPEN
        + "<s:Header>"
        + f"<a:Action>{_FAULT_ACTION}</a:Action>"
        + f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        + f"<a:To>{_ANONYMOUS}</a:To>"
        + (f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>" if relates_to else "")
        + "</s:Header><s:Body><s:Fault>"
        + f"<s:Code><s:Value>{fault.value}</s:Value>"
        + f"<s:Subcode><s:Value>{escape(fault.subcode)}</s:Value></s:Subcode></s:Code>"
        + f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
        + f'<s:Detail><f:WSManFault Code="{fault.wsman_code}" Machine="localhost">'
        + f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault></s:Detail>"
        + "</s:Fault></s:Body></s:Envelope>"
    )


class _WSManRequestHandler(http.server.BaseHTTPRequestHandler):
    """One TCP connection. NTLM authenticates the connection, so its context lives here."""

    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    server: WSManServer

    def setup(self) -> None:
        self._ntlm: Any = None  # context of a finished handshake
        self._ntlm_pending: Any = None  # context between NEGOTIATE and AUTHENTICATE
        self._user: str | None = None
        self._dead = False
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._raw_socket = sock
        if self.server.ssl_context is not None:
            sock.settimeout(10)
            try:
                self.request = self.server.ssl_context.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                self.server.bump("tls_handshake_failures")
                self._dead = True
        with self.server.lock:
            self.server._connections[self.request] = threading.current_thread()
        super().setup()
        # An idle keep-alive connection is dropped after this long (the client reconnects).
        self.connection.settimeout(self.server.connection_timeout_seconds)

    def handle(self) -> None:
        if not self._dead:
            try:
                super().handle()
            except (OSError, ssl.SSLError):
                pass

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.server.lock:
                self.server._connections.pop(self.request, None)
            if self.request is not self._raw_socket:
                try:
                    self.request.close()
                except OSError:
                    pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- HTTP ------------------------------------------------------------------------------------

    def _respond(self, status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> None:
        # Status line, headers and body leave in one write: two small writes meet Nagle's
        # algorithm and the client's delayed ACK, which costs ~40 ms per request.
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Server: {self.server_version}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _unauthorized(self, challenge: str) -> None:
        self.server.bump("auth_rejections")
        self._respond(401, headers=[("WWW-Authenticate", challenge)])

    def do_POST(self) -> None:
        body = self._read_body()
        self.server.bump("http_requests")
        if self.path.split("?", 1)[0].rstrip("/").lower() != "/wsman":
            self._respond(404)
            return
        if self.server.auth == "basic":
            user = self._basic_user()
            if user is None:
                self._unauthorized('Basic realm="WSMAN"')
                return
        else:
            authorization = self.headers.get("Authorization")
            if authorization and not self._ntlm_step(authorization):
                return
            if self._ntlm is None or self._user is None:
                self._unauthorized("Negotiate")
                return
            user = self._user
        encrypted = "multipart/encrypted" in (self.headers.get("Content-Type") or "").lower()
        if encrypted:
            if self._ntlm is None:
                self._respond(400)
                return
            try:
                body = self._unseal(body)
            except Exception:
                self.server.bump("decrypt_failures")
                self._respond(400)
                return
            self.server.bump("encrypted_requests")
        if not body:
            # pywinrm's empty POST that sets up the encryption context.
            self._respond(200)
            return
        status, envelope, _ = self.server.process_soap(body, user, self.client_address[0])
        payload = envelope.encode("utf-8")
        server = self.server
        with server.lock:
            server.stats["max_envelope_bytes"] = max(server.stats["max_envelope_bytes"], len(payload))
        if encrypted:
            self._respond(
                status,
                self._seal(payload),
                [
                    (
                        "Content-Type",
                        f'multipart/encrypted;protocol="{_ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"',
                    )
                ],
            )
        else:
            self._respond(status, payload, [("Content-Type", "application/soap+xml;charset=UTF-8")])

    def _do_other(self) -> None:
        self._read_body()
        self._respond(405, headers=[("Allow", "POST")])

    do_GET = do_PUT = do_DELETE = do_HEAD = _do_other

    # -- authentication -----------------------------------------------------------------------------

    def _basic_user(self) -> str | None:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected = self.server.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return user

    def _ntlm_step(self, authorization: str) -> bool:
        """Run one NTLM leg; False when a response (a challenge or a refusal) was already sent."""
        import spnego

        scheme, _, value = authorization.partition(" ")
        if scheme.lower() not in ("negotiate", "ntlm"):
            self._unauthorized("Negotiate")
            return False
        try:
            token = base64.b64decode(value.strip(), validate=True)
        except binascii.Error:
            token = b""
        if not token.startswith(b"NTLMSSP\x00") or len(token) < 12:
            # Only raw NTLM is spoken (what requests-ntlm sends); SPNEGO/Kerberos is not.
            self._unauthorized("Negotiate")
            return False
        message_type = struct.unpack("<I", token[8:12])[0]
        server = self.server
        try:
            with _NTLM_LOCK:
                _ntlm_use_store(server, server._ntlm_users)
                if message_type == 1:
                    self._ntlm = None
                    self._user = None
                    self._ntlm_pending = spnego.server(
                        hostname=socket.gethostname(),
                        service="http",
                        protocol="ntlm",
                        options=spnego.NegotiateOptions.use_ntlm,
                        channel_bindings=server.channel_bindings,
                    )
                    challenge = self._ntlm_pending.step(token)
                    self._unauthorized(f"{scheme} {base64.b64encode(challenge or b'').decode()}")
                    return False
                if message_type != 3 or self._ntlm_pending is None:
                    raise ValueError("NTLM message out of order")
                context, self._ntlm_pending = self._ntlm_pending, None
                context.step(token)
        except Exception:
            server.bump("ntlm_failures")
            self._ntlm = self._ntlm_pending = None
            self._user = None
            self._unauthorized("Negotiate")
            return False
        principal = context.client_principal or ""
        name = principal.rpartition("\\")[2]
        self._ntlm = context
        self._user = principal if principal in server.users else name
        return True

    def _unseal(self, body: bytes) -> bytes:
        match = re.search(rb"Length=(\d+)", body)
        if match is None:
            raise ValueError("no OriginalContent length")
        length = int(match.group(1))
        start = body.index(_OCTET_STREAM, match.end()) + len(_OCTET_STREAM)
        signature_length = struct.unpack("<I", body[start : start + 4])[0]
        signature = body[start + 4 : start + 4 + signature_length]
        data_start = start + 4 + signature_length
        sealed = body[data_start : data_start + length]
        if len(sealed) != length:
            raise ValueError("truncated encrypted body")
        plain: bytes = self._ntlm.unwrap(signature + sealed).data
        return plain

    def _seal(self, payload: bytes) -> bytes:
        wrapped: bytes = self._ntlm.wrap(payload, encrypt=True).data
        signature, sealed = wrapped[:16], wrapped[16:]
        return b"".join(
            [
                _BOUNDARY,
                b"\r\n\tContent-Type: ",
                _ENCRYPTED_PROTOCOL.encode(),
                b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
                str(len(payload)).encode(),
                b"\r\n",
                _BOUNDARY,
                b"\r\n",
                _OCTET_STREAM,
                struct.pack("<I", len(signature)),
                signature,
                sealed,
                _BOUNDARY,
                b"--\r\n",
            ]
        )
