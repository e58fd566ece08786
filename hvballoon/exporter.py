"""A Prometheus exporter: every VM's memory figures and the health of each sweep.

``hvballoon exporter URI… --listen 127.0.0.1:9177`` serves ``/metrics``. Each scrape is answered
from one bulk sweep of every host (concurrent, with a per-host deadline, see
:class:`~hvballoon.fleet.Fleet`), or from the previous sweep when it is younger than
``interval`` — so several Prometheus servers scraping at once cost one sweep, not several.
Needs the ``exporter`` extra (``pip install 'hvballoon[exporter]'``, which brings
``prometheus-client``).

Per-VM series carry the labels ``uri`` (redacted), ``backend``, ``host``, ``vm`` and ``vm_id``.
Every byte figure of :class:`~hvballoon.MemoryStats` a backend fills becomes a gauge
``hvballoon_vm_<field>`` (a figure the backend does not know is *absent*, never 0); the
cumulative ones (swap in/out, major faults) are counters. Sweep health:
``hvballoon_host_up``, ``hvballoon_host_sweep_duration_seconds``,
``hvballoon_host_errors_total{code}``, ``hvballoon_host_last_success_timestamp_seconds``,
``hvballoon_sweep_duration_seconds`` and ``hvballoon_sweeps_total``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hvballoon._uri import parse_uri
from hvballoon.errors import BackendNotInstalledError, InvalidRequestError
from hvballoon.fleet import Fleet, HostResult

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = [
    "COUNTER_FIELDS",
    "GAUGE_FIELDS",
    "Exporter",
    "parse_listen",
]

INSTALL_HINT = "pip install 'hvballoon[exporter]'  (or: pip install prometheus-client)"

#: Cumulative MemoryStats figures, exported as counters ``hvballoon_vm_<field>_total``.
COUNTER_FIELDS: tuple[str, ...] = ("swap_in_bytes", "swap_out_bytes", "major_faults")


def _gauge_fields() -> tuple[str, ...]:
    from hvballoon.models import MemoryStats

    return tuple(
        name
        for name in MemoryStats.model_fields
        if (name.endswith("_bytes") or name.endswith("_seconds") or name == "pressure_ratio")
        and name not in COUNTER_FIELDS
    )


#: MemoryStats figures exported as gauges ``hvballoon_vm_<field>``.
GAUGE_FIELDS: tuple[str, ...] = _gauge_fields()

_VM_LABELS = ["uri", "backend", "host", "vm", "vm_id"]


def _require_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"the exporter needs the prometheus-client package; run: {INSTALL_HINT}",
            details={"install": INSTALL_HINT, "missing": "prometheus_client"},
        ) from exc


def parse_listen(value: str) -> tuple[str, int]:
    """``'127.0.0.1:9177'``, ``'[::1]:9177'``, ``':9177'`` (loopback) or ``'9177'`` → (address, port).

    >>> parse_listen("127.0.0.1:9177"), parse_listen("[::1]:0"), parse_listen("9177")
    (('127.0.0.1', 9177), ('::1', 0), ('127.0.0.1', 9177))
    """
    text = value.strip()
    host, port_text = "127.0.0.1", text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise InvalidRequestError(f"invalid --listen {value!r}: expected [ADDRESS]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        host = host or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidRequestError(
            f"invalid --listen {value!r}: expected ADDRESS:PORT, e.g. 127.0.0.1:9177"
        ) from None
    if not 0 <= port <= 65535:
        raise InvalidRequestError(f"invalid --listen {value!r}: the port must be 0-65535")
    return host, port


class Exporter:
    """The exporter: a :class:`~hvballoon.fleet.Fleet`, a sweep cache and a Prometheus registry.

    ``interval`` (seconds) is the age below which a scrape is answered from the last sweep;
    0 sweeps on every scrape. :meth:`start` serves HTTP in a background thread; :meth:`render`
    returns the exposition text without a server (handy in tests and cron jobs).
    """

    def __init__(
        self, fleet: Fleet, *, interval: float = 15.0, clock: Callable[[], float] = time.time
    ) -> None:
        _require_prometheus()
        from prometheus_client.registry import CollectorRegistry

        if interval < 0:
            raise InvalidRequestError("the exporter's interval cannot be negative")
        self.fleet = fleet
        self.interval = float(interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._results: list[HostResult] = []
        self._swept_at: float | None = None  # wall clock, start of the last sweep
        self._swept_mono: float | None = None
        self._sweep_seconds = 0.0
        self.sweeps = 0
        self._errors: dict[tuple[str, str], int] = {}
        self._last_success: dict[str, float] = {}
        self.registry: CollectorRegistry = CollectorRegistry()
        self.registry.register(_Collector(self))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- sweeping -----------------------------------------------------------------------

    def current(self) -> tuple[list[HostResult], float, float]:
        """The results to serve (sweeping first if the cache is older than ``interval``).

        Returns (results, wall-clock start of their sweep, its duration in seconds).
        """
        with self._lock:
            fresh = (
                self._swept_mono is not None
                and self.interval > 0
                and time.monotonic() - self._swept_mono < self.interval
            )
            if not fresh:
                self._sweep()
            assert self._swept_at is not None
            return list(self._results), self._swept_at, self._sweep_seconds

    def _sweep(self) -> None:
        started_wall, started = self._clock(), time.monotonic()
        results = self.fleet.sweep()
        self._sweep_seconds = time.monotonic() - started
        self._swept_at, self._swept_mono = started_wall, started
        self._results = results
        self.sweeps += 1
        for r in results:
            if r.error is None:
                self._last_success[r.uri] = started_wall + r.elapsed_seconds
            else:
                key = (r.uri, r.error.code)
                self._errors[key] = self._errors.get(key, 0) + 1

    # -- serving ------------------------------------------------------------------------

    def render(self) -> bytes:
        """The exposition text (Prometheus text format 0.0.4) of one scrape."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def start(self, address: str = "127.0.0.1", port: int = 9177) -> tuple[str, int]:
        """Serve ``/metrics`` on ``address:port`` in a daemon thread; returns the bound address."""
        from prometheus_client import start_http_server

        if self._server is not None:
            raise InvalidRequestError("the exporter is already serving")
        try:
            server, thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:
            raise InvalidRequestError(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from None
        self._server, self._thread = server, thread
        bound = server.server_address
        return str(bound[0]), int(bound[1])

    def stop(self) -> None:
        """Stop serving and close the hosts' sessions."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.fleet.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- metrics ------------------------------------------------------------------------

    def metrics(self) -> Iterator[Metric]:
        """The metric families of one scrape."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        from hvballoon._version import __version__

        results, swept_at, sweep_seconds = self.current()
        info = InfoMetricFamily("hvballoon_exporter", "The hvballoon exporter's version.")
        info.add_metric([], {"version": __version__})
        yield info

        gauges = {
            f: GaugeMetricFamily(f"hvballoon_vm_{f}", _HELP.get(f, f.replace("_", " ")), labels=_VM_LABELS)
            for f in GAUGE_FIELDS
        }
        counters = {
            f: CounterMetricFamily(f"hvballoon_vm_{f}", _HELP.get(f, f.replace("_", " ")), labels=_VM_LABELS)
            for f in COUNTER_FIELDS
        }
        stale = GaugeMetricFamily(
            "hvballoon_vm_stats_stale",
            "1 when the guest's figures are missing or too old to act on.",
            labels=_VM_LABELS,
        )
        vm_info = GaugeMetricFamily(
            "hvballoon_vm_info",
            "Always 1; the VM's power state and the mechanism a target uses, as labels.",
            labels=[*_VM_LABELS, "power_state", "mechanism"],
        )
        up = GaugeMetricFamily(
            "hvballoon_host_up", "1 when the host answered the last sweep, else 0.", labels=["uri", "backend"]
        )
        host_seconds = GaugeMetricFamily(
            "hvballoon_host_sweep_duration_seconds",
            "How long the host took in the last sweep (its timeout when it did not answer).",
            labels=["uri"],
        )
        vms = GaugeMetricFamily(
            "hvballoon_host_vms", "VMs the host reported in the last sweep.", labels=["uri"]
        )
        errors = CounterMetricFamily(
            "hvballoon_host_errors",
            "Failed sweeps of the host since the exporter started, by hvballoon error code.",
            labels=["uri", "code"],
        )
        last_ok = GaugeMetricFamily(
            "hvballoon_host_last_success_timestamp_seconds",
            "When the host last answered a sweep (Unix time).",
            labels=["uri"],
        )
        for r in results:
            backend = r.backend or ""
            up.add_metric([r.uri, backend], 1.0 if r.ok else 0.0)
            host_seconds.add_metric([r.uri], r.elapsed_seconds)
            vms.add_metric([r.uri], float(len(r.stats)))
            if r.uri in self._last_success:
                last_ok.add_metric([r.uri], self._last_success[r.uri])
            fallback_host = _uri_host(r.uri)
            for s in r.stats:
                labels = [r.uri, backend or s.vm.backend, s.vm.host or fallback_host, s.vm.name, s.vm.id]
                for f, family in gauges.items():
                    value = getattr(s, f)
                    if value is not None:
                        family.add_metric(labels, float(value))
                for f, cfamily in counters.items():
                    value = getattr(s, f)
                    if value is not None:
                        cfamily.add_metric(labels, float(value))
                stale.add_metric(labels, 1.0 if s.stale else 0.0)
                vm_info.add_metric([*labels, s.vm.power_state.value, s.mechanism.value], 1.0)
        for (uri, code), count in sorted(self._errors.items()):
            errors.add_metric([uri, code], float(count))
        yield from gauges.values()
        yield from counters.values()
        yield stale
        yield vm_info
        yield up
        yield host_seconds
        yield vms
        yield errors
        yield last_ok
        yield GaugeMetricFamily(
            "hvballoon_sweep_duration_seconds",
            "How long the last sweep of all hosts took.",
            value=sweep_seconds,
        )
        yield GaugeMetricFamily(
            "hvballoon_sweep_timestamp_seconds",
            "When the sweep being served started (Unix time); older than the interval never.",
            value=swept_at,
        )
        yield CounterMetricFamily(
            "hvballoon_sweeps", "Sweeps since the exporter started.", value=float(self.sweeps)
        )


class _Collector:
    """The registry's view of an :class:`Exporter` (a custom collector: one sweep per scrape)."""

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def describe(self) -> list[Any]:
        # no sweep when registering: the families are only known once the hosts answered
        return []

    def collect(self) -> Iterator[Metric]:
        return self._exporter.metrics()


def _uri_host(uri: str) -> str:
    try:
        return parse_uri(uri).host or ""
    except Exception:
        return ""


_HELP: dict[str, str] = {
    "configured_bytes": "Configured (maximum) memory of the VM.",
    "current_bytes": "Memory the guest has now (after the balloon, or Hyper-V's assigned memory).",
    "target_bytes": "Target the hypervisor steers the VM's memory to.",
    "ballooned_bytes": "Memory held by the balloon driver.",
    "guest_total_bytes": "Total memory the guest OS sees.",
    "guest_used_bytes": "Memory used by the guest (not cache).",
    "guest_free_bytes": "Memory entirely unused in the guest.",
    "guest_available_bytes": "Memory the guest can use without swapping (free + reclaimable cache).",
    "guest_cache_bytes": "Guest page cache.",
    "swap_in_bytes": "Guest swap-in, cumulative.",
    "swap_out_bytes": "Guest swap-out, cumulative.",
    "major_faults": "Guest major page faults, cumulative.",
    "host_consumed_bytes": "Host memory backing the VM.",
    "demand_bytes": "Memory the guest needs (Hyper-V demand, ESXi active).",
    "swapped_bytes": "VM memory swapped out by the host.",
    "compressed_bytes": "VM memory compressed by the host.",
    "shared_bytes": "VM memory shared with other VMs by the host.",
    "guest_report_age_seconds": "Age of the guest's last memory report.",
    "pressure_ratio": "Demand (or guest used) / current memory; above about 0.9 the guest is short.",
}
