from __future__ import annotations

import pytest

from hvballoon.errors import HVConnectionError, InvalidRequestError, OperationTimeoutError, VMNotFoundError
from hvballoon.retry import RetryPolicy


class Flaky:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_retries_retryable_then_succeeds() -> None:
    slept: list[float] = []
    fn = Flaky([HVConnectionError("lost"), OperationTimeoutError("slow")])
    assert RetryPolicy(max_attempts=3, sleep=slept.append, seed=1).call(fn) == "ok"
    assert fn.calls == 3 and len(slept) == 2 and slept[0] < slept[1]


def test_gives_up_with_the_original_error() -> None:
    original = HVConnectionError("lost")
    fn = Flaky([original] * 5)
    with pytest.raises(HVConnectionError) as info:
        RetryPolicy(max_attempts=3, sleep=lambda _s: None).call(fn)
    assert info.value is original and fn.calls == 3


def test_never_retries_non_retryable() -> None:
    fn = Flaky([VMNotFoundError("gone"), VMNotFoundError("gone")])
    with pytest.raises(VMNotFoundError):
        RetryPolicy(sleep=lambda _s: None).call(fn)
    assert fn.calls == 1


def test_never_retries_foreign_exceptions() -> None:
    fn = Flaky([ValueError("bug")])
    with pytest.raises(ValueError):
        RetryPolicy(sleep=lambda _s: None).call(fn)
    assert fn.calls == 1


def test_one_attempt_means_off() -> None:
    fn = Flaky([HVConnectionError("lost")])
    with pytest.raises(HVConnectionError):
        RetryPolicy(max_attempts=1).call(fn)
    assert fn.calls == 1 and not RetryPolicy(max_attempts=1).enabled


def test_delays_are_bounded_and_jittered() -> None:
    delays = RetryPolicy(max_attempts=8, initial_delay=0.5, max_delay=4, seed=3).delays()
    assert len(delays) == 7 and all(0.5 <= d <= 4 for d in delays)
    assert RetryPolicy(max_attempts=8, seed=3).delays() == RetryPolicy(max_attempts=8, seed=3).delays()


@pytest.mark.parametrize("kw", [{"max_attempts": 0}, {"initial_delay": -1}, {"multiplier": 0.5}])
def test_bad_policies(kw: dict) -> None:
    with pytest.raises(InvalidRequestError):
        RetryPolicy(**kw)


def test_before_retry_is_called_between_the_attempts_only() -> None:
    seen: list[tuple[str, int]] = []
    events: list[str] = []
    lost, slow = HVConnectionError("lost"), OperationTimeoutError("slow")
    fn = Flaky([lost, slow, slow])

    def before(exc: object, attempt: int) -> None:
        seen.append((type(exc).__name__, attempt))
        events.append("hook")

    policy = RetryPolicy(max_attempts=3, sleep=lambda _s: events.append("wait"), before_retry=before)
    with pytest.raises(OperationTimeoutError):
        policy.call(fn)
    # after the first and second attempts, before their waits; not after the last (no retry follows)
    assert seen == [("HVConnectionError", 1), ("OperationTimeoutError", 2)]
    assert events == ["hook", "wait", "hook", "wait"]
