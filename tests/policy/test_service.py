"""``hvballoon autoballoon`` as a service and ``hvballoon release``: as real processes where a
process is the point (SIGKILL mid-run then a release from the journal, SIGTERM with
--release-on-exit, SIGHUP reloading the settings, the metrics endpoint, scripted faults for 120
rounds), in this process otherwise (exit codes, JSON log lines, the checks, the releases)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon.fake.store import WorldStore
from hvballoon.outputs import output_schemas
from hvballoon.policy.journal import Journal, Move
from hvballoon.units import GiB
from tests.support.cli import Running, invoke, run, serving
from tests.support.policies import targets
from tests.support.schemas import Lazy, validate

SEED = Path(hvballoon.__file__).parent / "fake" / "scenarios" / "seed.yaml"
SCHEMAS = Lazy(output_schemas)
SECRET = "s3cr3t-never-printed"


@pytest.fixture(autouse=True)
def _state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default journals in the test's directory, never the user's (or root's) own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


def faulty_scenario(tmp_path: Path) -> Path:
    """The seed host whose hypervisor times out on half the sweeps and loses the connection on a
    third of the moves (each fault lasting the session's three attempts)."""
    text = SEED.read_text().replace("name: seed", "name: faulty", 1)
    text += (
        "faults:\n"
        "  - {op: get_stats, kind: timeout, probability: 0.5, burst: 3}\n"
        "  - {op: set_target, kind: connection_lost, probability: 0.34, burst: 3}\n"
    )
    path = tmp_path / "faulty.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_120_rounds_on_a_failing_hypervisor_exit_0_and_count_the_failed_rounds(tmp_path: Path) -> None:
    uri = f"fake://{faulty_scenario(tmp_path)}?state={tmp_path / 'w.db'}"
    r = run("autoballoon", uri, "--rounds", "120", "--json", "--journal", str(tmp_path / "j.db"), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    decisions = [json.loads(line) for line in r.stdout.splitlines()]
    summary = json.loads(r.stderr.splitlines()[-1])
    validate(summary, SCHEMAS["AutoballoonSummary"])
    assert summary["rounds"] == 120
    assert 35 <= summary["failed_rounds"] <= 85, summary  # about half
    assert summary["failed_by_code"] == {"timeout": summary["failed_rounds"]}
    errors = [d for d in decisions if d["action"] == "error"]
    assert errors and summary["moves_failed"] == len(errors)
    assert {d["error_code"] for d in errors} <= {"timeout", "connection_failed"}
    assert summary["targets_changed"] == sum(1 for d in decisions if d["applied"]) > 0
    # every round that worked decided for every VM; a failed one decided nothing
    assert len({d["round"] for d in decisions}) == 120 - summary["failed_rounds"]
    warned = r.stderr.splitlines()[:-1]  # the rest of stderr: 'warning:' lines
    assert all(line.startswith("warning: ") for line in warned)
    # an outage is said at its first failed round and each doubling of its length (1, 2, 4…
    # in a row, one error code throughout), and its end once
    decided = {d["round"] for d in decisions}
    runs, run_ = [], 0
    for n in range(120):
        if n in decided:
            runs, run_ = runs + ([run_] if run_ else []), 0
        else:
            run_ += 1
    said = [int(m) for m in re.findall(r" failed \((\d+) in a row\)", "\n".join(warned))]
    assert said == [k for length in [*runs, run_] for k in range(1, length + 1) if k & (k - 1) == 0]
    assert sum(1 for line in warned if "read the hypervisor again" in line) == len(runs)
    text = run("autoballoon", uri, "--rounds", "10", "--journal", str(tmp_path / "j.db"))
    assert text.returncode == 0
    assert re.search(
        r"^warning: round \d+ failed \(1 in a row\): the hypervisor did not answer", text.stderr, re.M
    )
    assert "autoballoon: 10 rounds, " in text.stderr


def test_every_round_failing_exits_with_the_failures_code(tmp_path: Path) -> None:
    path = tmp_path / "down.yaml"
    text = SEED.read_text().replace("name: seed", "name: down", 1)
    path.write_text(text + "faults:\n  - {op: get_stats, kind: timeout, rate: 1.0}\n")
    r = invoke("autoballoon", f"fake://{path}", "--rounds", "3")
    assert r.returncode == 5, r.stderr  # timeout
    assert "autoballoon: 3 rounds, 3 failed (timeout 3)" in r.stderr


@pytest.mark.slow
def test_sigkill_mid_run_then_release_restores_every_vm_it_lowered(
    tmp_path: Path, running: Callable[..., Running]
) -> None:
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    journal = tmp_path / "j.db"
    before = targets(uri)
    ctl = running("autoballoon", uri, "--journal", str(journal), "--json", "--max-changes", "3")
    # a few rounds in, some VMs lowered and others not yet (three moves per round)
    ctl.wait_for(lambda r: sum(1 for line in r.stdout if '"applied":true' in line) >= 5)
    ctl.kill()
    lowered_now = {name for name, t in targets(uri).items() if t is not None and t < before[name]}
    assert lowered_now and lowered_now != set(before)
    with Journal.open(journal, uri=uri, lock=False) as j:
        journaled = {e.vm for e in j.lowered()}
    # the journal is written before each change: a round's moves the kill cut off between the
    # journal and the hypervisor are in it too (three at most), never a change it did not record
    assert lowered_now <= journaled and len(journaled - lowered_now) <= 3
    r = invoke("release", uri, "--journal", str(journal), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    validate(report, SCHEMAS["ReleaseReport"])
    assert {v["vm"] for v in report["vms"]} == journaled
    assert lowered_now <= {v["vm"] for v in report["vms"] if v["action"] == "released"}
    assert targets(uri) == before
    again = invoke("release", uri, "--journal", str(journal))
    assert again.returncode == 0 and "nothing to release" in again.stdout


@pytest.mark.slow
def test_sigterm_finishes_the_round_and_releases_with_release_on_exit(
    tmp_path: Path, running: Callable[..., Running]
) -> None:
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    before = targets(uri)
    ctl = running("autoballoon", uri, "--journal", str(tmp_path / "j.db"), "--release-on-exit", "--json")
    ctl.wait_for(lambda r: sum(1 for line in r.stdout if '"applied":true' in line) >= 3)
    assert ctl.signal(signal.SIGTERM) == 0, "".join(ctl.stderr)
    summary = json.loads(ctl.stderr[-1])
    assert summary["stopped_by"] == "SIGTERM" and summary["released"]["vms"]
    assert summary["lowered_vms"] == 0
    rounds = [json.loads(line)["round"] for line in ctl.stdout]
    assert sorted(set(rounds)) == list(range(max(rounds) + 1))  # the last round was finished
    assert all(rounds.count(n) == 10 for n in set(rounds))
    assert targets(uri) == before


@pytest.mark.slow
def test_sigint_releases_too_and_exits_130(tmp_path: Path, running: Callable[..., Running]) -> None:
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    before = targets(uri)
    ctl = running("autoballoon", uri, "--journal", str(tmp_path / "j.db"), "--release-on-exit")
    ctl.wait_for(lambda r: sum(1 for line in r.stdout if ": lower " in line) >= 3)
    assert ctl.signal(signal.SIGINT) == 130
    err = "".join(ctl.stderr)
    released = re.search(r"; released (\d+) VMs", err)
    assert "interrupted: after " in err and released and "Traceback" not in err, err
    assert int(released[1]) >= 1  # what it held lowered: how many is the policy's business
    assert targets(uri) == before


@pytest.mark.slow
def test_a_second_controller_or_a_release_is_refused_while_one_runs(
    tmp_path: Path, running: Callable[..., Running]
) -> None:
    uri = f"fake://seed?state={tmp_path / 'w.db'}&speed=10"
    journal = str(tmp_path / "j.db")
    ctl = running("autoballoon", uri, "--journal", journal, "--serve")
    ctl.wait_for(lambda r: any("controlling" in line for line in r.stderr))
    for args in (
        ("autoballoon", uri, "--journal", journal, "--once"),
        ("release", uri, "--journal", journal),
    ):
        r = run(*args)
        assert r.returncode == 10 and "in use by a running controller (pid " in r.stderr, r.stderr
    assert ctl.signal(signal.SIGTERM) == 0


@pytest.mark.slow
def test_serve_reloads_its_settings_on_sighup_and_keeps_them_when_the_file_is_bad(
    tmp_path: Path, running: Callable[..., Running]
) -> None:
    settings, ctl = serving(tmp_path, running)

    def events(r: Running, name: str) -> list[dict[str, Any]]:
        return [e for e in r.json_log() if e.get("event") == name]

    ctl.wait_for(lambda r: len(r.stdout) >= 20)  # two rounds
    settings.write_text("interval_seconds: 10\nhost_memory_bytes: 120GiB\nvms: {web01: {exclude: true}}\n")
    ctl.proc.send_signal(signal.SIGHUP)
    ctl.wait_for(lambda r: bool(events(r, "reloaded")))
    seen = len(ctl.stdout)
    ctl.wait_for(lambda r: len(r.stdout) >= seen + 20)
    later = [json.loads(line) for line in ctl.stdout[seen + 10 :]]
    assert {d["action"] for d in later if d["vm"] == "web01"} == {"skip"}
    settings.write_text("interval_seconds: -1\nvms: [not, a, mapping]\n")
    ctl.proc.send_signal(signal.SIGHUP)
    ctl.wait_for(lambda r: bool(events(r, "reload_failed")))
    failed = events(ctl, "reload_failed")[0]
    assert failed["level"] == "warning" and "interval_seconds" in failed["message"]
    assert failed["code"] == "invalid_request"
    seen = len(ctl.stdout)
    ctl.wait_for(lambda r: len(r.stdout) >= seen + 20)  # still running, on the settings in force
    assert ctl.signal(signal.SIGTERM) == 0
    assert events(ctl, "summary")[0]["stopped_by"] == "SIGTERM"


@pytest.mark.slow
def test_the_metrics_endpoint_is_scraped(tmp_path: Path, running: Callable[..., Running]) -> None:
    path = tmp_path / "flaky.yaml"
    text = SEED.read_text().replace("name: seed", "name: flaky", 1)
    path.write_text(text + "faults:\n  - {op: get_host_stats, kind: timeout, rate: 0.25, burst: 3}\n")
    uri = f"fake://{path}?state={tmp_path / 'w.db'}&speed=20"
    ctl = running(
        "autoballoon", uri, "--serve", "--metrics-address", "127.0.0.1:0", "--log-format", "json",
        "--journal", str(tmp_path / "j.db"),
    )  # fmt: skip
    ctl.wait_for(lambda r: any(e.get("event") == "metrics" for e in r.json_log()))
    port = next(e["port"] for e in ctl.json_log() if e.get("event") == "metrics")

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    def value(text: str, prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    ctl.wait_for(lambda _r: value(scrape(), "hvballoon_controller_failed_rounds_total") >= 1)
    ctl.wait_for(lambda _r: value(scrape(), "hvballoon_controller_rounds_total") >= 6)
    text = scrape()
    labels = f'policy="hvballoon",uri="{uri}"'
    assert f'hvballoon_controller_info{{dry_run="false",{labels},version=' in text
    assert value(text, "hvballoon_controller_rounds_total") > value(
        text, 'hvballoon_controller_failed_rounds_total{code="timeout"'
    )
    assert value(text, 'hvballoon_controller_decisions_total{action="lower"') >= 1
    assert value(text, "hvballoon_controller_lowered_bytes_total") > 0
    assert value(text, "hvballoon_controller_round_duration_seconds_count") == value(
        text, "hvballoon_controller_rounds_total"
    )
    assert value(text, "hvballoon_controller_last_success_timestamp_seconds") > time.time() - 600
    assert 1 <= value(text, "hvballoon_controller_lowered_vms") <= 10  # of the seed's ten
    # beside them, the exporter's figures of the VMs and the host from the last round: none
    # after a failed round (the host is down), every VM's after one that worked
    texts: list[str] = []

    def swept(up: float) -> bool:
        texts.append(scrape())
        return value(texts[-1], "hvballoon_host_up{") == up

    ctl.wait_for(lambda _r: swept(0.0))
    assert "hvballoon_vm_current_bytes{" not in texts[-1]
    ctl.wait_for(lambda _r: swept(1.0))
    assert texts[-1].count('hvballoon_vm_current_bytes{backend="fake"') == 10
    assert 'hvballoon_host_physical_bytes{backend="fake",host="host01"' in texts[-1]
    assert value(texts[-1], 'hvballoon_host_errors_total{backend="fake"') >= 1
    assert ctl.signal(signal.SIGTERM) == 0


@pytest.mark.slow
def test_json_log_lines_are_one_object_each_and_never_hold_the_password(
    tmp_path: Path, running: Callable[..., Running]
) -> None:
    path = tmp_path / "down.yaml"
    text = SEED.read_text().replace("name: seed", "name: down", 1)
    path.write_text(text + "faults:\n  - {op: get_host_stats, kind: timeout, rate: 0.5, burst: 3}\n")
    uri = f"fake://{path}?state={tmp_path / 'w.db'}"
    r = invoke(
        "autoballoon", uri, "--rounds", "6", "--log-format", "json", "--journal", str(tmp_path / "j.db"),
        "--max-failed-rounds", "1", env={"HVBALLOON_PASSWORD": SECRET},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert {e.get("event") for e in lines} >= {"round_failed", "fail_open", "fail_open_released", "summary"}
    failed = next(e for e in lines if e.get("event") == "round_failed")
    assert failed["code"] == "timeout" and failed["level"] == "warning" and "round" in failed
    assert SECRET not in r.stdout + r.stderr


class TestCheck:
    def test_check_settings_validates_a_file_without_a_uri(self, tmp_path: Path) -> None:
        good = tmp_path / "good.yaml"
        good.write_text("interval_seconds: 5\nvms: {db01: {self_managed: true}, web01: {floor: 4GiB}}\n")
        r = invoke("autoballoon", "--check-settings", str(good))
        assert r.returncode == 0 and "valid autoballoon settings (2 VMs named)" in r.stdout
        r = invoke("autoballoon", "--check-settings", str(good), "--json")
        assert json.loads(r.stdout)["vms"]["web01"]["floor"] == 4 * GiB

    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            ("interval_seconds: 0\n", "interval_seconds"),
            ("vms: {web01: {floor: 4 gigs}}\n", "vms.web01.floor"),
            ("vms: {web01: {floor: 8GiB, ceiling: 4GiB}}\n", "floor is above ceiling"),
            ("polciy: mom\n", "polciy: Extra inputs are not permitted"),
            ("max_failed_rounds: 0\n", "max_failed_rounds"),
            # libvirt's stats period is a C int: it would crash the first round, not this check
            ("stats_period_seconds: 99999999999999999999\n", "stats_period_seconds"),
            # durations a round's wait cannot take (timestamp out of range), or that never end
            ("interval_seconds: .inf\n", "interval_seconds"),
            ("interval_seconds: 1e20\n", "interval_seconds: invalid interval_seconds"),
            ("host_memory_bytes: 0\n", "host_memory_bytes is the host's memory: above zero"),
            ("host_memory_bytes: 120GiB\nhost_reserve_bytes: 200GiB\n", "leave nothing of host_memory_bytes"),
            ("host_memory_bytes: 1GiB\nhost_overhead_bytes: 2GiB\n", "leave nothing of host_memory_bytes"),
            ("max_backoff_seconds: .inf\n", "max_backoff_seconds"),
            ("fast_interval_seconds: .nan\n", "fast_interval_seconds"),
            ("min_seconds_between_lowers: 1.0e+30\n", "at most 3650d"),
            ("[a, b]\n", "must hold a mapping"),
            ("vms: {web01: [unclosed\n", "not valid YAML"),
            # a key given twice: the last one would win without a word
            (
                "policy: mom\npolicy: static\n",
                "not valid YAML: the key 'policy' is given twice in one mapping",
            ),
            pytest.param(
                "interval_seconds: " + "9" * 5000 + "\n",
                "not valid YAML: a number too long to read",
                id="number-too-long",
            ),
        ],
    )
    def test_a_bad_settings_file_exits_2_naming_the_problem(
        self, tmp_path: Path, content: str, problem: str
    ) -> None:
        bad = tmp_path / "bad.yaml"
        bad.write_text(content)
        r = invoke("autoballoon", "--check-settings", str(bad))
        assert r.returncode == 2 and problem in r.stderr, r.stderr
        assert str(bad) in r.stderr

    def test_unreadable_and_missing_files(self, tmp_path: Path) -> None:
        r = invoke("autoballoon", "--check-settings", str(tmp_path / "none.yaml"))
        assert r.returncode == 2 and "cannot read the settings file" in r.stderr
        binary = tmp_path / "bin.yaml"
        binary.write_bytes(b"\xff\xfe\x00bad")
        r = invoke("autoballoon", "--check-settings", str(binary))
        assert r.returncode == 2 and "not UTF-8" in r.stderr
        bad_json = tmp_path / "s.json"
        bad_json.write_text("{nope")
        r = invoke("autoballoon", "--check-settings", str(bad_json))
        assert r.returncode == 2 and "not valid JSON" in r.stderr

    def test_check_connects_and_checks_without_a_round(self, tmp_path: Path) -> None:
        uri = f"fake://seed?state={tmp_path / 'w.db'}"
        before = targets(uri)
        r = invoke(
            "autoballoon", uri, "--check", "--journal", str(tmp_path / "j.db"), "--floor", "web99=1GiB"
        )
        assert r.returncode == 0 and "ready (hvballoon policy" in r.stdout, r.stderr
        assert "'web99'" in r.stderr
        assert targets(uri) == before
        r = invoke(
            "autoballoon",
            uri,
            "--check",
            "--json",
            "--journal",
            str(tmp_path / "j.db"),
            "--floor",
            "web99=1GiB",
        )
        assert r.returncode == 0, r.stderr
        ready = json.loads(r.stdout)
        validate(ready, SCHEMAS["AutoballoonCheck"])
        assert ready["journal"] == str(tmp_path / "j.db") and "'web99'" in ready["problems"][0]
        r = invoke("autoballoon", uri, "--check", "--strict", "--floor", "web99=1GiB")
        assert r.returncode == 2

    def test_check_advises_deflate_on_oom_where_the_balloons_lack_it(self) -> None:
        r = invoke("autoballoon", "fake://seed", "--check", "--self-managed", "jvm01")
        assert r.returncode == 0, r.stderr
        (advice,) = [line for line in r.stderr.splitlines() if line.startswith("advice: ")]
        assert "VMs the policy may lower have no deflate-on-OOM (" in advice and "jvm01" not in advice
        r = invoke("autoballoon", "fake://seed", "--check", "--json")
        (advice,) = json.loads(r.stdout)["advice"]
        assert "jvm01" in advice
        for uri in ("fake://seed?flavor=esxi", "fake://seed?flavor=hyperv"):
            r = invoke("autoballoon", uri, "--check", "--json")
            assert r.returncode == 0 and json.loads(r.stdout)["advice"] == [], r.stderr
        r = invoke("autoballoon", "fake://seed", "--policy", "static", "--check")
        assert r.returncode == 0 and "advice" not in r.stderr

    def test_bad_combinations(self) -> None:
        assert invoke("autoballoon").returncode == 2
        r = invoke("autoballoon", "fake://seed", "--serve", "--once")
        assert r.returncode == 2 and "--serve runs until stopped" in r.stderr
        r = invoke("autoballoon", "fake://seed", "--once", "--metrics-address", "127.0.0.1:http")
        assert r.returncode == 2 and "invalid --metrics-address" in r.stderr
        r = invoke("autoballoon", "fake://seed", "--once", "--log-format", "xml")
        assert r.returncode == 2

    @pytest.mark.parametrize(
        ("args", "problem"),
        [
            (("fake://seed", "--once", "--rounds", "3"), "--once runs one round"),
            (("fake://seed", "--once", "--journal", ""), "--journal: an empty path"),
            (
                ("fake://seed", "--once", "--floor", "web01=4GiB", "--floor", "web01=5GiB"),
                "names web01 twice",
            ),
            (("fake://seed", "--once", "--interval", "1ms"), "give a longer interval"),
        ],
    )
    def test_contradictory_or_empty_options_are_refused_before_any_round(
        self, tmp_path: Path, args: tuple[str, ...], problem: str
    ) -> None:
        r = invoke("autoballoon", *args, "--json", env={"XDG_STATE_HOME": str(tmp_path)})
        assert r.returncode == 2 and problem in json.loads(r.stdout)["message"]
        assert not (tmp_path / "hvballoon").exists()  # no journal was made

    def test_check_settings_runs_nothing_else(self, tmp_path: Path) -> None:
        settings = tmp_path / "s.yaml"
        settings.write_text("interval_seconds: 10\n")
        for extra in (("fake://seed",), ("--once",), ("--rounds", "2")):
            r = invoke("autoballoon", "--check-settings", str(settings), *extra)
            assert r.returncode == 2 and "runs nothing" in r.stderr


@pytest.mark.parametrize("args", [("--rounds", "2"), ("--check",), ("--once", "--release-on-exit")])
def test_the_command_closes_every_session_it_opened(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    opened: list[hvballoon.Hypervisor] = []
    real = hvballoon.connect

    def connect(*a: Any, **k: Any) -> hvballoon.Hypervisor:
        opened.append(real(*a, **k))
        return opened[-1]

    monkeypatch.setattr(hvballoon, "connect", connect)
    r = invoke("autoballoon", "fake://seed", *args)
    assert r.returncode == 0, r.stderr
    assert opened and all("closed" in repr(hv) for hv in opened), opened


@pytest.mark.slow
def test_the_default_journal_lives_under_the_state_directory_for_a_lasting_hypervisor(tmp_path: Path) -> None:
    state = tmp_path / "xdg"
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    r = run("autoballoon", uri, "--once", env={"XDG_STATE_HOME": str(state)})
    assert r.returncode == 0, r.stderr
    lowered = r.stdout.count(": lower ")
    assert lowered >= 1, r.stdout
    (journal,) = (state / "hvballoon" / "journal").glob("*.db")
    assert f"journal {journal}" in r.stderr
    r = run("release", uri, env={"XDG_STATE_HOME": str(state)})
    assert r.returncode == 0 and r.stdout.count(": released ") == lowered
    # an in-memory world ends with the process: nothing is written for it
    r = run("autoballoon", "fake://seed", "--once", env={"XDG_STATE_HOME": str(tmp_path / "other")})
    assert r.returncode == 0 and not (tmp_path / "other").exists()


def test_journal_directories_it_creates_are_private_whatever_the_umask(tmp_path: Path) -> None:
    # `--journal` into a directory that is not there: made as `mkdir -p`, but each directory it
    # makes 0700 (the journal says which VMs were lowered); the one that was there is left alone
    tmp_path.chmod(0o755)
    journal = tmp_path / "state" / "hvballoon" / "j.db"
    previous = os.umask(0o022)  # the usual one: it leaves a directory made with 0777 readable
    try:
        r = invoke("autoballoon", "fake://seed", "--once", "--journal", str(journal))
    finally:
        os.umask(previous)
    assert r.returncode == 0, r.stderr
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path, journal.parent.parent, journal.parent)
    }
    assert modes == {tmp_path.name: 0o755, "state": 0o700, "hvballoon": 0o700}
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600


class TestRelease:
    def lowered(self, tmp_path: Path, **extra: int) -> tuple[str, Path, dict[str, int | None]]:
        """A persisted world where web01 and web02 were lowered, and a journal that says so (plus
        ``extra``: VM name → a before_bytes to record)."""
        uri = f"fake://seed?state={tmp_path / 'w.db'}"
        path = tmp_path / "j.db"
        before = targets(uri)
        with hvballoon.connect(uri) as hv, Journal.open(path, uri=hv.uri) as j:
            moves = [Move(hv.resolve(n).id, n, "balloon", 16 * GiB, 12 * GiB) for n in ("web01", "web02")]
            moves += [Move(hv.resolve(n).id, n, "balloon", b, 12 * GiB) for n, b in extra.items()]
            j.intend(1, moves)
            # the balloons reach it: a new session sees where they are (libvirt keeps no target)
            hv.set_targets({m.vm: 12 * GiB for m in moves}, wait=True)
        return uri, path, before

    def test_to_maximum_dry_run_and_lines(self, tmp_path: Path) -> None:
        uri, path, before = self.lowered(tmp_path)
        r = invoke("release", uri, "--journal", str(path), "--dry-run")
        assert r.returncode == 0 and "web01: released (dry run) 12 GiB -> 16 GiB [journal]" in r.stdout
        assert targets(uri)["web01"] == 12 * GiB
        r = invoke("release", uri, "--journal", str(path), "--to-maximum")
        assert r.returncode == 0 and "web02: released 12 GiB -> 16 GiB" in r.stdout
        assert targets(uri) == before

    def test_a_partial_release_exits_12_and_keeps_what_failed(self, tmp_path: Path) -> None:
        uri, path, _ = self.lowered(tmp_path, web03=16 * GiB)
        store = WorldStore(str(tmp_path / "w.db"), lambda: pytest.fail("the world exists"))
        with store.transaction() as w:
            w.faults.add(op="set_target", kind="permission_denied", vm="web03")
        store.close()
        r = invoke("release", uri, "--journal", str(path), "--json")
        assert r.returncode == 12, r.stderr
        report = json.loads(r.stdout)
        actions = {v["vm"]: v["action"] for v in report["vms"]}
        assert actions == {"web01": "released", "web02": "released", "web03": "error"}
        web03 = next(v for v in report["vms"] if v["vm"] == "web03")
        assert web03["error"]["code"] == "permission_denied"
        with Journal.open(path, uri=uri) as j:
            assert [e.vm for e in j.lowered()] == ["web03"]  # to be tried again

    def test_a_vm_redefined_smaller_since_it_was_lowered_gets_its_maximum_back(self, tmp_path: Path) -> None:
        uri, path, _ = self.lowered(tmp_path, web03=32 * GiB)  # had more than its maximum now
        r = invoke("release", uri, "--journal", str(path), "--json")
        assert r.returncode == 0, r.stderr
        web03 = next(v for v in json.loads(r.stdout)["vms"] if v["vm"] == "web03")
        assert web03["action"] == "released" and web03["to_bytes"] == 16 * GiB
        assert web03["before_bytes"] == 32 * GiB and "capped at its maximum, 16 GiB" in web03["reason"]
        assert targets(uri)["web03"] == 16 * GiB
        with Journal.open(path, uri=uri) as j:
            assert j.lowered() == []  # nothing left to give back: it does not retry for ever

    def test_a_vm_that_is_gone_is_forgotten_and_one_already_back_is_given_its_target(
        self, tmp_path: Path
    ) -> None:
        uri, path, _ = self.lowered(tmp_path)
        with hvballoon.connect(uri) as hv, Journal.open(path, uri=hv.uri) as j:
            j.intend(2, [Move("no-such-id", "gone01", "balloon", 16 * GiB, 8 * GiB)])
            hv.set_target("web02", "16GiB")  # an administrator gave it back already
            hv.wait_for_target("web02")
        r = invoke("release", uri, "--journal", str(path))
        assert r.returncode == 0, r.stderr
        assert "gone01: gone: the VM no longer exists" in r.stdout
        # libvirt keeps no target this session could read: web02's is sent again, in case
        assert "web02: released 16 GiB -> 16 GiB" in r.stdout
        assert "web01: released 12 GiB -> 16 GiB" in r.stdout

    @pytest.mark.slow
    def test_journal_problems(self, tmp_path: Path) -> None:
        # Hyper-V keeps no marks: without its journal a release has nothing to go by
        uri = f"fake://seed?flavor=hyperv&state={tmp_path / 'w.db'}"
        r = invoke("release", uri, "--journal", str(tmp_path / "none.db"))
        assert r.returncode == 2 and "no journal at" in r.stderr
        r = invoke("release", uri, env={"XDG_STATE_HOME": str(tmp_path / "xdg")})
        assert r.returncode == 2 and "no journal at" in r.stderr
        other = tmp_path / "other.db"
        Journal.open(other, uri="fake://java").close()
        r = invoke("release", uri, "--journal", str(other))
        assert r.returncode == 2 and "belongs to the controller of fake://java" in r.stderr
        r = invoke("release", uri, "--from-marks")
        assert r.returncode == 2 and "keeps no marks" in r.stderr
        r = invoke("release", uri, "--journal", "")
        assert r.returncode == 2 and "an empty path" in r.stderr
        # another program's database is neither read as a journal nor written to
        r = invoke("release", uri, "--journal", str(tmp_path / "w.db"), "--dry-run")
        assert r.returncode == 2 and "not a hvballoon journal" in r.stderr and "other tables" in r.stderr
        r = invoke("stats", f"fake://seed?state={other}")
        assert r.returncode == 2 and "not a fake world's state file" in r.stderr
        with hvballoon.connect(uri) as hv:  # the world still opens
            assert [s.vm.name for s in hv.get_stats("web01")] == ["web01"]

    def test_from_marks_on_esxi_needs_no_journal(self, tmp_path: Path) -> None:
        uri = f"fake://seed?flavor=esxi&state={tmp_path / 'w.db'}"
        with hvballoon.connect(uri) as hv:
            from hvballoon.policy import Controller, ControllerSettings

            ctl = Controller(hv, "hvballoon", ControllerSettings())  # its journal in memory: lost
            ctl.step()
            lowered = {e.vm for e in ctl.lowered()}
            assert lowered
        r = invoke("release", uri, "--json", env={"XDG_STATE_HOME": str(tmp_path / "xdg")})
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        assert report["journal"] is None and report["marks"]
        assert {v["vm"] for v in report["vms"] if v["action"] == "released"} == lowered
        assert all(v["unlimited"] and v["to_bytes"] is None and v["source"] == "marks" for v in report["vms"])
        with hvballoon.connect(uri) as hv:
            assert all(hv.get_config(name).limit_bytes is None for name in lowered)
            assert hv.get_marks("hvballoon.controller.before") == {}
