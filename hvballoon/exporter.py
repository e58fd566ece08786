"""A Prometheus exporter: every VM's memory figures and the health of each sweep.

``hvballoon exporter URI… --listen 127.0.0.1:10177`` serves ``/metrics``. Each scrape is answered
from one bulk sweep of every host (concurrent, with a per-host deadline, see
:class:`~hvballoon.fleet.Fleet`), or from the previous sweep when it is younger than
``interval`` — so several Prometheus servers scraping at once cost one sweep, not several.
Needs the ``exporter`` extra (``pip install 'hvballoon[exporter]'``, which brings
``prometheus-client``).

Per-VM series carry the labels ``uri`` (redacted), ``backend``, ``host``, ``vm`` and ``vm_id``.
Every byte figure of :class:`~hvballoon.MemoryStats` a backend fills becomes a gauge
``hvballoon_vm_<field>`` (a figure the backend does not know is *absent*, never 0); the
cumulative ones (swap in/out, major faults) are counters. Every figure of
:class:`~hvballoon.HostStats` becomes a gauge ``hvballoon_host_<field>`` per hypervisor host
(``hvballoon_host_physical_bytes``, ``…_vms_running``, ``…_overcommit_ratio`` …). Sweep health,
per URI: ``hvballoon_host_up``, ``hvballoon_host_vms``, ``hvballoon_host_sweep_duration_seconds``,
``hvballoon_host_errors_total{code}``, ``hvballoon_host_last_success_timestamp_seconds``;
``hvballoon_sweep_duration_seconds`` and ``hvballoon_sweeps_total``. Every ``hvballoon_host_*``
series carries the same labels, ``uri``, ``backend`` and ``host`` (the hypervisor host for the
memory figures, the host the URI names — ``localhost`` for a local one — for the sweep health),
plus ``code`` on the error counter.

The default port, :data:`DEFAULT_PORT` (10177), is outside the block 9100–9999 that
Prometheus' port allocation list has filled (9177 there is the libvirt exporter's, which runs
on the same KVM hosts). Listening beyond loopback is allowed, with a warning.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from hvballoon._uri import parse_uri
from hvballoon.errors import BackendNotInstalledError, InvalidRequestError
from hvballoon.fleet import Fleet, HostResult, backend_of

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = [
    "COUNTER_FIELDS",
    "DEFAULT_PORT",
    "GAUGE_FIELDS",
    "HOST_FIELDS",
    "Exporter",
    "MetricsEndpoint",
    "exposure_warning",
    "parse_listen",
    "sweep_metrics",
]

log = logging.getLogger("hvballoon.exporter")

#: The exporter's default port: free in Prometheus' default port allocation list (see docs).
DEFAULT_PORT = 10177

INSTALL_HINT = "pip install 'hvballoon[exporter]'  (or: pip install prometheus-client)"

#: Cumulative MemoryStats figures, exported as counters ``hvballoon_vm_<field>_total``.
COUNTER_FIELDS: tuple[str, ...] = ("swap_in_bytes", "swap_out_bytes", "major_faults")


def _gauge_fields() -> tuple[str, ...]:
    from hvballoon.models import MemoryStats

    return tuple(
        name
        for name in (*MemoryStats.model_fields, *MemoryStats.model_computed_fields)
        if (name.endswith("_bytes") or name.endswith("_seconds") or name == "pressure_ratio")
        and name not in COUNTER_FIELDS
    )


#: MemoryStats figures exported as gauges ``hvballoon_vm_<field>``.
GAUGE_FIELDS: tuple[str, ...] = _gauge_fields()


def _host_fields() -> tuple[str, ...]:
    from hvballoon.models import HostStats

    names = [*HostStats.model_fields, *HostStats.model_computed_fields]
    return tuple(n for n in names if n.endswith("_bytes") or n in ("vms_running", "overcommit_ratio"))


#: HostStats figures exported as gauges ``hvballoon_host_<field>``, one series per host.
HOST_FIELDS: tuple[str, ...] = _host_fields()

_VM_LABELS = ["uri", "backend", "host", "vm", "vm_id"]
#: Every ``hvballoon_host_*`` series has these labels (the error counter adds ``code``).
_HOST_LABELS = ["uri", "backend", "host"]


def _require_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"the exporter needs the prometheus-client package; run: {INSTALL_HINT}",
            details={"install": INSTALL_HINT, "missing": "prometheus_client"},
        ) from exc


def parse_listen(value: str, *, what: str = "--listen") -> tuple[str, int]:
    """``'127.0.0.1:10177'``, ``'[::1]:10177'``, ``':10177'`` (loopback) or ``'10177'`` → (address, port).

    >>> parse_listen("127.0.0.1:10177"), parse_listen("[::1]:0"), parse_listen("10177")
    (('127.0.0.1', 10177), ('::1', 0), ('127.0.0.1', 10177))
    """
    text = value.strip()
    host, port_text = "127.0.0.1", text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise InvalidRequestError(f"invalid {what} {value!r}: expected [ADDRESS]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        host = host or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidRequestError(
            f"invalid {what} {value!r}: expected ADDRESS:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}"
        ) from None
    if not 0 <= port <= 65535:
        raise InvalidRequestError(f"invalid {what} {value!r}: the port must be 0-65535")
    return host, port


def exposure_warning(address: str) -> str | None:
    """The warning for serving on ``address`` (an IP), or ``None`` when it is loopback.

    >>> exposure_warning("127.0.0.1") is None, exposure_warning("::1") is None
    (True, True)
    >>> exposure_warning("0.0.0.0").split(":")[0]
    'the exporter listens on 0.0.0.0, beyond loopback'
    """
    try:
        if ipaddress.ip_address(address.split("%", 1)[0]).is_loopback:
            return None
    except ValueError:
        pass  # not an IP: a name may resolve anywhere
    return (
        f"the exporter listens on {address}, beyond loopback: whoever reaches it reads every VM's "
        "names and memory figures, without TLS or authentication; put a reverse proxy (TLS, "
        "authentication) or a firewall in front of it"
    )


class MetricsEndpoint:
    """A Prometheus registry served on ``/metrics`` in a daemon thread: what the exporter and
    the auto-balloon controller's ``--metrics-address`` share. A subclass fills
    :attr:`registry` with its collectors."""

    def __init__(self) -> None:
        _require_prometheus()
        from prometheus_client.registry import CollectorRegistry

        try:
            # a collector that sweeps cannot describe its families up front (that would sweep
            # at start): without this, a scrape filtered with ``?name[]=…`` answered nothing
            self.registry: CollectorRegistry = CollectorRegistry(support_collectors_without_names=True)
        except TypeError:  # a prometheus-client without it: unfiltered scrapes still work
            self.registry = CollectorRegistry()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        #: the warning :meth:`start` logged for a listener beyond loopback, if any
        self.exposure_warning: str | None = None

    def render(self) -> bytes:
        """The exposition text (Prometheus text format 0.0.4) of one scrape."""
        from hvballoon._exposition import text

        return text(self.registry)

    def start(self, address: str = "127.0.0.1", port: int = DEFAULT_PORT) -> tuple[str, int]:
        """Serve ``/metrics`` on ``address:port`` (port 0: any free one) in a daemon thread;
        returns the bound address.

        Binding beyond loopback (``0.0.0.0``, a routable address) is allowed, and logged as a
        warning (:attr:`exposure_warning`): the metrics name every VM and travel without TLS.
        """
        if self._server is not None:
            raise InvalidRequestError("the metrics are already being served")
        try:
            server = _make_server(address, port, self.registry, self.render)
        except OSError as exc:
            raise InvalidRequestError(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from None
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _STOP_POLL_SECONDS},
            name="hvballoon-metrics",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        bound = server.server_address
        self.exposure_warning = exposure_warning(str(bound[0]))
        if self.exposure_warning is not None:
            log.warning("%s", self.exposure_warning)
        return str(bound[0]), int(bound[1])

    def stop(self) -> None:
        """Stop serving (safe to call twice, or without :meth:`start`); returns within about
        :data:`_STOP_POLL_SECONDS` plus a scrape in flight."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


