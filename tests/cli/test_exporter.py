"""The Prometheus exporter, scraped over HTTP on loopback against the fake."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import hvballoon  # noqa: E402
from hvballoon.exporter import COUNTER_FIELDS, GAUGE_FIELDS, Exporter, parse_listen  # noqa: E402
from hvballoon.fleet import Fleet  # noqa: E402
from tests.cli.conftest import hvballoon_cmd  # noqa: E402

Samples = dict[str, list[Any]]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def one(samples: Samples, name: str, **labels: str) -> float:
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return float(found[0])


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[Exporter] = []

    def _serve(
        uris: list[str], *, interval: float = 60.0, host_timeout: float = 10.0
    ) -> tuple[Exporter, int]:
        exporter = Exporter(Fleet(uris, host_timeout=host_timeout), interval=interval)
        started.append(exporter)
        _, port = exporter.start("127.0.0.1", 0)
        return exporter, port

    yield _serve
    for exporter in started:
        exporter.stop()


def test_every_known_figure_is_a_gauge_with_labels(serve: Any) -> None:
    uris = ["fake://seed", "fake://seed?flavor=esxi", "fake://seed?flavor=hyperv"]
    _, port = serve(uris)
    samples = scrape(port)
    for uri in uris:
        with hvballoon.connect(uri) as hv:
            expected = hv.get_stats()
        for st in expected:
            labels = {"uri": uri, "vm": st.vm.name, "vm_id": st.vm.id, "backend": "fake", "host": "host01"}
            for field in GAUGE_FIELDS:
                value = getattr(st, field)
                name = f"hvballoon_vm_{field}"
                if value is None:  # unknown is absent, never 0
                    assert not [s for s in samples.get(name, []) if s.labels["uri"] == uri], (name, uri)
                elif field != "guest_report_age_seconds":
                    assert one(samples, name, **labels) == pytest.approx(float(value)), (name, uri)
            for field in COUNTER_FIELDS:
                value = getattr(st, field)
                if value is not None:
                    assert one(samples, f"hvballoon_vm_{field}_total", **labels) == float(value)
            assert one(samples, "hvballoon_vm_info", **labels, power_state="running") == 1.0
            assert one(samples, "hvballoon_vm_stats_stale", **labels) == float(st.stale)
        assert one(samples, "hvballoon_host_up", uri=uri, backend="fake") == 1.0
        assert one(samples, "hvballoon_host_vms", uri=uri) == 10.0
    # the seed's figures, by name: web01 has 16 GiB configured and uses 3 GiB on KVM
    assert one(samples, "hvballoon_vm_configured_bytes", uri="fake://seed", vm="web01") == 16 * 2**30
    assert one(samples, "hvballoon_vm_guest_used_bytes", uri="fake://seed", vm="web01") == 3 * 2**30
    assert one(samples, "hvballoon_vm_demand_bytes", uri="fake://seed?flavor=hyperv", vm="web01") > 0
    assert one(samples, "hvballoon_sweeps_total") == 1.0
    assert one(samples, "hvballoon_exporter_info", version=hvballoon.__version__) == 1.0


def test_scrapes_share_a_cached_sweep_younger_than_the_interval(serve: Any) -> None:
    exporter, port = serve(["fake://seed"], interval=60)
    first = scrape(port)
    threads = [threading.Thread(target=scrape, args=(port,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    again = scrape(port)
    assert exporter.sweeps == 1
    assert one(again, "hvballoon_sweep_timestamp_seconds") == one(first, "hvballoon_sweep_timestamp_seconds")
    fresh, fresh_port = serve(["fake://seed"], interval=0)
    scrape(fresh_port)
    assert one(scrape(fresh_port), "hvballoon_sweeps_total") == 2.0 and fresh.sweeps == 2


@pytest.mark.usefixtures("slow_backend")
def test_scrape_health_with_a_hung_and_a_failing_host(serve: Any) -> None:
    hang, down = "slowtest://hang2?sleep=20", "slowtest://down2?fail=connection_failed"
    exporter, port = serve(["fake://seed", hang, down], interval=0, host_timeout=1.0)
    started = time.monotonic()
    samples = scrape(port)
    assert time.monotonic() - started < 8, "a hung host delayed the scrape beyond its timeout"
    assert one(samples, "hvballoon_host_up", uri="fake://seed") == 1.0
    assert one(samples, "hvballoon_host_up", uri=hang) == 0.0
    assert one(samples, "hvballoon_host_up", uri=down) == 0.0
    assert one(samples, "hvballoon_host_errors_total", uri=hang, code="timeout") == 1.0
    assert one(samples, "hvballoon_host_errors_total", uri=down, code="connection_failed") == 1.0
    assert one(samples, "hvballoon_host_sweep_duration_seconds", uri=hang) == pytest.approx(1.0)
    assert one(samples, "hvballoon_host_last_success_timestamp_seconds", uri="fake://seed") > 1.7e9
    assert not [
        s
        for s in samples["hvballoon_host_last_success_timestamp_seconds"]
        if s.labels["uri"] != "fake://seed"
    ]
    assert len(samples["hvballoon_vm_current_bytes"]) == 10
    assert one(samples, "hvballoon_sweep_duration_seconds") < 8
    again = scrape(port)
    assert one(again, "hvballoon_host_errors_total", uri=down, code="connection_failed") == 2.0
    assert exporter.sweeps == 2


def test_parse_listen() -> None:
    assert parse_listen(":9177") == ("127.0.0.1", 9177)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    for bad in ("host:port", "1:70000", "[::1]9177"):
        with pytest.raises(hvballoon.InvalidRequestError):
            parse_listen(bad)


def test_exporter_command_serves_until_terminated(plugin_env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        hvballoon_cmd("exporter", "fake://seed", "--listen", "127.0.0.1:0", "--interval", "0"),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=plugin_env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert m, line
        samples = scrape(int(m.group(1)))
        assert one(samples, "hvballoon_vm_target_bytes", vm="jvm01") == 16 * 2**30
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
