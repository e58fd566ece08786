"""One WinRM shell per session, kept open and reused, recycled when it breaks.

``winrm.Session.run_ps`` opens a shell, runs one command and deletes the shell: five HTTP
requests and, for NTLM, a new handshake every call. :class:`ShellRunner` keeps one
``winrm.protocol.Protocol`` and one ``cmd`` shell (codepage 65001, no profile) for the life of a
backend, so a command costs three requests: Command, Receive (more if the output is large, or
while the host is still busy), Signal.

A kept shell can break: the host drops it after its idle timeout or a WinRM service restart
(fault ``SHELL_NOT_FOUND``), and NTLM binds the session to its TCP connection, so when the
connection is closed the next sealed request is refused with 401. :class:`ShellLink` (the
toolkit's :class:`~hvballoon.backend_kit.Link` over the runner) then rebuilds the client and the
shell and runs the command once more — safe, because every script is absolute (read, or "set X
to N"). If that fails too, the native error is mapped (a second shell error is a retryable
:class:`~hvballoon.errors.SessionExpiredError`; a second 401 is a real
:class:`~hvballoon.errors.AuthenticationError`).

Every HTTP request has a read timeout, the host is asked to answer each Receive within the
operation timeout, and a command as a whole is abandoned (and signalled to stop) when the
session's timeout runs out — pywinrm's own ``get_command_output`` would wait forever.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import unescape as xml_unescape

import requests.exceptions as rq
import winrm.exceptions as wx
from pydantic import SecretStr
from winrm.protocol import Protocol

from hvballoon.backend_kit import Link

from ._errors import ERRORS, SHELL_NOT_FOUND, CommandTooLongError, RemoteScriptError
from ._scripts import (
    MAX_COMMAND_LINE,
    Template,
    command_line_length,
    encode_command,
    render,
)

__all__ = ["CommandTooLongError", "ShellLink", "ShellRunner", "stderr_text", "timeouts_for"]

log = logging.getLogger("hvballoon.hyperv")

#: Codepage of the shell: UTF-8, so non-ASCII text is not turned into "?".
CODEPAGE = 65001
#: Idle timeout asked for the shell (the host may cap it); an abandoned shell goes away by itself.
SHELL_IDLE_TIMEOUT = "PT900S"


def timeouts_for(timeout: float) -> tuple[int, int]:
    """pywinrm's (read, operation) timeouts in whole seconds for a session timeout.

    The operation timeout (how long the host may hold a Receive) must stay below the HTTP read
    timeout, or every slow Receive would end as a client-side timeout.

    >>> timeouts_for(30.0), timeouts_for(5), timeouts_for(0.5)
    ((30, 20), (5, 3), (2, 1))
    """
    read = max(2, math.ceil(timeout))
    operation = max(1, min(read - 1, round(read * 2 / 3)))
    return read, operation


def _first_json(text: str) -> Any:
    """The one JSON document a script printed (ignoring a BOM and surrounding blank lines)."""
    text = text.lstrip("\ufeff").strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # something else wrote to stdout first: the document is the last line
        last = text.rsplit("\n", 1)[-1].strip()
        return json.loads(last)


_CLIXML_HEADER = "#< CLIXML"
#: A string record of PowerShell's CLIXML on stderr; S="Error" is the error stream (Write-Error,
#: an uncaught exception, a parse error), "warning", "verbose", "debug" and "information" the others.
_CLIXML_STRING = re.compile(r'<S S="(?P<stream>[A-Za-z]+)">(?P<text>[^<]*)</S>')
#: XmlConvert's escape of a character that XML cannot hold as is (``_x000D__x000A_`` is CRLF).
_CLIXML_ESCAPE = re.compile(r"_x(?P<hex>[0-9A-Fa-f]{4})_")


def stderr_text(err: bytes) -> str:
    """What a command wrote to stderr, as a person reads it: PowerShell serializes its error
    stream as CLIXML (``#< CLIXML`` then ``<Objs>`` documents) when its output is redirected; the
    error records' text is kept, progress records (written even on success) and markup are not.
    Anything else is returned as written, stripped.

    >>> stderr_text(b'#< CLIXML\\r\\n<Objs Version="1.1.0.1"><S S="Error">Get-VM : denied_x000D__x000A_</S>'
    ...             b'<S S="Error">At line:1 char:1_x000D__x000A_</S></Objs>')
    'Get-VM : denied At line:1 char:1'
    >>> stderr_text(b'#< CLIXML\\r\\n<Objs Version="1.1.0.1"><Obj S="progress" RefId="0"/></Objs>')
    ''
    """
    text = err.decode("utf-8", "replace").lstrip("\ufeff").strip()
    if not text.startswith(_CLIXML_HEADER):
        return text
    said = [
        _CLIXML_ESCAPE.sub(
            lambda m: chr(int(m["hex"], 16)), xml_unescape(m["text"], {"&quot;": '"', "&apos;": "'"})
        )
        for m in _CLIXML_STRING.finditer(text)
        if m["stream"].lower() == "error"
    ]
    return " ".join(" ".join(said).split())


class ShellRunner:
    """Runs the backend's fixed scripts on one reused remote shell (thread-safe: one at a time).

    ``counts`` tells how many commands ran and how often the shell was (re)opened, for tests
    and benchmarks.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        transport: str,
        username: str | None,
        password: SecretStr | None,
        verify: bool,
        ca_file: str | None,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self._transport = transport
        self._username = username
        self._password = password
        self._verify = verify
        self._ca_file = ca_file
        self.timeout = float(timeout)
        self.read_timeout, self.operation_timeout = timeouts_for(timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._protocol: Protocol | None = None
        self._shell_id: str | None = None
        self._proven = False  # the current client has completed a command (credentials work)
        self.counts = {"commands": 0, "shells_opened": 0, "recycled": 0}

    def __repr__(self) -> str:
        return f"<ShellRunner {self.endpoint} transport={self._transport} shell={self._shell_id}>"

    # -- the client and its shell ---------------------------------------------------------------

    def _new_protocol(self) -> Protocol:
        return Protocol(
            self.endpoint,
            transport=self._transport,  # type: ignore[arg-type]  # validated by the backend
            username=self._username,
            password=self._password.get_secret_value() if self._password is not None else None,
            server_cert_validation="validate" if self._verify else "ignore",
            # An explicit trust path (or None: requests' own bundle) keeps pywinrm from
            # reading REQUESTS_CA_BUNDLE behind the caller's back.
            ca_trust_path=self._ca_file,  # type: ignore[arg-type]  # None is accepted at runtime
            read_timeout_sec=self.read_timeout,
            operation_timeout_sec=self.operation_timeout,
            proxy=None,
        )

    @property
    def protocol(self) -> Protocol:
        """The pywinrm client (created on first use)."""
        if self._protocol is None:
            self._protocol = self._new_protocol()
        return self._protocol

    @property
    def shell_id(self) -> str | None:
        return self._shell_id

    def _shell(self) -> str:
        if self._shell_id is None:
            self._shell_id = self.protocol.open_shell(
                codepage=CODEPAGE, noprofile=True, idle_timeout=SHELL_IDLE_TIMEOUT
            )
            self.counts["shells_opened"] += 1
        return self._shell_id

    def _drop(self, *, delete_shell: bool) -> None:
        """Forget the client (and its connection); with ``delete_shell``, try to delete the old
        shell from a fresh client so it does not linger on the host until its idle timeout."""
        old_protocol, old_shell = self._protocol, self._shell_id
        self._protocol, self._shell_id, self._proven = None, None, False
        if old_protocol is not None:
            try:
                old_protocol.transport.close_session()
            except Exception:  # closing a dead connection may fail; nothing to do about it
                log.debug("closing the old WinRM connection failed", exc_info=True)
        if delete_shell and old_shell is not None:
            try:
                self.protocol.close_shell(old_shell, close_session=False)
            except Exception:
                log.debug("deleting the abandoned shell %s failed", old_shell, exc_info=True)

    def recyclable(self, exc: BaseException) -> bool:
        """Whether a fresh client and shell may cure ``exc`` (see :meth:`_recyclable`)."""
        return self._recyclable(exc, self._proven)

    def recycle(self, exc: BaseException) -> None:
        """Forget the broken client and shell (the next command opens new ones)."""
        log.info("WinRM shell lost (%s): reopening it", type(exc).__name__)
        self.counts["recycled"] += 1
        with self._lock:
            # a shell the host says is gone cannot be deleted; any other is, from a fresh client
            self._drop(delete_shell=not isinstance(exc, wx.WSManFaultError))

    @staticmethod
    def _recyclable(exc: BaseException, proven: bool) -> bool:
        """Errors a fresh client and shell cure: the shell is gone, or (after the credentials
        have worked) the connection was lost — with NTLM that shows as a 401, or as a 400 when
        the re-authenticated connection receives a body sealed with the old session key."""
        if isinstance(exc, wx.WSManFaultError):
            return exc.wsman_fault_code == SHELL_NOT_FOUND
        if not proven:
            return False
        if isinstance(exc, wx.InvalidCredentialsError):
            return True
        if isinstance(exc, wx.WinRMTransportError):
            # requests-ntlm answers the 401 with a new handshake on the new connection, then
            # resends the body sealed with the old key: the host cannot decrypt it (HTTP 400).
            return exc.code == 400
        return isinstance(exc, rq.ConnectionError) and not isinstance(exc, (rq.SSLError, rq.ConnectTimeout))

    # -- running --------------------------------------------------------------------------------

    def run(self, template: Template, params: dict[str, Any]) -> Any:
        """Run ``template`` with ``params`` (as data) and return the JSON it printed.

        Raises :class:`RemoteScriptError` when the script fails, native pywinrm/requests
        exceptions for transport trouble (the link maps them, and restores a lost shell once),
        :class:`CommandTooLongError` before sending anything too long.
        """
        script = render(template, params)
        command, arguments = encode_command(script)
        length = command_line_length(command, arguments)
        if length > MAX_COMMAND_LINE:
            raise CommandTooLongError(
                f"the {template.name} script would need a {length}-character command line "
                f"(cmd.exe accepts {MAX_COMMAND_LINE})"
            )
        with self._lock:
            out, err, code = self._run_once(command, arguments)
            self._proven = True
        return self._parse(template, out, err, code)

    def _run_once(self, command: str, arguments: list[str]) -> tuple[bytes, bytes, int]:
        protocol = self.protocol
        shell_id = self._shell()
        command_id = protocol.run_command(shell_id, command, arguments)
        self.counts["commands"] += 1
        deadline = self._clock() + self.timeout
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        while True:
            try:
                out, err, code, done = protocol.get_command_output_raw(shell_id, command_id)
            except wx.WinRMOperationTimeoutError:
                # The host held the Receive for the operation timeout with nothing to say yet.
                if self._clock() < deadline:
                    continue
                try:
                    protocol.cleanup_command(shell_id, command_id)
                except Exception:
                    log.debug("stopping the timed-out command failed", exc_info=True)
                raise
            stdout.append(out)
            stderr.append(err)
            if done:
                break
        try:
            # The command is done and its output in hand: telling the host to release it is
            # housekeeping. A failure here must not turn a finished command (a change made on the
            # host) into an error; a shell that is really gone shows on the next command.
            protocol.cleanup_command(shell_id, command_id)
        except Exception:
            log.debug("releasing the finished command failed", exc_info=True)
        return b"".join(stdout), b"".join(stderr), code

    @staticmethod
    def _parse(template: Template, out: bytes, err: bytes, code: int) -> Any:
        text = out.decode("utf-8", "replace")
        try:
            document = _first_json(text) if text.strip() else None
        except json.JSONDecodeError:
            document = None
        if code == 0 and document is not None and not (isinstance(document, dict) and "error" in document):
            return document
        record = document.get("error") if isinstance(document, dict) else None
        if isinstance(record, dict):
            raise RemoteScriptError(
                template.name,
                exit_code=code,
                error_id=str(record.get("id") or ""),
                category=str(record.get("category") or ""),
                exception_type=str(record.get("type") or ""),
                message=str(record.get("message") or ""),
            )
        # No error record: cmd.exe or PowerShell itself failed before the script ran (for
        # example "The command line is too long."), or the output was not our JSON (cut short,
        # or something else). stderr is PowerShell's CLIXML: its error text is kept, as a hint;
        # its progress records (written even on success) are not.
        said = stderr_text(err)[:300]
        seen = f"unexpected output: {text.strip()[:200]!r}" if text.strip() else "no output"
        raise RemoteScriptError(
            template.name,
            exit_code=code,
            error_id="MalformedOutput" if code == 0 else None,
            message="; ".join(p for p in (said, seen) if p) if code == 0 else (said or seen),
        )

    def close(self) -> None:
        """Delete the shell and close the connection (best effort; safe to call twice)."""
        with self._lock:
            protocol, shell_id = self._protocol, self._shell_id
            self._protocol, self._shell_id = None, None
            if protocol is None:
                return
            try:
                if shell_id is not None:
                    protocol.close_shell(shell_id, close_session=True)
            except Exception:
                log.debug("deleting the WinRM shell failed", exc_info=True)
            finally:
                try:
                    protocol.transport.close_session()
                except Exception:
                    log.debug("closing the WinRM connection failed", exc_info=True)


class ShellLink(Link[ShellRunner]):
    """The runner behind the toolkit's link: errors mapped by :data:`~hvballoon.backends.hyperv._errors.ERRORS`,
    and a lost shell or connection restored once (:meth:`ShellRunner.recyclable`).

    The deadline is the runner's own: every HTTP request has a read timeout and a command as a
    whole is abandoned when the session's timeout runs out.
    """

    def __init__(self, runner: ShellRunner, *, uri: str, timeout: float) -> None:
        self.runner = runner
        super().__init__(ERRORS, where=str(runner.endpoint), timeout=timeout, uri=uri, lazy=False)

    def connect(self) -> ShellRunner:
        return self.runner  # it opens its client and shell on first use

    def lost(self, exc: BaseException, native: ShellRunner | None) -> bool:
        return native is not None and native.recyclable(exc)

    def reconnect(self, native: ShellRunner | None, exc: BaseException) -> ShellRunner:
        self.runner.recycle(exc)
        return self.runner

    def disconnect(self, native: ShellRunner) -> None:
        native.close()