#: How often the serving thread looks for a stop request: :meth:`MetricsEndpoint.stop` (a
#: SIGTERM, the end of a test) waits at most this long, where ``socketserver``'s default of 0.5 s
#: made every stop cost half a second.
_STOP_POLL_SECONDS = 0.05


def _make_server(
    address: str, port: int, registry: CollectorRegistry, render: Callable[[], bytes]
) -> WSGIServer:
    """A threading WSGI server of ``registry`` bound to ``address:port`` (IPv4 or IPv6, by the
    address), not yet serving. prometheus_client's ``start_http_server`` builds the same, but
    serves it with the default 0.5 s poll of its stop flag."""
    import socket
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from hvballoon._exposition import scrape_app

    family, _, _, _, sockaddr = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingMixIn, WSGIServer):
        address_family = family
        daemon_threads = True  # a scrape in flight never holds the process at exit

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not logged: Prometheus scrapes every few seconds."""

    return make_server(
        str(sockaddr[0]),
        port,
        _routed(scrape_app(registry, render)),
        server_class=Server,
        handler_class=QuietHandler,
    )


#: The paths that answer a scrape; ``/`` too, as prometheus-client's own server does.
METRICS_PATHS = frozenset({"/metrics", "/"})

#: The methods a scrape path answers: ``HEAD`` (load balancers' and health checks' probe) is
#: answered like ``GET`` without the body; ``OPTIONS`` names them.
ALLOWED_METHODS = "GET, HEAD, OPTIONS"


def _routed(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app`` (the scrape app, which answers every path with a scrape and only ``GET``)
    on :data:`METRICS_PATHS` only: another path is a 404 naming ``/metrics``, so a mistyped
    ``metrics_path`` fails visibly instead of quietly sweeping every hypervisor. ``HEAD`` is
    answered as ``GET`` is (the same status and headers, from the same cached sweep), without
    the body; any method but ``GET``, ``HEAD`` and ``OPTIONS`` is a 405 with ``Allow``."""

    def plain(start_response: Callable[..., Any], status: str, text: str, head: bool, *extra: Any) -> Any:
        body = text.encode()
        start_response(
            status,
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *extra],
        )
        return [] if head else [body]

    def routed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        head = method == "HEAD"
        if environ.get("PATH_INFO", "") not in METRICS_PATHS:
            return plain(
                start_response,
                "404 Not Found",
                "# HTTP 404 Not Found: the metrics are served on /metrics\n",
                head,
            )
        if method == "OPTIONS":
            return plain(start_response, "200 OK", "", False, ("Allow", ALLOWED_METHODS))
        if method not in ("GET", "HEAD"):
            return plain(
                start_response,
                "405 Method Not Allowed",
                f"# HTTP 405 Method Not Allowed: use {ALLOWED_METHODS}\n",
                False,
                ("Allow", ALLOWED_METHODS),
            )
        if not head:
            return app(environ, start_response)
        said: list[Any] = []
        answer = app({**environ, "REQUEST_METHOD": "GET"}, lambda *a: said.append(a))
        try:
            length = sum(len(chunk) for chunk in answer)  # what a GET sends, measured, dropped
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
        status, headers = said[0][0], list(said[0][1])
        if not any(k.lower() == "content-length" for k, _ in headers):
            headers.append(("Content-Length", str(length)))
        start_response(status, headers)
        return []

    return routed


