"""The one error tree of hvballoon.

Every backend maps its native faults onto these classes at its boundary; no libvirt, pyvmomi,
pywinrm or requests exception ever reaches the caller. The native exception stays available as
``__cause__`` (``raise … from exc``) and as :attr:`HVBalloonError.native`.

::

    HVBalloonError                      code            retryable  exit
    ├── InvalidRequestError             invalid_request     no      2
    │   ├── InvalidSizeError            invalid_size        no      2
    │   ├── InvalidURIError             invalid_uri         no      2
    │   └── ScenarioError               invalid_scenario    no      2
    ├── BackendUnavailableError         backend_unavailable no      3
    │   ├── BackendNotInstalledError    backend_not_installed no    3
    │   └── BackendBrokenError          backend_broken      no      3
    ├── HVConnectionError               connection_failed   yes     4
    │   └── SessionExpiredError         session_expired     yes     4
    ├── OperationTimeoutError           timeout             yes     5
    ├── AuthenticationError             auth_failed         no      6
    ├── PermissionDeniedError           permission_denied   no      6
    ├── VMNotFoundError                 vm_not_found        no      7
    ├── AmbiguousVMError                vm_ambiguous        no      7
    ├── GuardRailError                  guard_rail          no      8
    │   ├── TargetBelowFloorError       below_floor         no      8
    │   ├── TargetAboveMaximumError     above_maximum       no      8
    │   └── StatsUnavailableError       stats_unavailable   no      8
    ├── UnsupportedOperationError       unsupported         no      9
    ├── InvalidStateError               invalid_state       no      10
    ├── BalloonStalledError             balloon_stalled     no      11
    ├── WaitTimeoutError                wait_timeout        no      11
    ├── PartialChangeError              partial_change      no      12
    └── BackendError                    backend_error       no      13

``code`` is a stable string (use it, not the class name or the message, in scripts);
``exit_code`` is what the ``hvballoon`` command exits with.

An error may carry a :class:`Hint`: what the caller can do about it (override a guard rail,
give a password), kept apart from the message because the Python API, the ``hvballoon`` command
and the Ansible modules each say it in their own words (``force=True``, ``--force``,
``force: true``); see :func:`hint_text`.

One warning class, :class:`TargetNotObservableWarning`, says a wait returned without watching
the target arrive (the backend cannot observe it); make it an error with
``warnings.simplefilter("error", TargetNotObservableWarning)`` where that must not pass.

>>> from hvballoon.errors import VMNotFoundError
>>> err = VMNotFoundError("no VM named 'db9'", vm="db9", backend="fake")
>>> err.code, err.retryable, err.exit_code
('vm_not_found', False, 7)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any, ClassVar, Literal

__all__ = [
    "AmbiguousVMError",
    "AuthenticationError",
    "BackendBrokenError",
    "BackendError",
    "BackendNotInstalledError",
    "BackendUnavailableError",
    "BalloonStalledError",
    "GuardRailError",
    "HINTS",
    "HVBalloonError",
    "HVConnectionError",
    "Hint",
    "Interface",
    "InvalidRequestError",
    "InvalidSizeError",
    "InvalidStateError",
    "InvalidURIError",
    "OperationTimeoutError",
    "PartialChangeError",
    "PermissionDeniedError",
    "ScenarioError",
    "SessionExpiredError",
    "StatsUnavailableError",
    "TargetAboveMaximumError",
    "TargetBelowFloorError",
    "TargetNotObservableWarning",
    "UnsupportedOperationError",
    "VMNotFoundError",
    "WaitTimeoutError",
    "error_codes",
    "hint_text",
    "json_native",
]

#: Where an error is shown: the Python API, the ``hvballoon`` command, an Ansible module.
Interface = Literal["api", "cli", "ansible"]

#: How each interface words each kind of :class:`Hint` (``{name}`` fields come from its params).
HINTS: dict[str, dict[str, str]] = {
    "force": {
        "api": "pass force=True to override",
        "cli": "add --force to override",
        "ansible": "set force: true to override",
    },
    "password": {
        "api": "pass password=… or set HVBALLOON_PASSWORD",
        "cli": "set HVBALLOON_PASSWORD, or give the password on standard input with --password-stdin",
        "ansible": "set the password option (else HVBALLOON_PASSWORD on the host that runs the module)",
    },
    "fresh_stats": {
        "api": "wait for fresh stats (KVM: set_config(vm, stats_period=10)) or pass force=True",
        "cli": "wait for fresh stats (KVM: hvballoon config URI VM --stats-period 10) or add --force",
        "ansible": "wait for fresh stats (KVM: hvballoon.memory.config with stats_period: 10) or set force: true",
    },
}


@dataclass(frozen=True)
class Hint:
    """What the caller can do about an error, whatever interface it came through: ``kind`` is a
    key of :data:`HINTS`, ``params`` fill its wording.

    >>> hint_text(Hint("force"), "cli")
    'add --force to override'
    """

    kind: str
    params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in HINTS:
            raise ValueError(f"unknown hint kind {self.kind!r}; known: {', '.join(sorted(HINTS))}")


def hint_text(hint: Hint, interface: Interface = "api") -> str:
    """The hint in the words of ``interface`` ("api", "cli" or "ansible")."""
    wording = HINTS[hint.kind]
    if interface not in wording:
        raise ValueError(f"unknown interface {interface!r}; known: api, cli, ansible")
    return wording[interface].format(**hint.params)


class HVBalloonError(Exception):
    """Base of every error hvballoon raises.

    Attributes: ``code`` (stable string), ``retryable``, ``exit_code``, ``backend``, ``uri``
    (always redacted: no password), ``vm``, ``native_code`` (the backend's own fault code or
    name, when there is one), ``details`` (a dict of figures, e.g. the numbers a guard rail
    compared) and ``hint`` (a :class:`Hint`, or None). ``message`` says what went wrong in words
    that hold for every interface; ``str()`` adds the hint in the Python API's words, and
    :meth:`describe` in another interface's.
    """

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        uri: str | None = None,
        vm: str | None = None,
        native_code: str | int | None = None,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
        hint: Hint | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.backend = backend
        self.uri = uri
        self.vm = vm
        self.native_code = native_code
        self.retryable = self.default_retryable if retryable is None else retryable
        self.details: dict[str, Any] = dict(details or {})
        self.hint = hint

    def hint_text(self, interface: Interface = "api") -> str | None:
        """The hint in the words of ``interface``, or None."""
        return hint_text(self.hint, interface) if self.hint is not None else None

    def describe(self, interface: Interface = "api", *, with_hint: bool = True) -> str:
        """The message, the hint in ``interface``'s words, and where (backend, VM)."""
        text = self.message
        hint = self.hint_text(interface) if with_hint else None
        if hint:
            text = f"{text}; {hint}"
        where = [f"{k}={v}" for k, v in (("backend", self.backend), ("vm", self.vm)) if v]
        return f"{text} [{', '.join(where)}]" if where else text

    @property
    def native(self) -> BaseException | None:
        """The backend's own exception this error was mapped from, if any."""
        return self.__cause__

    def with_context(
        self, *, backend: str | None = None, uri: str | None = None, vm: str | None = None
    ) -> HVBalloonError:
        """Fill in context the raiser did not know; returns ``self`` for ``raise …``."""
        if self.backend is None:
            self.backend = backend
        if self.uri is None:
            self.uri = uri
        if self.vm is None:
            self.vm = vm
        return self

    def to_dict(self, interface: Interface = "api") -> dict[str, Any]:
        """A JSON-ready description (what ``--json`` prints on failure): plain JSON values only,
        so ``details`` holds numbers and strings as such, never Python reprs. ``hint`` is
        ``{"kind", "text"}`` in the words of ``interface``, or None.

        >>> import json
        >>> err = HVBalloonError("bad", details={"value": "8G", "seen": frozenset({"b", "a"})})
        >>> json.dumps(err.to_dict()["details"])
        '{"value": "8G", "seen": ["a", "b"]}'
        """
        return {
            "error": type(self).__name__,
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "backend": self.backend,
            "uri": self.uri,
            "vm": self.vm,
            "native_code": json_native(self.native_code),
            "details": json_native(self.details),
            "hint": (
                {"kind": self.hint.kind, "text": hint_text(self.hint, interface)}
                if self.hint is not None
                else None
            ),
        }

    def __str__(self) -> str:
        return self.describe("api")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class InvalidRequestError(HVBalloonError):
    """The caller's input is malformed or contradictory; nothing was sent or changed."""

    code = "invalid_request"
    exit_code = 2


