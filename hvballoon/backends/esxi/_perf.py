"""ESXi's own balloon target: the performance counter ``mem.vmmemctltarget`` (KB).

Read only with the ``perf_counters`` option: real-time performance queries cost the hosts more
than a property read. The counter's id is looked up once per session; where the endpoint has no
performance manager or no such counter, the figure is simply absent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyVmomi import vim as _vim

from hvballoon.units import KiB

from ._client import Client

# pyvmomi's types are generated at run time: typed as Any at this boundary.
vim: Any = _vim

__all__ = ["BalloonTargets"]


class BalloonTargets:
    """``mem.vmmemctltarget`` of running VMs, in one ``QueryPerf``; ``call`` runs each remote
    call through the session's link (faults mapped, an expired session logged in again)."""

    def __init__(self, client: Client, call: Callable[[Callable[[], Any]], Any], *, enabled: bool) -> None:
        self.client = client
        self.enabled = enabled
        self._call = call
        self._counter_id: int | None = None  # mem.vmmemctltarget, once looked up
        self._checked = False

    def read(self, moids: list[str]) -> dict[str, int]:
        """Bytes by VM moref id, for the VMs in ``moids`` that report one (none when off)."""
        if not self.enabled or not moids:
            return {}
        c = self.client
        if not self._checked:
            self._counter_id = self._call(self._lookup_counter)
            self._checked = True
        if self._counter_id is None:
            return {}
        counter = self._counter_id
        refs = [vim.VirtualMachine(moid, c.stub) for moid in moids]
        perf = c.content.perfManager
        specs = [
            vim.PerformanceManager.QuerySpec(
                entity=ref,
                metricId=[vim.PerformanceManager.MetricId(counterId=counter, instance="")],
                intervalId=20,
                maxSample=1,
            )
            for ref in refs
        ]
        out: dict[str, int] = {}
        for entity in self._call(lambda: perf.QueryPerf(specs)) or ():
            for series in getattr(entity, "value", None) or ():
                values = list(getattr(series, "value", None) or ())
                if values and values[-1] is not None and values[-1] >= 0:
                    out[entity.entity._moId] = int(values[-1]) * KiB
        return out

    def _lookup_counter(self) -> int | None:
        perf = self.client.content.perfManager
        if perf is None:
            return None
        spec = self.client.objects_filter([perf], {vim.PerformanceManager: ["perfCounter"]})
        rows = self.client.retrieve(spec)
        for info in rows[0][1].get("perfCounter", ()) if rows else ():
            if (info.groupInfo.key, info.nameInfo.key, str(info.rollupType)) == (
                "mem",
                "vmmemctltarget",
                "average",
            ):
                return int(info.key)
        return None