class _Served(NamedTuple):
    """One sweep as a scrape serves it: its results, when it started (Unix time), how long it
    took, its number, and each URI's last success and error counts as they stood then."""

    results: list[HostResult]
    swept_at: float
    seconds: float
    number: int
    last_success: dict[str, float]
    errors: dict[tuple[str, str], int]


class Exporter(MetricsEndpoint):
    """The exporter: a :class:`~hvballoon.fleet.Fleet`, a sweep cache and a Prometheus registry.

    ``interval`` (seconds) is the age below which a scrape is answered from the last sweep;
    0 sweeps on every scrape. The fleet is made to read each URI's host figures too
    (``fleet.host_stats``), summing the sweep it just read. :meth:`start` serves HTTP in a
    background thread; :meth:`render` returns the exposition text without a server (handy in
    tests and cron jobs).
    """

    def __init__(
        self, fleet: Fleet, *, interval: float = 15.0, clock: Callable[[], float] = time.time
    ) -> None:
        _require_prometheus()
        if interval < 0:
            raise InvalidRequestError("the exporter's interval cannot be negative")
        super().__init__()
        self.fleet = fleet
        fleet.host_stats = True
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
        self._rendered: tuple[int, bytes] | None = None  # (the sweep, its text)
        self._pinned = threading.local()  # .sweep: the sweep the scrape being written serves
        self.registry.register(_Collector(self))

    def render(self) -> bytes:
        """The exposition text of one scrape, written once per sweep: every figure in it is the
        sweep's (or counts sweeps), so the scrapes a sweep serves share its text (at 10,000 VMs
        writing it costs seconds). One scrape sweeps at most once, however long the sweep took."""
        if self.interval <= 0:
            return super().render()  # a sweep per scrape: nothing to share
        served = self._current()  # sweeps first if the last sweep is older than the interval
        rendered = self._rendered
        if rendered is not None and rendered[0] == served.number:
            return rendered[1]
        # the families are written from this very sweep: asking again once it is written could
        # find it older than the interval (a sweep longer than the interval) and sweep twice
        self._pinned.sweep = served
        try:
            text = super().render()
        finally:
            self._pinned.sweep = None
        self._rendered = (served.number, text)
        return text

    # -- sweeping -----------------------------------------------------------------------

    def current(self) -> tuple[list[HostResult], float, float]:
        """The results to serve (sweeping first if the cache is older than ``interval``).

        Returns (results, wall-clock start of their sweep, its duration in seconds).
        """
        served = self._current()
        return served.results, served.swept_at, served.seconds

    def _current(self) -> _Served:
        """What a scrape serves: the last sweep (sweeping first if it is older than
        ``interval``) with the counts of that moment, copied under the lock, so that a scrape
        written while another one sweeps never reads them as they change."""
        with self._lock:
            fresh = (
                self._swept_mono is not None
                and self.interval > 0
                and time.monotonic() - self._swept_mono < self.interval
            )
            if not fresh:
                self._sweep()
            assert self._swept_at is not None
            return _Served(
                list(self._results),
                self._swept_at,
                self._sweep_seconds,
                self.sweeps,
                dict(self._last_success),
                dict(self._errors),
            )

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
            for err in (r.error, r.host_error):
                if err is not None:
                    key = (r.uri, err.code)
                    self._errors[key] = self._errors.get(key, 0) + 1

    # -- serving ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving and close the hosts' sessions."""
        super().stop()
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

        served = getattr(self._pinned, "sweep", None) or self._current()
        info = InfoMetricFamily("hvballoon_exporter", "The hvballoon exporter's version.")
        info.add_metric([], {"version": __version__})
        yield info
        yield from sweep_metrics(served.results, last_success=served.last_success, errors=served.errors)
        yield GaugeMetricFamily(
            "hvballoon_sweep_duration_seconds",
            "How long the last sweep of all hosts took.",
            value=served.seconds,
        )
        yield GaugeMetricFamily(
            "hvballoon_sweep_timestamp_seconds",
            "When the sweep being served started (Unix time); older than the interval never.",
            value=served.swept_at,
        )
        yield CounterMetricFamily(
            "hvballoon_sweeps", "Sweeps since the exporter started.", value=float(served.number)
        )