class InvalidSizeError(InvalidRequestError):
    """A byte size could not be parsed; the message names the accepted spellings."""

    code = "invalid_size"


class InvalidURIError(InvalidRequestError):
    """A connection URI could not be parsed or names no known backend."""

    code = "invalid_uri"


class ScenarioError(InvalidRequestError):
    """A fake-world scenario file is invalid; the message names the file, path and problem."""

    code = "invalid_scenario"


class BackendUnavailableError(HVBalloonError):
    """The backend for a URI cannot be loaded."""

    code = "backend_unavailable"
    exit_code = 3


class BackendNotInstalledError(BackendUnavailableError):
    """The backend's distribution (or its hypervisor library) is not installed.

    ``details["install"]`` holds the exact command to run.
    """

    code = "backend_not_installed"


class BackendBrokenError(BackendUnavailableError):
    """The backend is installed but fails to import (e.g. its C library is missing)."""

    code = "backend_broken"


class HVConnectionError(HVBalloonError):
    """The hypervisor could not be reached or the connection dropped."""

    code = "connection_failed"
    exit_code = 4
    default_retryable = True


class SessionExpiredError(HVConnectionError):
    """The session expired and re-establishing it failed."""

    code = "session_expired"


class OperationTimeoutError(HVBalloonError):
    """A remote call did not answer within its timeout."""

    code = "timeout"
    exit_code = 5
    default_retryable = True


