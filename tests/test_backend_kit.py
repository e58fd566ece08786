"""The backend toolkit: the rule table picks the most specific row whatever the order, the link
reconnects once and keeps its deadline, options are validated strictly."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any, Literal

import pytest
from pydantic import Field

from hvballoon.backend_kit import (
    AsyncLink,
    BackendOptions,
    ErrorRule,
    ErrorTable,
    Link,
    URIParameters,
    WorkerThread,
)
from hvballoon.errors import (
    AuthenticationError,
    BackendError,
    HVBalloonError,
    HVConnectionError,
    InvalidRequestError,
    InvalidStateError,
    InvalidURIError,
    OperationTimeoutError,
    PermissionDeniedError,
    SessionExpiredError,
    VMNotFoundError,
)


class CodedError(Exception):
    """A native error carrying codes, most specific first (like a script's error record)."""

    def __init__(self, *codes: str) -> None:
        super().__init__("coded")
        self.codes = codes


class MoreCodedError(CodedError):
    pass


ROWS = [
    ErrorRule(OSError, HVConnectionError, "the host cannot be reached"),
    ErrorRule(ConnectionError, HVConnectionError, "the connection broke", retryable=False),
    ErrorRule(ConnectionResetError, SessionExpiredError, "the session was reset"),
    ErrorRule(CodedError, BackendError, "the host failed"),
    ErrorRule(CodedError, VMNotFoundError, "no such VM", codes=frozenset({"NotFound"})),
    ErrorRule(CodedError, PermissionDeniedError, "denied", codes=frozenset({"Denied"})),
    ErrorRule(MoreCodedError, InvalidStateError, "busy (any code)"),
]


def table(rows: list[ErrorRule] | tuple[ErrorRule, ...] = tuple(ROWS), **kw: Any) -> ErrorTable:
    return ErrorTable("demo", rows, codes=lambda e: getattr(e, "codes", ()), **kw)


CASES: list[tuple[BaseException, type[HVBalloonError]]] = [
    (OSError(5, "io"), HVConnectionError),
    (BrokenPipeError(32, "pipe"), HVConnectionError),  # a ConnectionError: nearest row
    (ConnectionResetError(104, "reset"), SessionExpiredError),
    (FileNotFoundError(2, "gone"), HVConnectionError),  # nearest: OSError
    (CodedError(), BackendError),
    (CodedError("Other"), BackendError),
    (CodedError("NotFound"), VMNotFoundError),
    (CodedError("Denied", "NotFound"), PermissionDeniedError),  # the more specific code first
    (CodedError("NotFound", "Denied"), VMNotFoundError),
    (MoreCodedError(), InvalidStateError),  # the nearer type, no code on either
    (MoreCodedError("NotFound"), VMNotFoundError),  # a code beats a nearer type-only row
]


@pytest.mark.parametrize(
    ("native", "expected"), CASES, ids=[f"{type(n).__name__}{getattr(n, 'codes', '')}" for n, _ in CASES]
)
def test_the_most_specific_row_wins_whatever_the_order(native: BaseException, expected: type) -> None:
    seen = set()
    for order in itertools.islice(itertools.permutations(ROWS), 0, None, 97):  # ~52 orders of 5,040
        err = table(list(order)).map(native, "do it")
        seen.add(type(err))
    assert seen == {expected}


def test_every_order_is_really_tried() -> None:
    orders = list(itertools.islice(itertools.permutations(ROWS), 0, None, 97))
    assert len(orders) > 50 and len({o[0] for o in orders}) > 1


def test_two_rows_that_would_tie_are_refused() -> None:
    with pytest.raises(ValueError, match="match the same OSError equally"):
        table([ErrorRule(OSError, HVConnectionError, "a"), ErrorRule(OSError, BackendError, "b")])
    with pytest.raises(ValueError, match="equally"):
        table(
            [
                ErrorRule(CodedError, VMNotFoundError, "a", codes=frozenset({"X", "Y"})),
                ErrorRule(CodedError, BackendError, "b", codes=frozenset({"Y"})),
            ]
        )
    # a row with codes and one without on the same type are not a tie
    table(
        [
            ErrorRule(CodedError, BackendError, "a"),
            ErrorRule(CodedError, VMNotFoundError, "b", codes=frozenset({"X"})),
        ]
    )


def test_mapping_keeps_the_native_error_and_says_what_failed() -> None:
    native = ConnectionError("refused")
    with (
        pytest.raises(HVConnectionError) as info,
        table().mapped("read the stats", vm="web01", uri="demo://h"),
    ):
        raise native
    err = info.value
    assert err.__cause__ is native and err.native is native
    assert (err.backend, err.vm, err.uri, err.native_code) == ("demo", "web01", "demo://h", "ConnectionError")
    assert err.message == "read the stats: the connection broke: refused"
    assert err.retryable is False  # the row's override of HVConnectionError's default


def test_hvballoon_errors_and_bugs_pass_through() -> None:
    own = VMNotFoundError("mine")
    with pytest.raises(VMNotFoundError) as info, table().mapped():
        raise own
    assert info.value is own
    with pytest.raises(KeyError), table().mapped():
        raise KeyError("a bug stays a bug")
    assert not table().catches(KeyError("x")) and table().catches(OSError())


def test_caught_but_unknown_is_a_backend_error_that_says_so() -> None:
    t = table(catch=(Exception,), unknown="unexpected error from the library")
    err = t.map(RuntimeError("boom"), "call")
    assert type(err) is BackendError and err.message == "call: unexpected error from the library: boom"
    assert err.native_code == "RuntimeError"


def test_hooks_unwrap_native_code_detail_and_next_step() -> None:
    class Wrapper(Exception):
        def __init__(self, inner: BaseException) -> None:
            super().__init__("wrapped")
            self.inner = inner

    t = ErrorTable(
        "demo",
        [ErrorRule(PermissionError, AuthenticationError, "refused", next_step="password")],
        unwrap=lambda e: e.inner if isinstance(e, Wrapper) else e,
        native_code=lambda e: getattr(e, "errno", None),
        detail=lambda e: f"errno {getattr(e, 'errno', '?')}",
        catch=(Wrapper, OSError),
    )
    err = t.map(Wrapper(PermissionError(13, "no")))
    assert type(err) is AuthenticationError and err.native_code == 13
    assert err.message == "refused: errno 13" and err.hint is not None and err.hint.kind == "password"


# -- the link ------------------------------------------------------------------------------------

LINK_ROWS = ErrorTable(
    "demo",
    [
        ErrorRule(OSError, HVConnectionError, "the host dropped the call"),
        ErrorRule(TimeoutError, OperationTimeoutError, "the host did not answer"),
        ErrorRule(LookupError, InvalidStateError, "the host refused"),
    ],
)


class Conn:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False


class DemoLink(Link[Conn]):
    """Connections numbered from 1; ConnectionResetError means the connection is gone."""

    def __init__(self, **kw: Any) -> None:
        self.opened: list[Conn] = []
        self.refuse_from: int | None = None
        super().__init__(
            LINK_ROWS, where="demo://host", timeout=kw.pop("timeout", 5), uri="demo://host", **kw
        )

    def connect(self) -> Conn:
        if self.refuse_from is not None and len(self.opened) + 1 >= self.refuse_from:
            raise ConnectionRefusedError(111, "refused")
        conn = Conn(len(self.opened) + 1)
        self.opened.append(conn)
        return conn

    def lost(self, exc: BaseException, native: Conn | None) -> bool:
        return isinstance(exc, ConnectionResetError)

    def disconnect(self, native: Conn) -> None:
        native.closed = True


def resets(times: int) -> Any:
    calls: list[int] = []

    def fn(conn: Conn) -> int:
        calls.append(conn.number)
        if len(calls) <= times:
            raise ConnectionResetError(104, "reset")
        return conn.number

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def test_a_lost_connection_is_restored_once_and_the_call_run_again() -> None:
    link = DemoLink(lazy=False)
    fn = resets(1)
    assert link.call("read", fn) == 2
    assert fn.calls == [1, 2] and link.reconnects == 1
    assert link.opened[0].closed and link.native is link.opened[1]


def test_lost_again_is_a_retryable_connection_error_that_says_so() -> None:
    link = DemoLink()
    with pytest.raises(HVConnectionError) as info:
        link.call("read", resets(2), vm="web01")
    err = info.value
    assert err.retryable and "(and again after reconnecting once)" in err.message
    assert err.vm == "web01" and err.uri == "demo://host" and isinstance(err.__cause__, ConnectionResetError)
    assert link.reconnects == 1


def test_reconnecting_that_fails_is_mapped_too() -> None:
    link = DemoLink()
    link.call("warm up", lambda c: None)
    link.refuse_from = 2
    with pytest.raises(HVConnectionError) as info:
        link.call("read", resets(1))
    assert isinstance(info.value.__cause__, ConnectionRefusedError) and info.value.retryable


def test_an_error_that_is_not_a_lost_connection_is_mapped_without_reconnecting() -> None:
    link = DemoLink()

    def refuse(_c: Conn) -> None:
        raise KeyError("busy")

    with pytest.raises(InvalidStateError):
        link.call("change", refuse)
    assert link.reconnects == 0 and len(link.opened) == 1


def test_own_errors_pass_through_with_context_and_bugs_stay_bugs() -> None:
    link = DemoLink()

    def own(_c: Conn) -> None:
        raise VMNotFoundError("gone")

    with pytest.raises(VMNotFoundError) as info:
        link.call("read", own, vm="web01")
    assert (info.value.backend, info.value.vm, info.value.uri) == ("demo", "web01", "demo://host")
    with pytest.raises(ZeroDivisionError):
        link.call("read", lambda c: 1 // 0)


def test_a_connect_at_construction_is_mapped() -> None:
    class Refused(DemoLink):
        def connect(self) -> Conn:
            raise ConnectionRefusedError(111, "refused")

    with pytest.raises(HVConnectionError) as info:
        Refused(lazy=False)
    assert info.value.message.startswith("connect: the host dropped the call")


def test_a_call_past_its_deadline_is_a_retryable_timeout_and_the_next_call_works() -> None:
    link = DemoLink(timeout=0.2, deadline=WorkerThread("hvballoon-test"))
    release = threading.Event()
    start = time.monotonic()
    with pytest.raises(OperationTimeoutError) as info:
        link.call("hang", lambda _c: release.wait(10))
    assert time.monotonic() - start < 2
    err = info.value
    assert err.retryable and err.details["timeout_seconds"] == 0.2
    assert "may still complete" in err.message and "within 0.2 s" in err.message
    release.set()
    assert link.call("read", lambda c: c.number) == 1
    link.close()
    link.close()


def test_a_link_that_is_not_persistent_opens_and_closes_each_call() -> None:
    class PerCall(DemoLink):
        persistent = False

    link = PerCall()
    assert [link.call("read", lambda c: c.number) for _ in range(3)] == [1, 2, 3]
    assert all(c.closed for c in link.opened) and link.native is None


def test_concurrent_calls_are_serialized() -> None:
    link = DemoLink()
    inside = []
    overlap = []

    def slow(_c: Conn) -> None:
        inside.append(1)
        overlap.append(len(inside))
        time.sleep(0.01)
        inside.pop()

    threads = [threading.Thread(target=link.call, args=("x", slow)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == [1] * 6


class DemoAsyncLink(AsyncLink[Conn]):
    def __init__(self) -> None:
        super().__init__(LINK_ROWS, where="demo://sock", timeout=5)
        self.opened: list[Conn] = []

    async def connect(self) -> Conn:
        conn = Conn(len(self.opened) + 1)
        self.opened.append(conn)
        return conn

    def lost(self, exc: BaseException, native: Conn | None) -> bool:
        return isinstance(exc, ConnectionResetError)

    async def disconnect(self, native: Conn) -> None:
        native.closed = True


def test_the_async_link_reconnects_once_and_keeps_its_deadline() -> None:
    async def scenario() -> None:
        link = DemoAsyncLink()
        sync_fn = resets(1)

        async def fn(conn: Conn) -> int:
            return int(sync_fn(conn))

        assert await link.call("read", fn) == 2 and link.reconnects == 1
        with pytest.raises(HVConnectionError) as info:
            await link.call("read", lambda c: _async(resets(2), c))
        assert "again after reconnecting once" in info.value.message

        async def hang(_c: Conn) -> None:
            await asyncio.sleep(10)

        with pytest.raises(OperationTimeoutError) as timed:
            await link.call("hang", hang, timeout=0.1)
        assert timed.value.details["timeout_seconds"] == 0.1
        await link.close()
        await link.close()

    asyncio.run(scenario())


async def _async(fn: Any, conn: Conn) -> Any:
    return fn(conn)


# -- options --------------------------------------------------------------------------------------


class DemoOptions(BackendOptions):
    read_only: bool = False
    stats_period: int = Field(10, ge=0)
    concurrency: int = Field(16, ge=1)
    keepalive: tuple[int, int] | None = Field((5, 3), strict=False, description="(interval, count) or None")


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"read_only": "no"}, "option read_only must be true or false, got 'no'"),
        ({"read_only": 0}, "option read_only must be true or false, got 0"),
        ({"stats_period": -1}, "option stats_period must be a whole number >= 0, got -1"),
        ({"stats_period": True}, "stats_period must be a whole number >= 0, got True"),
        ({"stats_period": "10"}, "stats_period must be a whole number >= 0, got '10'"),
        ({"stats_period": 2.5}, "stats_period must be a whole number >= 0, got 2.5"),
        ({"concurrency": 0}, "concurrency must be a whole number >= 1"),
        ({"keepalive": (5,)}, "keepalive must be (interval, count) or None, got (5,)"),
        ({"keepalive": ("5", 3)}, "keepalive must be (interval, count) or None"),
        ({"persist": True, "shell": 1}, "unknown option(s) for the demo backend: persist, shell; accepted: "),
    ],
)
def test_bad_options_are_refused_with_what_they_must_be(values: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        DemoOptions.parse(values, backend="demo", uri="demo://h")
    assert words in info.value.message
    assert info.value.backend == "demo" and info.value.uri == "demo://h"


def test_every_problem_is_said_at_once() -> None:
    with pytest.raises(InvalidRequestError) as info:
        DemoOptions.parse({"read_only": "yes", "concurrency": 0, "nope": 1}, backend="demo")
    msg = info.value.message
    assert msg.index("unknown option(s)") < msg.index("read_only") and "concurrency" in msg


def test_good_options_are_typed_and_frozen() -> None:
    opts = DemoOptions.parse({"read_only": True, "keepalive": [1, 2]}, backend="demo")
    assert opts.read_only is True and opts.keepalive == (1, 2) and opts.stats_period == 10
    assert DemoOptions.names() == {"read_only", "stats_period", "concurrency", "keepalive"}
    with pytest.raises(Exception, match="frozen"):
        opts.read_only = False  # type: ignore[misc]


class DemoParams(URIParameters):
    scheme: Literal["https", "http"] = "https"
    transport: Literal["ntlm", "kerberos", "credssp", "basic"] = "ntlm"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"scheme": "ftp"}, "scheme= must be https or http, got 'ftp'"),
        ({"transport": "digest"}, "transport= must be one of ntlm, kerberos, credssp, basic, got 'digest'"),
        ({"datacenter": "x"}, "unknown demo:// parameter(s) datacenter; accepted: scheme, transport"),
    ],
)
def test_bad_uri_parameters_are_invalid_uri_errors(query: dict[str, str], words: str) -> None:
    with pytest.raises(InvalidURIError) as info:
        DemoParams.parse(query, backend="demo", scheme="demo")
    assert words in info.value.message
