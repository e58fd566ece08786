"""How the controller is doing: rounds, failures in a row, backoff, what it moved.

A round *fails* when its sweep (the stats, the host figures) cannot be read: nothing is decided
and nothing moves. The controller then waits longer before the next try — the pace its rounds
kept (the interval, or a quicker one the policy asked for), doubled per failure in a row, at
most ``max_backoff_seconds`` — and after ``max_failed_rounds`` failures
in a row it *fails open*: it gives back what it lowered and keeps trying. A round whose sweep
worked succeeds even when some moves failed; those are the VMs' ``error`` decisions.

>>> h = ControllerHealth()
>>> h.failed("timeout", 0.1), h.backoff_seconds(10.0, 60.0)
(True, 10.0)
>>> h.failed("timeout", 0.1), h.consecutive_failures, h.backoff_seconds(10.0, 60.0)
(True, 2, 20.0)
>>> default_max_failed_rounds(10.0, 60.0)  # 10 + 20 + 40 + 60 + 60 s: three minutes' worth
5
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hvballoon.policy.model import Decision

__all__ = ["DURATION_BUCKETS", "FAIL_OPEN_AFTER_SECONDS", "ControllerHealth", "default_max_failed_rounds"]

#: The failed rounds in a row a controller bears, by default, are those that fit in this long.
FAIL_OPEN_AFTER_SECONDS = 180.0
#: Upper bounds (seconds) of the round-duration histogram's buckets.
DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)


def backoff(interval: float, failures: int, max_backoff: float) -> float:
    """The wait after ``failures`` failed rounds in a row: the interval, doubled per failure
    after the first, at most ``max_backoff`` (never below the interval)."""
    if failures <= 0:
        return interval
    # past a thousand doublings the wait is at its bound whatever the interval (and 2.0 ** 1024
    # overflows: an outage of a day at 60 s would have stopped the controller)
    doublings = min(failures - 1, 1000)
    return float(max(interval, min(interval * 2.0**doublings, max_backoff)))


def default_max_failed_rounds(interval: float, max_backoff: float) -> int:
    """How many failed rounds in a row fit in :data:`FAIL_OPEN_AFTER_SECONDS` of backoff (at
    least 3): "a few minutes' worth of rounds" whatever the interval."""
    waited, n = 0.0, 0
    while waited < FAIL_OPEN_AFTER_SECONDS:
        n += 1
        waited += backoff(interval, n, max_backoff)
    return max(3, n)


@dataclass
class ControllerHealth:
    """Counters of a controller since it started (what ``--metrics-address`` serves)."""

    rounds: int = 0
    failed_rounds: int = 0
    failed_by_code: dict[str, int] = field(default_factory=dict)
    consecutive_failures: int = 0
    decisions: dict[tuple[str, str], int] = field(default_factory=dict)
    lowered_bytes: int = 0
    raised_bytes: int = 0
    moves_made: int = 0
    moves_failed: int = 0
    reconnects: int = 0
    #: VMs held lowered that the controller found not lowered any more (restarted at their boot
    #: size) and forgot
    lapsed: int = 0
    fail_open: bool = False
    fail_open_releases: int = 0
    last_success_at: float | None = None
    last_round_seconds: float = 0.0
    duration_counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_sum: float = 0.0
    last_error_code: str | None = None
    last_error: str | None = None

    def _timed(self, seconds: float) -> None:
        self.rounds += 1
        self.last_round_seconds = seconds
        self.duration_sum += seconds
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.duration_counts[i] += 1
                break

    def succeeded(self, decisions: list[Decision], seconds: float) -> None:
        """A round whose sweep worked: count its decisions and what moved."""
        self._timed(seconds)
        self.consecutive_failures = 0
        self.fail_open = False
        self.last_success_at = time.time()
        self.counted(decisions)

    def counted(self, decisions: Iterable[Decision]) -> None:
        """Count decisions and what moved (a failed round's are the raises made while its sweep
        hung)."""
        for d in decisions:
            key = (d.action, d.rule)
            self.decisions[key] = self.decisions.get(key, 0) + 1
            if d.action == "error":
                self.moves_failed += 1
            if d.applied:
                self.moves_made += 1
            if d.applied and d.after_bytes is not None and d.before_bytes is not None:
                if d.action == "lower":
                    self.lowered_bytes += d.before_bytes - d.after_bytes
                elif d.action == "raise":
                    self.raised_bytes += d.after_bytes - d.before_bytes

    def failed(self, code: str, seconds: float, message: str | None = None) -> bool:
        """A round whose sweep failed (error ``code``); returns True (for chaining)."""
        self._timed(seconds)
        self.failed_rounds += 1
        self.consecutive_failures += 1
        self.failed_by_code[code] = self.failed_by_code.get(code, 0) + 1
        self.last_error_code = code
        self.last_error = message
        return True

    def backoff_seconds(self, interval: float, max_backoff: float) -> float:
        """The wait before the next round (the interval, or longer after failures)."""
        return backoff(interval, self.consecutive_failures, max_backoff)
