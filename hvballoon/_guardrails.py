"""The guard rails' margins: :class:`GuardRails`, the safe floor of a guest's memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hvballoon.errors import InvalidRequestError
from hvballoon.units import MiB, is_number, parse_typed_target

if TYPE_CHECKING:
    from hvballoon.models import MemoryStats


@dataclass(frozen=True)
class GuardRails:
    """The safety margins :meth:`Hypervisor.set_target` applies unless forced.

    The floor is ``used + max(margin_bytes, margin_fraction × configured)``; stats older than
    ``max_stats_age_seconds`` (or marked stale by the backend) are not trusted for it.
    ``margin_bytes`` takes a size as :meth:`Hypervisor.set_target` does (an ``int`` of bytes or
    ``"512MiB"``; kept as bytes); a bad value of any field is an
    :class:`~hvballoon.errors.InvalidRequestError` naming it.
    """

    margin_bytes: int = 256 * MiB
    margin_fraction: float = 0.10
    max_stats_age_seconds: float = 120.0

    def __post_init__(self) -> None:
        # a size as the rest of the API takes it ("512MiB", or an int of bytes); a bad one, or a
        # fraction or an age of the wrong type, is a typed error, not a comparison's TypeError
        margin = parse_typed_target(
            self.margin_bytes, what="margin_bytes", allow_zero=True, noun="size", int_bytes=True
        )
        object.__setattr__(self, "margin_bytes", margin)
        fraction = self.margin_fraction
        if not is_number(fraction) or not 0 <= fraction < 1:
            raise InvalidRequestError(
                f"margin_fraction must be a number from 0 up to (not including) 1, got {fraction!r}",
                details={"value": repr(fraction)},
            )
        age = self.max_stats_age_seconds
        if not is_number(age) or not age >= 0:
            raise InvalidRequestError(
                f"max_stats_age_seconds must be a number of seconds, 0 or more, got {age!r}",
                details={"value": repr(age)},
            )

    def floor(self, used_bytes: int, configured_bytes: int | None) -> int:
        margin = self.margin_bytes
        if configured_bytes:
            margin = max(margin, int(configured_bytes * self.margin_fraction))
        return used_bytes + margin

    def trusts(self, stats: MemoryStats, *, read_seconds_ago: float = 0.0) -> bool:
        """Whether a floor may be set on ``stats``: the guest's use is known, the backend did not
        mark it stale, and its report is at most ``max_stats_age_seconds`` old — counting the
        ``read_seconds_ago`` since it was read (figures read earlier age; a negative time, a
        clock that went back, trusts nothing). A report of unknown age counts from its read.

        >>> from datetime import datetime, timezone
        >>> from hvballoon.models import VM, Mechanism, MemoryStats
        >>> st = MemoryStats(vm=VM(id="1", name="web01", backend="fake"), mechanism=Mechanism.BALLOON,
        ...                  collected_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        ...                  guest_used_bytes=2**30, guest_report_age_seconds=10)
        >>> rails = GuardRails(max_stats_age_seconds=60)
        >>> rails.trusts(st), rails.trusts(st, read_seconds_ago=50), rails.trusts(st, read_seconds_ago=51)
        (True, True, False)
        """
        if stats.used_bytes is None or stats.stale or not read_seconds_ago >= 0:
            return False
        age = (stats.guest_report_age_seconds or 0.0) + read_seconds_ago
        return age <= self.max_stats_age_seconds