def sweep_metrics(
    results: list[HostResult],
    *,
    last_success: dict[str, float],
    errors: dict[tuple[str, str], int],
) -> Iterator[Metric]:
    """The VM, host and sweep-health families of one sweep's ``results`` (see the module
    docstring); ``last_success`` is each URI's last good sweep (Unix time) and ``errors`` the
    failed sweeps so far by (URI, error code). The exporter serves them, and so does the
    auto-balloon controller's ``--metrics-address`` from the sweep of its last round."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
        "hvballoon_host_up", "1 when the host answered the last sweep, else 0.", labels=_HOST_LABELS
    )
    host_seconds = GaugeMetricFamily(
        "hvballoon_host_sweep_duration_seconds",
        "How long the host took in the last sweep (its timeout when it did not answer).",
        labels=_HOST_LABELS,
    )
    vms = GaugeMetricFamily(
        "hvballoon_host_vms", "VMs the host reported in the last sweep.", labels=_HOST_LABELS
    )
    error_family = CounterMetricFamily(
        "hvballoon_host_errors",
        "Failed sweeps of the host (or of its host figures) since the exporter started, by "
        "hvballoon error code.",
        labels=[*_HOST_LABELS, "code"],
    )
    last_ok = GaugeMetricFamily(
        "hvballoon_host_last_success_timestamp_seconds",
        "When the host last answered a sweep (Unix time).",
        labels=_HOST_LABELS,
    )
    host_gauges = {
        f: GaugeMetricFamily(
            f"hvballoon_host_{f}", _HOST_HELP.get(f, f.replace("_", " ")), labels=_HOST_LABELS
        )
        for f in HOST_FIELDS
    }
    backends: dict[str, str] = {}
    for r in results:
        backend = r.backend or "unknown"
        backends[r.uri] = backend
        health = [r.uri, backend, _endpoint(r.uri)]
        up.add_metric(health, 1.0 if r.ok else 0.0)
        host_seconds.add_metric(health, r.elapsed_seconds)
        vms.add_metric(health, float(len(r.stats)))
        if r.uri in last_success:
            last_ok.add_metric(health, last_success[r.uri])
        for h in r.hosts:
            for f, family in host_gauges.items():
                value = getattr(h, f)
                if value is not None:
                    family.add_metric([r.uri, backend, _label(h.host)], float(value))
        fallback_host = _uri_host(r.uri)
        for s in r.stats:
            labels = [
                r.uri,
                r.backend or s.vm.backend,
                _label(s.vm.host or fallback_host),
                _label(s.vm.name),
                _label(s.vm.id),
            ]
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
    for (uri, code), count in sorted(errors.items()):
        backend = backends.get(uri) or backend_of(uri) or "unknown"
        error_family.add_metric([uri, backend, _endpoint(uri), code], float(count))
    yield from gauges.values()
    yield from counters.values()
    yield stale
    yield vm_info
    yield from host_gauges.values()
    yield up
    yield host_seconds
    yield vms
    yield error_family
    yield last_ok


class _Collector:
    """The registry's view of an :class:`Exporter` (a custom collector: one sweep per scrape)."""

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def describe(self) -> list[Any]:
        # no sweep when registering: the families are only known once the hosts answered
        return []

    def collect(self) -> Iterator[Metric]:
        return self._exporter.metrics()


