"""The exposition text a scrape is answered with: prometheus-client's text format, byte for byte,
written once per sweep (the render cost of 10,000 VMs is in benchmarks/exporter_render.py)."""

from __future__ import annotations

import gzip
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import generate_latest  # noqa: E402
from prometheus_client.core import (  # noqa: E402
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import CollectorRegistry  # noqa: E402

from hvballoon._exposition import CONTENT_TYPE, text  # noqa: E402
from hvballoon.exporter import Exporter  # noqa: E402
from hvballoon.fleet import Fleet  # noqa: E402

ODD_NAMES = """
name: odd
host: {physical: 64GiB}
vms:
  - {name: 'quote"d', memory: 4GiB, used: 1GiB}
  - {name: 'back\\\\slash', memory: 4GiB, used: 1GiB}
  - {name: "new\\nline", memory: 4GiB, used: 1GiB}
  - {name: "ünï cødé 虚拟机", memory: 4GiB, used: 1GiB, power_state: stopped}
  - {name: plain, memory: 4GiB, used: 1GiB}
"""


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    path = tmp_path / "odd.yaml"
    path.write_text(ODD_NAMES, encoding="utf-8")
    uris = [f"fake://{path}", "fake://seed?flavor=esxi", "fake://seed?flavor=hyperv", "nosuch://host"]
    with Exporter(Fleet(uris, host_timeout=10), interval=60) as ex:
        yield ex


def test_the_text_is_prometheus_clients_byte_for_byte(exporter: Exporter) -> None:
    ours = exporter.render()  # sweeps
    theirs = generate_latest(exporter.registry)  # the same sweep, younger than the interval
    assert exporter.sweeps == 1
    assert ours == theirs
    assert b'vm="quote\\"d"' in ours and b'vm="new\\nline"' in ours and "ünï".encode() in ours


class _Collector:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families

    def describe(self) -> list[Any]:
        return []


def test_families_of_other_kinds_are_written_by_prometheus_client() -> None:
    """A histogram (the controller's round durations), a counter with its creation time, a
    sample with a timestamp, a label outside the classic character set: written as
    prometheus-client writes them, beside the families written here."""
    hist = HistogramMetricFamily("round_seconds", "Rounds.", labels=["policy"])
    hist.add_metric(["hvballoon"], buckets=[("0.1", 3.0), ("+Inf", 5.0)], sum_value=1.25)
    created = CounterMetricFamily("moves", "Moves.", labels=["vm"], created=1700000000.0)
    created.add_metric(["a"], 4.0, created=1700000000.0)
    stamped = GaugeMetricFamily("stamped", "With a timestamp.", labels=["vm"])
    stamped.add_metric(["a"], 1.0, timestamp=1700000000.5)
    info = InfoMetricFamily("build", "Build.")
    info.add_metric([], {"version": "1.0"})
    plain = GaugeMetricFamily("big", "Sizes.\nIn bytes \\ exactly.", labels=["vm", "host"])
    for v in (0.0, -1.0, 5368709120.0, 1e-7, float("inf"), float("nan"), 1234567.0, 0.25):
        plain.add_metric([f"vm{v}", "h"], v)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector([hist, created, stamped, info, plain]))
    assert text(registry) == generate_latest(registry)


def test_scrapes_between_sweeps_share_one_text(exporter: Exporter) -> None:
    first = exporter.render()
    assert exporter.render() is first and exporter.sweeps == 1


def test_a_sweep_per_scrape_sweeps_once_per_scrape() -> None:
    with Exporter(Fleet(["fake://seed"]), interval=0) as ex:
        ex.render()
        ex.render()
        assert ex.sweeps == 2


def test_a_scrape_is_gzipped_when_the_client_accepts_it(exporter: Exporter) -> None:
    _, port = exporter.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        assert resp.headers.get("Content-Encoding") is None
        plain = resp.read()
    ask = urllib.request.Request(url, headers={"Accept-Encoding": "gzip, deflate"})
    with urllib.request.urlopen(ask, timeout=30) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(resp.read()) == plain
    assert exporter.sweeps == 1


def test_scrapes_of_one_sweep_get_the_same_gzipped_bytes(exporter: Exporter) -> None:
    # gzipped once per sweep, not once per scrape: a gzip written again would differ by its
    # header's time (a second later), and cost as much as the first (0.4 s at 10,000 VMs)
    _, port = exporter.start("127.0.0.1", 0)
    ask = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"})
    bodies = []
    for pause in (0.0, 1.1):
        time.sleep(pause)
        with urllib.request.urlopen(ask, timeout=30) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            bodies.append(resp.read())
    assert bodies[0] == bodies[1]
    assert gzip.decompress(bodies[0]) == exporter.render()
    assert exporter.sweeps == 1
