"""The Prometheus exporter, scraped over HTTP on loopback against the fake."""

from __future__ import annotations

import http.client
import inspect
import logging
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import hvballoon  # noqa: E402
from hvballoon import fake  # noqa: E402
from hvballoon.exporter import (  # noqa: E402
    COUNTER_FIELDS,
    DEFAULT_PORT,
    GAUGE_FIELDS,
    HOST_FIELDS,
    Exporter,
    exposure_warning,
    parse_listen,
)
from hvballoon.fleet import Fleet  # noqa: E402
from tests.support.cli import hvballoon_cmd, invoke  # noqa: E402

Samples = dict[str, list[Any]]
#: The seed world in the three flavours.
FAKE_URIS = ["fake://seed", "fake://seed?flavor=esxi", "fake://seed?flavor=hyperv"]


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
    _, port = serve(FAKE_URIS)
    samples = scrape(port)
    for uri in FAKE_URIS:
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


def test_a_uri_listed_twice_gives_each_series_once() -> None:
    # Prometheus refuses a scrape with a series twice ("duplicate sample for timestamp")
    exporter = Exporter(Fleet(["fake://seed", "fake://seed?flavor=esxi", "fake://seed"]), interval=0)
    try:
        text = exporter.render().decode()
    finally:
        exporter.stop()
    series = [line.rpartition(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert len(series) == len(set(series))
    assert [s for s in series if s.startswith("hvballoon_host_up{")] == [
        'hvballoon_host_up{backend="fake",host="seed",uri="fake://seed"}',
        'hvballoon_host_up{backend="fake",host="seed",uri="fake://seed?flavor=esxi"}',
    ]


def test_a_uri_refused_for_its_password_keeps_its_backend_and_host() -> None:
    # an inventory line with a password written in it: never connected, reported down under
    # the backend and host it names (not unknown@localhost), and the password never shown
    uris = ["fake://admin:Pw9-never@seed", "fake://seed?flavor=esxi&password=Pw9-never"]
    exporter = Exporter(Fleet(uris), interval=0)
    try:
        text = exporter.render().decode()
    finally:
        exporter.stop()
    assert "Pw9-never" not in text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    for uri in ("fake://admin:***@seed", "fake://seed?flavor=esxi&password=***"):
        assert one(samples, "hvballoon_host_up", uri=uri, backend="fake", host="seed") == 0.0
        assert one(samples, "hvballoon_host_errors_total", uri=uri, backend="fake", host="seed") == 1.0
        assert one(samples, "hvballoon_host_errors_total", uri=uri, code="invalid_uri") == 1.0


def test_a_vm_name_no_utf8_can_hold_does_not_fail_the_scrape(serve: Any) -> None:
    # Hyper-V's names are UTF-16, read through PowerShell's \\uXXXX escapes: an unpaired
    # surrogate reaches Python as it is, and UTF-8 cannot hold it; it failed every scrape
    with fake.world("seed", flavor="hyperv") as world:
        web01 = next(g.id for g in world.guests.values() if g.name == "web01")
        world.rename(web01, "web\udc80 01")
        _, port = serve(["fake://seed"], interval=0)
        for query in ("", "?name[]=hvballoon_vm_info"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=30) as resp:
                assert resp.status == 200
                text = resp.read().decode("utf-8")
            names = {
                s.labels["vm"]
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name == "hvballoon_vm_info"
            }
            assert "web\ufffd 01" in names and "web02" in names and len(names) == 10


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
    exporter, port = serve(["fake://seed", hang, down], interval=0, host_timeout=0.5)
    started = time.monotonic()
    samples = scrape(port)
    assert time.monotonic() - started < 8, "a hung host delayed the scrape beyond its timeout"
    assert one(samples, "hvballoon_host_up", uri="fake://seed") == 1.0
    assert one(samples, "hvballoon_host_up", uri=hang) == 0.0
    assert one(samples, "hvballoon_host_up", uri=down) == 0.0
    # a host that never answered still names its backend: the registry's, by the URI's scheme
    for uri in (hang, down):
        for name in ("hvballoon_host_up", "hvballoon_host_sweep_duration_seconds", "hvballoon_host_vms"):
            assert one(samples, name, uri=uri, backend="slowtest", host=uri.split("//")[1].split("?")[0]) >= 0
    assert one(samples, "hvballoon_host_errors_total", uri=hang, backend="slowtest", code="timeout") == 1.0
    assert one(samples, "hvballoon_host_errors_total", uri=hang, code="timeout") == 1.0
    assert one(samples, "hvballoon_host_errors_total", uri=down, code="connection_failed") == 1.0
    assert one(samples, "hvballoon_host_sweep_duration_seconds", uri=hang) == pytest.approx(0.5)
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


@pytest.mark.usefixtures("slow_backend")
def test_a_sweep_longer_than_the_interval_is_made_once_per_scrape(serve: Any) -> None:
    # the hung host makes the sweep (0.5 s) longer than the interval (0.2 s): the sweep a scrape
    # made is older than the interval by the time its text is written, and is still the one served
    hang = "slowtest://hang3?sleep=20"
    exporter, port = serve(["fake://seed", hang], interval=0.2, host_timeout=0.5)
    samples = scrape(port)
    assert exporter.sweeps == 1
    assert one(samples, "hvballoon_sweeps_total") == 1.0
    assert one(samples, "hvballoon_host_errors_total", uri=hang, code="timeout") == 1.0
    assert len(samples["hvballoon_vm_current_bytes"]) == 10
    samples = scrape(port)
    assert exporter.sweeps == 2
    assert one(samples, "hvballoon_sweeps_total") == 2.0
    assert one(samples, "hvballoon_host_errors_total", uri=hang, code="timeout") == 2.0


def _get(port: int, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


def test_only_the_metrics_path_answers_a_scrape(serve: Any) -> None:
    exporter, port = serve(["fake://seed"], interval=0)
    for path in ("/metrics", "/", "/metrics?x=1"):
        status, ctype, body = _get(port, path)
        assert status == 200 and ctype.startswith("text/plain") and b"hvballoon_host_up{" in body, path
    sweeps = exporter.sweeps
    for path in ("/metricz", "/favicon.ico", "/metrics/extra", "/" + "a" * 4000):
        status, _, body = _get(port, path)
        assert status == 404 and b"/metrics" in body and b"hvballoon_" not in body, path
    status, _, body = _get(port, "/nope", "HEAD")
    assert status == 404 and body == b""
    assert exporter.sweeps == sweeps  # a wrong path never sweeps the hypervisors
    status, _, _ = _get(port, "/metrics", "POST")
    assert status == 405


def _ask(port: int, path: str, method: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def test_head_is_answered_like_get_without_a_body_from_the_cached_sweep(serve: Any) -> None:
    exporter, port = serve(["fake://seed"], interval=60)
    for path in ("/metrics", "/"):
        head = _ask(port, path, "HEAD")
        assert head.status == 200, path
        assert (head.getheader("Content-Type") or "").startswith("text/plain")
        status, _, body = _get(port, path)
        assert status == 200 and int(head.getheader("Content-Length") or -1) == len(body) > 0
    assert exporter.sweeps == 1  # HEAD and GET were answered from one sweep
    fresh, fresh_port = serve(["fake://seed"], interval=0)
    assert _ask(fresh_port, "/metrics", "HEAD").status == 200 and fresh.sweeps == 1


def test_other_methods_are_405_naming_the_allowed_ones(serve: Any) -> None:
    exporter, port = serve(["fake://seed"], interval=0)
    for method in ("POST", "PUT", "DELETE", "PATCH", "TRACE"):
        resp = _ask(port, "/metrics", method)
        assert resp.status == 405, method
        assert {m.strip() for m in (resp.getheader("Allow") or "").split(",")} == {"GET", "HEAD", "OPTIONS"}
    options = _ask(port, "/metrics", "OPTIONS")
    assert options.status == 200 and "HEAD" in (options.getheader("Allow") or "")
    assert exporter.sweeps == 0  # none of these swept the hypervisors


def test_a_scrape_filtered_by_name_answers_those_families(serve: Any) -> None:
    _, port = serve(["fake://seed"])
    query = "/metrics?name[]=hvballoon_host_up&name[]=hvballoon_vm_current_bytes"
    status, _, body = _get(port, query)
    assert status == 200
    names = {s.name for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert names == {"hvballoon_host_up", "hvballoon_vm_current_bytes"}


def test_parse_listen() -> None:
    assert parse_listen(":10177") == ("127.0.0.1", 10177)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    for bad in ("host:port", "1:70000", "[::1]10177", "", "-1"):
        with pytest.raises(hvballoon.InvalidRequestError):
            parse_listen(bad)


@contextmanager
def exporter_process(
    env: dict[str, str], *args: str
) -> Iterator[tuple[subprocess.Popen[str], list[str], int]]:
    """``hvballoon exporter fake://seed ARGS…`` in a subprocess: (process, its first stderr lines
    up to the "serving" one, the port); killed on exit if still running, its pipe closed."""
    with subprocess.Popen(
        hvballoon_cmd("exporter", "fake://seed", *args),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stderr is not None
            lines: list[str] = []
            while not lines or "serving" not in lines[-1]:
                line = proc.stderr.readline()
                assert line, lines
                lines.append(line)
            m = re.search(r"http://[\d.]+:(\d+)/metrics", lines[-1])
            assert m, lines
            yield proc, lines, int(m.group(1))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_exporter_command_serves_until_terminated(plugin_env: dict[str, str]) -> None:
    with exporter_process(plugin_env, "--listen", "127.0.0.1:0", "--interval", "0") as (proc, lines, port):
        assert lines[-1].startswith("serving http://127.0.0.1:")
        samples = scrape(port)
        assert one(samples, "hvballoon_vm_configured_bytes", vm="jvm01") == 16 * 2**30
        # a KVM target no session of the exporter set is unknown (libvirt keeps none): absent
        assert not [s for s in samples.get("hvballoon_vm_target_bytes", []) if s.labels["vm"] == "jvm01"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None and "beyond loopback" not in "".join(lines) + proc.stderr.read()


def test_host_figures_are_gauges_per_hypervisor_host(serve: Any) -> None:
    _, port = serve(FAKE_URIS)
    samples = scrape(port)
    for uri in FAKE_URIS:
        with hvballoon.connect(uri) as hv:
            (host,) = hv.get_host_stats()
        labels = {"uri": uri, "backend": "fake", "host": "host01"}
        for field in HOST_FIELDS:
            value = getattr(host, field)
            name = f"hvballoon_host_{field}"
            if value is None:  # unknown is absent, never 0
                assert not [s for s in samples.get(name, []) if s.labels["uri"] == uri], (name, uri)
            elif field not in ("free_bytes", "used_bytes"):  # the world moved between the reads
                assert one(samples, name, **labels) == pytest.approx(float(value)), (name, uri)
        assert one(samples, "hvballoon_host_physical_bytes", **labels) == 120 * 2**30
        assert one(samples, "hvballoon_host_vm_configured_bytes", **labels) == 160 * 2**30
        assert one(samples, "hvballoon_host_overcommit_ratio", **labels) == 1.3333
        assert one(samples, "hvballoon_host_vms_running", **labels) == 10
    assert not [s for s in samples["hvballoon_host_shared_bytes"] if "hyperv" in s.labels["uri"]]
    # base units in the names: bytes, a unitless ratio and a count
    assert all(f.endswith("_bytes") or f in ("vms_running", "overcommit_ratio") for f in HOST_FIELDS)


@pytest.mark.usefixtures("slow_backend")
def test_every_host_series_has_the_same_labels(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from hvballoon.errors import PermissionDeniedError
    from hvballoon.fake.backend import FakeBackend

    real = FakeBackend.get_host_stats

    def refuse_on_esxi(self: FakeBackend, vm_stats: Any = None) -> Any:
        if self.flavor == "esxi":
            raise PermissionDeniedError("the account may not read the host")
        return real(self, vm_stats)

    monkeypatch.setattr(FakeBackend, "get_host_stats", refuse_on_esxi)
    uris = ["fake://seed", "fake://seed?flavor=esxi", "slowtest://gone?fail=connection_failed"]
    _, port = serve(uris, interval=0)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    label_sets = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("hvballoon_host_"):
            for sample in family.samples:
                label_sets.setdefault(sample.name, set()).add(frozenset(sample.labels))
    assert "hvballoon_host_physical_bytes" in label_sets and "hvballoon_host_up" in label_sets
    for name, sets in label_sets.items():
        expected = {"uri", "backend", "host"} | ({"code"} if name == "hvballoon_host_errors_total" else set())
        assert sets == {frozenset(expected)}, name
    samples = scrape(port)
    esxi = "fake://seed?flavor=esxi"
    assert one(samples, "hvballoon_host_up", uri=esxi) == 1.0  # the VM figures stand
    assert len([s for s in samples["hvballoon_vm_current_bytes"] if s.labels["uri"] == esxi]) == 10
    assert one(samples, "hvballoon_host_errors_total", uri=esxi, code="permission_denied") >= 1.0
    assert not [s for s in samples["hvballoon_host_physical_bytes"] if s.labels["uri"] == esxi]


def test_default_port_is_not_the_libvirt_exporters() -> None:
    assert DEFAULT_PORT == 10177 != 9177
    assert inspect.signature(Exporter.start).parameters["port"].default == DEFAULT_PORT
    out = invoke("exporter", "--help").stdout
    assert "127.0.0.1:10177" in out and "9177" not in out


def test_binding_beyond_loopback_is_warned_about_not_refused(caplog: pytest.LogCaptureFixture) -> None:
    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert exposure_warning("127.3.4.5") is None
    for address in ("0.0.0.0", "::", "192.0.2.7", "my-host.example"):
        message = exposure_warning(address)
        assert message is not None and address in message and "beyond loopback" in message
    with caplog.at_level(logging.WARNING, logger="hvballoon.exporter"):
        loopback = Exporter(Fleet(["fake://seed"], host_timeout=10), interval=60)
        try:
            loopback.start("127.0.0.1", 0)
            assert loopback.exposure_warning is None
        finally:
            loopback.stop()
        assert not caplog.records
        wide = Exporter(Fleet(["fake://seed"], host_timeout=10), interval=60)
        try:
            _, port = wide.start("0.0.0.0", 0)
            assert wide.exposure_warning is not None
            assert one(scrape(port), "hvballoon_host_up", uri="fake://seed") == 1.0  # still serving
        finally:
            wide.stop()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "0.0.0.0" in record.getMessage()


@pytest.mark.slow
def test_exporter_command_warns_once_on_stderr_beyond_loopback(plugin_env: dict[str, str]) -> None:
    with exporter_process(plugin_env, "--listen", "0.0.0.0:0") as (proc, lines, port):
        assert lines[-1].startswith("serving http://0.0.0.0:")
        assert one(scrape(port), "hvballoon_host_up", uri="fake://seed") == 1.0  # served all the same
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        text = "".join(lines) + proc.stderr.read()
    assert text.count("beyond loopback") == 1, text