#: An unpaired UTF-16 surrogate: a str can hold one (Hyper-V's names are UTF-16, read through
#: PowerShell's ``\\uXXXX`` escapes), UTF-8 cannot.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _label(value: str) -> str:
    """``value`` (a name a hypervisor gave) as a label value: an unpaired surrogate in it, which
    no UTF-8 text can hold and which failed every scrape of every host, is shown as U+FFFD."""
    return _SURROGATE_RE.sub("\ufffd", value)


def _uri_host(uri: str) -> str:
    """The host ``uri`` (redacted) names, also when the URI is refused (a password written in
    it): its hypervisor, never ``localhost`` for a remote one that could not be asked."""
    try:
        host = parse_uri(uri).host
    except Exception:
        host = _named_host(uri)
    return host or ""


def _named_host(uri: str) -> str | None:
    """The host a URI the SDK refuses names, read leniently (``None`` when none can be read)."""
    try:
        return urlsplit(uri).hostname
    except ValueError:
        return None


def _endpoint(uri: str) -> str:
    """The ``host`` label of a URI's sweep-health series: the host it names, else localhost."""
    return _uri_host(uri) or "localhost"


_HOST_HELP: dict[str, str] = {
    "physical_bytes": "Physical memory of the hypervisor host.",
    "free_bytes": "Memory the host can hand out without reclaiming any from its VMs.",
    "used_bytes": "Physical memory in use on the host (physical - free).",
    "hypervisor_overhead_bytes": "Memory the hypervisor spends besides guest memory.",
    "swap_total_bytes": "The host's swap space.",
    "swap_used_bytes": "Memory the host has swapped out.",
    "shared_bytes": "Memory saved by page sharing (KSM, ESXi page sharing).",
    "ballooned_bytes": "Held by the balloon drivers of the host's running VMs.",
    "vm_configured_bytes": "Memory promised to the host's running VMs (their configured memory).",
    "vm_current_bytes": "Memory the host's running VMs have now.",
    "vms_running": "Running VMs on the host.",
    "overcommit_ratio": "Configured memory of the running VMs / physical memory; above 1 the host is overcommitted.",
}

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
    "used_bytes": "What the guest needs: guest used, else demand (the figure to plan with everywhere).",
}
