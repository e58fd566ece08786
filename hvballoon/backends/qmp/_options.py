"""The QMP backend's options (keywords of :func:`hvballoon.connect`); importable without qemu.qmp.

>>> QMPOptions.parse({"concurrency": 4}, backend="qmp").concurrency
4
"""

from __future__ import annotations

from pydantic import Field

from hvballoon.backend_kit import BackendOptions
from hvballoon.kinds.kvm import DEFAULT_STATS_PERIOD, StatsPeriodOption

__all__ = ["QMPOptions"]


class QMPOptions(BackendOptions):
    """``read_only``: never change anything; ``stats_period``: seconds set on a balloon whose period
    is off (0: never); ``concurrency``: how many VMs a sweep talks to at once."""

    read_only: bool = False
    stats_period: StatsPeriodOption = DEFAULT_STATS_PERIOD
    concurrency: int = Field(16, ge=1)
