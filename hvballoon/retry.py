"""Retries, in exactly one layer: the session wraps each backend call with a :class:`RetryPolicy`.

Only errors marked ``retryable`` (connection lost, timeout, session expired) are retried; the
number of attempts is bounded, the backoff is exponential with jitter, and when the attempts are
exhausted the original error is re-raised (never a wrapper). Only absolute, idempotent operations
are ever retried ("set the target to 6 GiB", never "shrink by 1 GiB").

>>> RetryPolicy(max_attempts=1).enabled
False
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from hvballoon.errors import HVBalloonError, InvalidRequestError
from hvballoon.units import MAX_SECONDS, is_number

__all__ = ["MAX_ATTEMPTS", "RetryPolicy"]

T = TypeVar("T")
log = logging.getLogger("hvballoon.retry")

#: The most attempts a policy makes: retries are bounded (a policy's waits are drawn up front).
MAX_ATTEMPTS = 100


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry retryable errors.

    ``max_attempts=1`` turns retrying off; at most :data:`MAX_ATTEMPTS`. Delays are finite
    numbers of seconds (``max_delay`` at most :data:`~hvballoon.units.MAX_SECONDS`); anything else
    is an :class:`~hvballoon.errors.InvalidRequestError` naming the field. ``sleep`` may be replaced (tests on the fake inject a
    no-op so retries are instant); ``seed`` makes the jitter reproducible. ``before_retry``, if
    given, is called with the error and the number of the attempt that failed before each wait
    (a caller acts between the attempts: the controller, while a sweep hangs). ``log_level``
    is the level of the ``hvballoon.retry`` line each retry writes ("retrying get_stats after
    timeout (attempt 1)"): ``logging.INFO`` by default; a caller that says its own failures
    lowers it (the controller's rounds log at ``logging.DEBUG``: an outage is said by the
    controller at its first round and each doubling, not twice per round by the retries).
    """

    max_attempts: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    seed: int | None = None
    before_retry: Callable[[HVBalloonError, int], None] | None = field(
        default=None, repr=False, compare=False
    )
    log_level: int = logging.INFO

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
            raise InvalidRequestError(
                f"RetryPolicy.max_attempts must be a whole number from 1 (no retries) to {MAX_ATTEMPTS}, "
                f"got {attempts!r}",
                details={"value": repr(attempts)},
            )
        for name in ("initial_delay", "max_delay", "multiplier", "jitter"):
            value = getattr(self, name)
            if not is_number(value, finite=True):
                raise InvalidRequestError(
                    f"RetryPolicy.{name} must be a finite number, got {value!r}",
                    details={"value": repr(value)},
                )
        level = self.log_level
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= logging.CRITICAL:
            raise InvalidRequestError(
                f"RetryPolicy.log_level must be a logging level (e.g. logging.DEBUG), got {level!r}",
                details={"value": repr(level)},
            )
        if self.initial_delay < 0 or self.max_delay < 0 or self.jitter < 0 or self.multiplier < 1:
            raise InvalidRequestError("RetryPolicy delays must be >= 0 and multiplier >= 1")
        if self.max_delay > MAX_SECONDS:
            raise InvalidRequestError(
                f"RetryPolicy.max_delay must be at most {MAX_SECONDS:.0f} seconds, got {self.max_delay!r}"
            )

    @property
    def enabled(self) -> bool:
        return self.max_attempts > 1

    def delays(self) -> list[float]:
        """The waits between attempts (jittered): ``max_attempts - 1`` values."""
        rng = random.Random(self.seed)
        out = []
        for attempt in range(self.max_attempts - 1):
            base = min(self.max_delay, self.initial_delay * self.multiplier**attempt)
            out.append(min(self.max_delay, base + rng.uniform(0, base * self.jitter)))
        return out

    def call(self, fn: Callable[[], T], *, what: str = "call") -> T:
        """Run ``fn``, retrying retryable :class:`~hvballoon.errors.HVBalloonError` only."""
        if not self.enabled:
            return fn()
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        delays: Iterator[float] | None = None  # drawn at the first retry (most calls have none)

        def wait(_state: object) -> float:
            nonlocal delays
            if delays is None:
                delays = iter(self.delays())
            return next(delays, self.max_delay)

        def before_sleep(state: object) -> None:
            outcome = getattr(state, "outcome", None)
            exc = outcome.exception() if outcome is not None else None
            attempt = getattr(state, "attempt_number", 0)
            code = getattr(exc, "code", exc)
            log.log(self.log_level, "retrying %s after %s (attempt %s)", what, code, attempt or "?")
            if self.before_retry is not None and isinstance(exc, HVBalloonError):
                self.before_retry(exc, attempt)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait,
            retry=retry_if_exception(lambda e: isinstance(e, HVBalloonError) and e.retryable),
            reraise=True,
            sleep=self.sleep,
            before_sleep=before_sleep,
        )
        return retrying(fn)