class AuthenticationError(HVBalloonError):
    """The credentials were refused."""

    code = "auth_failed"
    exit_code = 6


class PermissionDeniedError(HVBalloonError):
    """The credentials are valid but lack a privilege the operation needs."""

    code = "permission_denied"
    exit_code = 6


class VMNotFoundError(HVBalloonError):
    """No VM has this name or id (or it vanished during the operation); a name that matched
    nothing has ``details["close_matches"]``: up to three names of VMs that look like it (for
    the first ten names one call finds missing; the others have none)."""

    code = "vm_not_found"
    exit_code = 7


class AmbiguousVMError(HVBalloonError):
    """A name matches several VMs; ``details["candidates"]`` lists their ids."""

    code = "vm_ambiguous"
    exit_code = 7


class GuardRailError(HVBalloonError):
    """A target was refused by a guard rail; ``details`` holds the numbers compared."""

    code = "guard_rail"
    exit_code = 8


class TargetBelowFloorError(GuardRailError):
    """The target is below what the guest uses plus the safety margin (``force`` overrides)."""

    code = "below_floor"


class TargetAboveMaximumError(GuardRailError):
    """The target is above the VM's maximum memory (never overridable)."""

    code = "above_maximum"


class StatsUnavailableError(GuardRailError):
    """The guest's usage is unknown or stale, so the floor cannot be computed."""

    code = "stats_unavailable"


class UnsupportedOperationError(HVBalloonError):
    """The backend (or this VM) cannot do this; see :class:`hvballoon.Capabilities`."""

    code = "unsupported"
    exit_code = 9


class InvalidStateError(HVBalloonError):
    """The VM's state forbids the operation (e.g. a live-change rule, or it is powered off)."""

    code = "invalid_state"
    exit_code = 10


class BalloonStalledError(HVBalloonError):
    """The balloon stopped short of the target; ``details`` has the target and the figure reached."""

    code = "balloon_stalled"
    exit_code = 11


class WaitTimeoutError(HVBalloonError):
    """The memory had not reached its target when the wait's timeout ran out: still moving, or
    not moved in a wait too short to tell a stall (the message says which)."""

    code = "wait_timeout"
    exit_code = 11


class PartialChangeError(HVBalloonError):
    """Part of a change was applied; ``details["applied"]`` and ``details["not_applied"]`` say what."""

    code = "partial_change"
    exit_code = 12


class BackendError(HVBalloonError):
    """Any other fault the hypervisor reported; ``native_code`` carries its own code."""

    code = "backend_error"
    exit_code = 13


class TargetNotObservableWarning(UserWarning):
    """The backend cannot observe a target being reached (ESXi's limit: ESXi decides when to
    balloon; Hyper-V's Dynamic Memory: the host moves memory by demand), so a wait for it
    returned the current figures at once. The target itself was applied.

    Attributes: ``vm``, ``backend``, ``mechanism``.
    """

    def __init__(
        self, message: str, *, vm: str | None = None, backend: str | None = None, mechanism: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.vm = vm
        self.backend = backend
        self.mechanism = mechanism


def json_native(value: Any) -> Any:
    """``value`` as plain JSON data: numbers, strings, booleans, None, lists and string-keyed
    dicts. Sets become sorted lists, enums their value, dates ISO 8601, models their JSON dump,
    non-finite floats strings; anything else its ``repr`` (a string).

    >>> json_native({"a": (1, 2.5), "b": float("inf"), 3: None})
    {'a': [1, 2.5], 'b': 'inf', '3': None}
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Enum):
        return json_native(value.value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_native(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_native(v) for v in value), key=str)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return json_native(dump(mode="json"))
    return repr(value)


def error_codes() -> dict[str, type[HVBalloonError]]:
    """Every stable ``code`` and its class, for docs and exit-code tables."""
    out: dict[str, type[HVBalloonError]] = {}
    stack: list[type[HVBalloonError]] = [HVBalloonError]
    while stack:
        cls = stack.pop()
        out[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return dict(sorted(out.items()))
