"""The KVM backend's options (keywords of :func:`hvballoon.connect`); importable without libvirt.

>>> KVMOptions.parse({"keepalive": [10, 5]}, backend="kvm").keepalive
(10, 5)
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from hvballoon.backend_kit import BackendOptions
from hvballoon.kinds.kvm import DEFAULT_STATS_PERIOD, StatsPeriodOption
from hvballoon.models import MAX_INT32

__all__ = ["KVMOptions"]

#: libvirt takes each as a C int (virDomainSetMemoryStatsPeriod, virConnectSetKeepAlive).
_Positive = Annotated[int, Field(gt=0, le=MAX_INT32)]


class KVMOptions(BackendOptions):
    """What each option does: see :class:`~hvballoon.backends.kvm.backend.KVMBackend`."""

    read_only: bool = False
    persist: bool = False
    stats_period: StatsPeriodOption = DEFAULT_STATS_PERIOD
    event_loop: bool | None = None
    keepalive: tuple[_Positive, _Positive] | None = Field(
        (5, 3),
        strict=False,
        description="(interval_seconds, count), both whole numbers > 0 (at most 2**31 - 1), or None",
    )
