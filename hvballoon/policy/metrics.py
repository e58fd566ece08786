"""Prometheus metrics of a running controller (``hvballoon autoballoon --metrics-address``).

Beside the figures of the VMs and hosts it read in its last round — the exporter's own families
(:func:`hvballoon.exporter.sweep_metrics`: ``hvballoon_vm_*``, ``hvballoon_host_*``, with
``hvballoon_host_up`` 0 while its sweeps fail) — the controller serves its own, each labelled with
the URI (redacted) and the policy:

- ``hvballoon_controller_rounds_total``, ``hvballoon_controller_failed_rounds_total{code}``,
  ``hvballoon_controller_consecutive_failed_rounds``;
- ``hvballoon_controller_decisions_total{action,rule}``;
- ``hvballoon_controller_lowered_bytes_total``, ``hvballoon_controller_raised_bytes_total``;
- ``hvballoon_controller_round_duration_seconds`` (a histogram);
- ``hvballoon_controller_last_success_timestamp_seconds``;
- per host (label ``host``: the host a round decided apart, the session's one host, or ``""``
  for the pooled view), what the policy decided it on in the last round — for ``hvballoon``:
  ``hvballoon_controller_host_reserve_bytes``, ``…_host_wave_reserve_bytes``,
  ``…_host_short_bytes``, ``hvballoon_controller_headroom_level`` and
  ``hvballoon_controller_host_uncommitted`` (1 while the host could hold every VM whole);
- ``hvballoon_controller_lowered_vms`` (what it would give back now),
  ``hvballoon_controller_fail_open`` (1 while it has given up and released),
  ``hvballoon_controller_reconnects_total``, ``hvballoon_controller_fail_open_releases_total``,
  ``hvballoon_controller_lapsed_total`` (VMs held lowered found restarted at their boot size,
  and forgotten).

Needs the ``exporter`` extra (``prometheus-client``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hvballoon.errors import HVBalloonError
from hvballoon.exporter import MetricsEndpoint
from hvballoon.policy.health import DURATION_BUCKETS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from hvballoon.policy.controller import Controller

__all__ = ["ControllerMetrics"]


class ControllerMetrics(MetricsEndpoint):
    """A Prometheus registry over a :class:`~hvballoon.policy.Controller`: :meth:`render` for
    the exposition text, :meth:`start` to serve ``/metrics`` in a daemon thread."""

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller
        self.registry.register(_Collector(self))

    def metrics(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        from hvballoon._version import __version__
        from hvballoon.exporter import sweep_metrics

        ctl = self.controller
        h = ctl.health
        uri, policy = ctl.uri, ctl.policy.name
        labels = ["uri", "policy"]
        base = [uri, policy]
        info = InfoMetricFamily(
            "hvballoon_controller", "The controller's version, URI and policy.", labels=labels
        )
        info.add_metric(base, {"version": __version__, "dry_run": str(ctl.dry_run).lower()})
        yield info

        def counter(name: str, doc: str, value: float) -> Any:
            family = CounterMetricFamily(name, doc, labels=labels)
            family.add_metric(base, value)
            return family

        def gauge(name: str, doc: str, value: float) -> Any:
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric(base, value)
            return family

        yield counter("hvballoon_controller_rounds", "Rounds tried since the controller started.", h.rounds)
        failed = CounterMetricFamily(
            "hvballoon_controller_failed_rounds",
            "Rounds whose sweep failed (nothing decided, nothing moved), by hvballoon error code.",
            labels=[*labels, "code"],
        )
        for code, n in sorted(h.failed_by_code.items()):
            failed.add_metric([*base, code], n)
        yield failed
        yield gauge(
            "hvballoon_controller_consecutive_failed_rounds",
            "Failed rounds in a row now (0 after a round that worked).",
            h.consecutive_failures,
        )
        decisions = CounterMetricFamily(
            "hvballoon_controller_decisions",
            "Decisions by action (raise, lower, hold, skip, refused, error) and rule.",
            labels=[*labels, "action", "rule"],
        )
        for (action, rule), n in sorted(h.decisions.items()):
            decisions.add_metric([*base, action, rule], n)
        yield decisions
        yield counter(
            "hvballoon_controller_lowered_bytes", "Bytes of targets lowered (moves made).", h.lowered_bytes
        )
        yield counter(
            "hvballoon_controller_raised_bytes", "Bytes of targets raised (moves made).", h.raised_bytes
        )
        histogram = HistogramMetricFamily(
            "hvballoon_controller_round_duration_seconds", "How long rounds take.", labels=labels
        )
        cumulative, buckets = 0, []
        for bound, n in zip(DURATION_BUCKETS, h.duration_counts, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        histogram.add_metric(base, buckets, h.duration_sum)
        yield histogram
        if h.last_success_at is not None:
            yield gauge(
                "hvballoon_controller_last_success_timestamp_seconds",
                "When a round last worked (Unix time).",
                h.last_success_at,
            )
        try:
            lowered: int | None = len(ctl.lowered())
        except HVBalloonError:  # a journal that cannot be read: the rest of the scrape stands
            lowered = None
        if lowered is not None:
            yield gauge(
                "hvballoon_controller_lowered_vms",
                "VMs the controller holds lowered (what a release would give back).",
                lowered,
            )
        yield gauge(
            "hvballoon_controller_fail_open",
            "1 while the controller has given up after too many failed rounds in a row and released.",
            1 if h.fail_open else 0,
        )
        yield counter(
            "hvballoon_controller_reconnects", "New sessions opened after a broken one.", h.reconnects
        )
        yield counter(
            "hvballoon_controller_lapsed",
            "VMs held lowered that the controller found not lowered any more (restarted at their boot "
            "size) and forgot.",
            h.lapsed,
        )
        yield counter(
            "hvballoon_controller_fail_open_releases",
            "Times the controller gave back what it lowered after failing too many rounds in a row.",
            h.fail_open_releases,
        )
        yield from _host_figures(ctl.host_figures, labels, base)
        last = ctl.last_sweep
        yield from sweep_metrics(
            [last] if last is not None else [],
            last_success={uri: h.last_success_at} if h.last_success_at is not None else {},
            errors={(uri, code): n for code, n in h.failed_by_code.items()},
        )


#: Gauges of what the policy decided each host on (``Controller.host_figures``): name, the
#: figure it shows, help.
_HOST_GAUGES = (
    ("hvballoon_controller_host_reserve_bytes", "host_reserve_bytes",
     "Free memory the policy keeps on the host (its reserve), as of the last round decided."),
    ("hvballoon_controller_host_wave_reserve_bytes", "host_wave_reserve_bytes",
     "The part of the host's reserve kept for a plausible wave of surges."),
    ("hvballoon_controller_host_short_bytes", "host_short_bytes",
     "How far the host's free memory was below the policy's reserve (0 when it was not)."),
    ("hvballoon_controller_headroom_level", "headroom_level",
     "The share of each VM's plausible surge the policy leaves it as headroom on the host (1: whole)."),
)  # fmt: skip


def _host_figures(
    figures: dict[str, dict[str, float]], labels: list[str], base: list[str]
) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    if not figures:
        return
    for name, key, doc in _HOST_GAUGES:
        family = GaugeMetricFamily(name, doc, labels=[*labels, "host"])
        for host, fig in sorted(figures.items()):
            if key in fig:
                family.add_metric([*base, host], fig[key])
        yield family
    uncommitted = GaugeMetricFamily(
        "hvballoon_controller_host_uncommitted",
        "1 while the host could back every running VM at its whole size and keep its reserve "
        "(the hvballoon policy then takes nothing back), else 0.",
        labels=[*labels, "host"],
    )
    for host, fig in sorted(figures.items()):
        uncommitted.add_metric([*base, host], 1 if "host_room_with_every_vm_whole_bytes" in fig else 0)
    yield uncommitted


class _Collector:
    def __init__(self, owner: ControllerMetrics) -> None:
        self._owner = owner

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Metric]:
        return self._owner.metrics()
