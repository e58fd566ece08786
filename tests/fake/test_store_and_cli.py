"""A persisted world shared by processes; the simulate and fake advance commands."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hvballoon
from hvballoon.errors import InvalidRequestError
from hvballoon.fake.record import record
from hvballoon.fake.scenario import load_scenario
from hvballoon.fake.store import WorldStore, world_from_bytes, world_to_bytes
from hvballoon.fake.world import World
from hvballoon.models import ConfigUpdate
from hvballoon.units import GiB
from tests.support.cli import Result, invoke
from tests.support.policies import targets


def cli(*args: str) -> Result:
    return invoke(*args)


def test_connections_share_one_persisted_world(tmp_path: Path) -> None:
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    with hvballoon.connect(uri) as hv:
        hv.set_target("web01", "8GiB")
        hv.backend.sleep(30)
    with hvballoon.connect(uri) as hv:
        (st,) = hv.get_stats(["web01"])
        assert st.current_bytes == targets(hv)["web01"] == 8 * GiB
        assert st.target_bytes is None  # libvirt keeps no target another session could read
        assert hv.backend.monotonic() == 30


def test_world_round_trips_through_bytes() -> None:
    w = World(load_scenario("seed-spike"), flavor="esxi", seed=9)
    w.faults.add(op="get_stats", kind="timeout", probability=0.5)
    w.advance(3700)
    again = world_from_bytes(world_to_bytes(w))
    assert again.accounting() == w.accounting()
    w.advance(600)
    again.advance(600)
    assert world_to_bytes(again) == world_to_bytes(w)


def test_a_world_saved_before_the_state_had_named_fields_still_loads() -> None:
    """data/world-format1.bin was written by the first persisted format (arrays under short
    names): seed-spike in the esxi flavour, seed 3, a scripted get_stats fault, 30 minutes,
    web01 limited to 4 GiB, 3700 s more. It loads as the same world, which goes on the same."""
    old = world_from_bytes((Path(__file__).with_name("data") / "world-format1.bin").read_bytes())
    w = World(load_scenario("seed-spike"), flavor="esxi", seed=3)
    w.faults.add(op="get_stats", kind="timeout", count=2)
    w.advance(1800)
    w.set_config(w.guest("web01").id, ConfigUpdate(limit_bytes=4 * GiB))
    w.advance(3700)
    # major faults were once summed block by block (each block's pages floored); they are now the
    # pages swapped in, counted from the total: the saved count is the old way's, within a page
    # per block of it
    recounted = {"major_faults", "report_major_faults"}
    for name in recounted:
        np.testing.assert_allclose(getattr(old.state, name), getattr(w.state, name), rtol=1e-4, err_msg=name)
    for _ in range(2):
        for name in w.state.names():
            if name in recounted:
                continue
            np.testing.assert_array_equal(getattr(old.state, name), getattr(w.state, name), err_msg=name)
        for mine, theirs in zip(old.workloads, w.workloads, strict=True):
            np.testing.assert_array_equal(mine.walk, theirs.walk)
        assert old.accounting() == w.accounting() and old.events == w.events and old.configs == w.configs
        assert old.faults.to_data() == w.faults.to_data() and old.version == w.version
        old.advance(600)
        w.advance(600)


def test_a_world_saved_with_its_arrays_in_an_archive_still_loads() -> None:
    """data/world-format2.bin was written by the second persisted format (the arrays in a numpy
    ``.npz`` archive): the recipe above, saved at 30 minutes. It loads as the same world, goes on
    the same, and is saved again in today's format."""
    old = world_from_bytes((Path(__file__).with_name("data") / "world-format2.bin").read_bytes())
    w = World(load_scenario("seed-spike"), flavor="esxi", seed=3)
    w.faults.add(op="get_stats", kind="timeout", count=2)
    w.advance(1800)
    w.set_config(w.guest("web01").id, ConfigUpdate(limit_bytes=4 * GiB))
    assert world_to_bytes(old) == world_to_bytes(w)
    old.advance(3700)
    w.advance(3700)
    assert world_to_bytes(old) == world_to_bytes(w)


def _edited(blob: bytes, edit: Callable[[dict[str, Any]], None], tail: bytes = b"") -> bytes:
    """``blob`` with its JSON header changed by ``edit`` and ``tail`` appended."""
    size = int.from_bytes(blob[:8], "big")
    header = json.loads(blob[8 : 8 + size])
    edit(header)
    head = json.dumps(header).encode()
    return len(head).to_bytes(8, "big") + head + blob[8 + size :] + tail


def _first_array(header: dict[str, Any], field: int, value: Any) -> None:
    header["arrays"][0][field] = value


@pytest.mark.parametrize(
    ("edit", "tail", "why"),
    [
        (lambda h: _first_array(h, 1, "|O"), b"", "is not an array a world holds"),
        (lambda h: _first_array(h, 1, "<U8"), b"", "is not an array a world holds"),
        (lambda h: _first_array(h, 2, [-1]), b"", "is not an array a world holds"),
        (lambda h: _first_array(h, 2, [10**9]), b"", "runs past the end"),
        (lambda h: None, b"\0" * 8, "left over"),
        (lambda h: h["arrays"].pop(), b"", "left over"),
    ],
    ids=["object", "text", "negative-shape", "too-long", "trailing-bytes", "undescribed-array"],
)
def test_a_damaged_world_is_refused_by_name_and_leaves_the_file_alone(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], tail: bytes, why: str
) -> None:
    blob = world_to_bytes(World(load_scenario("seed")))
    with pytest.raises(ValueError, match=why):
        world_from_bytes(_edited(blob, edit, tail))
    path = tmp_path / "w.db"
    WorldStore(path, lambda: World(load_scenario("seed"))).close()
    damaged = _edited(blob, edit, tail)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE world SET data = ? WHERE id = 1", (damaged,))
    conn.close()
    with pytest.raises(InvalidRequestError, match=r"cannot be read .*delete the file or name another"):
        with hvballoon.connect(f"fake://seed?state={path}") as hv:
            hv.get_stats()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT data FROM world").fetchone()[0] == damaged
    conn.close()


WORKER = textwrap.dedent(
    """
    import sys
    import hvballoon
    from hvballoon.retry import RetryPolicy

    uri, me, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    names = ["web01", "web02", "web03", "app01", "app02", "db01", "jvm01", "cache01", "batch01", "ci01"]
    with hvballoon.connect(uri, retry=RetryPolicy(max_attempts=1)) as hv:
        for i in range(ops):
            kind = i % 3
            if kind == 0:
                assert len(hv.get_stats()) == 10
            elif kind == 1:
                hv.set_target(names[me % 10], f"{10 + (i % 5)}GiB")
            else:
                hv.backend.sleep(1)
    """
)


@pytest.mark.slow  # sixteen interpreters
def test_sixteen_processes_lose_no_update(tmp_path: Path) -> None:
    db = tmp_path / "world.db"
    store = WorldStore(db, lambda: World(load_scenario("seed")))
    with store.transaction() as w:
        # a rule that never fires but counts every get_stats call
        w.faults.add(op="get_stats", kind="timeout", after=10**9)
    store.close()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs, ops = 16, 63  # 1,008 mixed operations in all
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    workers = [
        subprocess.Popen([sys.executable, str(script), f"fake://seed?state={db}", str(p), str(ops)], env=env)
        for p in range(procs)
    ]
    assert [p.wait(timeout=120) for p in workers] == [0] * procs
    store = WorldStore(db, lambda: World(load_scenario("seed")))
    with store.transaction(write=False) as w:
        sleeps = sum(1 for i in range(ops) if i % 3 == 2) * procs
        stats = sum(1 for i in range(ops) if i % 3 == 0) * procs
        assert w.now == sleeps  # every advance of every process is there
        targets = sum(1 for i in range(ops) if i % 3 == 1) * procs
        # every read was counted, none lost (set_target reads the VM's stats once too)
        assert w.faults.rules[0].seen == stats + targets
        assert w.accounting()["host"]["conserved"]
    store.close()


@pytest.mark.slow  # two simulated hours drawn to a PNG: the SVG test below draws in the inner loop
def test_simulate_seed_draws_and_keeps_its_headline_facts(tmp_path: Path) -> None:
    png, csv = tmp_path / "seed.png", tmp_path / "seed.csv"
    r = cli("simulate", "seed", "--duration", "2h", "--plot", str(png), "--csv", str(csv), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["host"]["physical_bytes"] == 120 * GiB
    assert summary["host"]["promised_bytes"] == 160 * GiB
    assert summary["duration_seconds"] == 7200
    assert len(summary["vms"]) == 10
    for vm in summary["vms"].values():
        assert vm["configured_bytes"] == 16 * GiB
        assert vm["peak_demand_bytes"] <= 8 * GiB  # each VM uses 8 GiB or less
        assert vm["oom_events"] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("t_seconds,vm,demand_bytes") and len(lines) == 1 + 721 * 10


def test_simulate_human_output_and_bad_input() -> None:
    r = cli("simulate", "dense", "--duration", "30m", "--flavor", "esxi")
    assert r.returncode == 0, r.stderr
    assert "224 GiB promised on 120 GiB" in r.stdout and "vm14" in r.stdout
    assert cli("simulate", "nope", "--duration", "1h").returncode == 2
    assert cli("simulate", "waves-7-nope", "--duration", "1h").returncode == 2
    assert cli("simulate", "seed", "--duration", "0").returncode == 2
    assert cli("simulate", "seed", "--duration", "1m", "--seed", "-1").returncode == 2
    # a span mistyped by orders of magnitude is refused, not left running for ever
    r = cli("simulate", "seed", "--duration", "1000d", "--step", "0.1s")
    assert r.returncode == 2 and "simulation steps" in r.stderr
    r = cli("simulate", "seed", "--duration", "1s", "--step", "1e-9")
    assert r.returncode == 2 and "--step must be from 1ms to 60s" in r.stderr


def test_simulate_runs_a_generated_wave_scenario_by_the_name_scenarios_lists() -> None:
    listed = cli("scenarios")
    assert "waves-<seed>-esxi" in listed.stdout
    r = cli("simulate", "waves-7-esxi", "--duration", "2m", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scenario"] == "waves-7-esxi"


def test_simulate_with_a_policy_goes_on_through_the_scenarios_faults(tmp_path: Path) -> None:
    # every sweep hangs for a minute between 60 s and 120 s: the controller's rounds fail there
    # (after their retries, in simulated time), and the run goes on as the controller's service
    # loop does, saying how many rounds failed
    path = tmp_path / "faulty.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: faulty
            host: {name: h, physical: 32GiB, overhead: 1GiB, reserve: 1GiB}
            vms:
              - {name: web01, memory: 8GiB, used: 2GiB}
              - {name: web02, memory: 8GiB, used: 2GiB}
            faults:
              - {op: get_stats, kind: slow, latency: 60, probability: 1.0, at: 60, until: 120}
            """
        )
    )
    r = cli("simulate", str(path), "--duration", "5m", "--policy", "hvballoon", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["duration_seconds"] == 300
    assert summary["failed_rounds"] >= 1
    assert summary["rounds"] > summary["failed_rounds"]
    # without a policy there are no rounds to count
    plain = json.loads(cli("simulate", str(path), "--duration", "5m", "--json").stdout)
    assert plain["rounds"] is None and plain["failed_rounds"] is None


def test_fake_advance_moves_a_persisted_clock(tmp_path: Path) -> None:
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    r = cli("fake", "advance", uri, "10m", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["now_seconds"] == 600
    r = cli("fake", "advance", uri, "1h")
    assert r.returncode == 0 and "1h10m" in r.stdout
    r = cli("fake", "advance", "fake://seed", "10m")
    assert r.returncode == 2 and "state=" in r.stderr
    r = cli("fake", "advance", uri, "1e10")
    assert r.returncode == 2 and "at most 3650d" in r.stderr
    assert json.loads(cli("fake", "advance", uri, "0", "--json").stdout)["now_seconds"] == 4200  # unmoved


def test_a_run_of_steps_reports_the_steps_time_not_its_floating_point_sum(tmp_path: Path) -> None:
    # ten steps of 0.1 s were reported as 0.9999999999999999 s, three advances of 0.1 s as
    # 0.30000000000000004
    for duration, step, covered in (("1s", "0.1s", 1.0), ("10s", "0.1s", 10.0), ("0.35s", "0.1s", 0.35)):
        r = cli("simulate", "seed", "--duration", duration, "--step", step, "--json")
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        assert (summary["duration_seconds"], summary["overrun_seconds"]) == (covered, 0.0), duration
    uri = f"fake://seed?state={tmp_path / 'w.db'}"
    now = [json.loads(cli("fake", "advance", uri, "0.1s", "--json").stdout)["now_seconds"] for _ in range(3)]
    assert now == [0.1, 0.2, 0.3]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (
            "fake://seed?flavor=esxi",
            "simulate takes a scenario, not a URI: 'seed' rather than 'fake://seed?flavor=esxi'",
        ),
        ("fake:///srv/mine.yaml", "simulate takes a scenario, not a URI: '/srv/mine.yaml' rather than"),
        ("esxi://root:Pa55@esx01", "simulate runs a scenario of the simulator"),
    ],
)
def test_simulate_given_a_uri_names_the_scenario_to_give(given: str, says: str) -> None:
    # the URI the other commands take is not read as the name of a scenario that does not exist
    r = cli("simulate", given, "--duration", "1m")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"error: {says}") and "no scenario" not in r.stderr, r.stderr
    assert "Pa55" not in r.stderr


@pytest.mark.parametrize("every", ["0", "0s", "0ms"])
def test_simulate_refuses_a_recording_interval_of_zero(every: str, tmp_path: Path) -> None:
    # refused as --step 0s and --interval 0s are, not recorded at every step instead
    series = tmp_path / "series.json"
    r = cli("simulate", "seed", "--duration", "10m", "--every", every, "--series", str(series))
    assert r.returncode == 2 and "--every must be above zero" in r.stderr, r.stderr
    assert not series.exists()


def test_simulate_records_the_run_s_last_moment_whatever_every(tmp_path: Path) -> None:
    # every 7 minutes over 10: the series (and the summary read from it) end at 10 minutes, not 7
    series = tmp_path / "series.json"
    r = cli("simulate", "seed", "--duration", "10m", "--every", "7m", "--series", str(series), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(series.read_text())["t"] == [0.0, 420.0, 600.0]


@pytest.mark.parametrize("uri", ["esxi://root@127.0.0.1:9", "qemu+ssh://root@127.0.0.1:9/system"])
def test_fake_advance_refuses_a_real_hypervisor_s_uri_before_connecting(uri: str) -> None:
    # not a login to a real hypervisor (its password asked, its failure's exit code) to learn that
    # only a simulated world has a clock to move
    r = cli("fake", "advance", uri, "10m", "--json")
    assert r.returncode == 2, r.stdout
    err = json.loads(r.stdout)
    assert err["code"] == "invalid_request" and err["backend"] is None
    assert (
        err["message"].startswith(f"{uri} is not a fake:// world")
        and "fake://NAME?state=FILE" in err["message"]
    )


@pytest.mark.parametrize("name", ["seed", "seed-spike", "java", "dense", "hyperv-dm", "esxi-limits"])
def test_builtin_scenarios_run_conserved(name: str) -> None:
    w = World(load_scenario(name), strict=True)
    w.advance(1800)
    assert w.accounting()["host"]["conserved"]


TWINS = """
name: twins
host: {physical: 64GiB}
vms:
  - {name: twin, memory: 8GiB, used: 2GiB}
  - {name: solo, memory: 8GiB, used: 2GiB}
  - {name: twin, memory: 4GiB, used: 1GiB}
"""


def test_duplicate_names_are_kept_with_distinct_ids(tmp_path: Path) -> None:
    """Real hypervisors allow two VMs with one name: the fake keeps both, so a script's handling
    of AmbiguousVMError can be tested on it."""
    path = tmp_path / "twins.yaml"
    path.write_text(TWINS)
    for uri in (f"fake://{path}", f"fake://{path}?state={tmp_path / 'w.db'}"):
        with hvballoon.connect(uri) as hv:
            vms = hv.list_vms()
            twins = [v for v in vms if v.name == "twin"]
            assert len(vms) == 3 and len(twins) == 2 and twins[0].id != twins[1].id
            with pytest.raises(hvballoon.AmbiguousVMError) as info:
                hv.set_target("twin", "6GiB")
            assert sorted(info.value.details["candidates"]) == sorted(v.id for v in twins)
            assert [s.configured_bytes for s in hv.get_stats(twins)] == [8 * GiB, 4 * GiB]
            hv.set_target(twins[1].id, "3GiB")
            by_id = {s.vm.id: s.target_bytes for s in hv.get_stats()}
            assert (by_id[twins[0].id], by_id[twins[1].id]) == (None, 3 * GiB)  # the one it set
    world = World(load_scenario(path))
    rec = record(world, every=10)
    world.advance(20)
    series = rec.to_data()["vms"]
    assert len(series) == 3 and len(world.accounting()["guests"]) == 3


def _persist(uri: str) -> str:
    """A persisted world made from ``uri``, with web01 moved to 8 GiB."""
    with hvballoon.connect(uri) as hv:
        hv.set_target("web01", "8GiB")
    return uri


@pytest.mark.parametrize(
    ("created", "reopened", "what"),
    [
        ("fake://seed?state={db}", "fake://java?state={db}", "scenario"),
        ("fake://seed?state={db}", "fake://seed?state={db}&flavor=esxi", "flavor"),
        ("fake://seed?flavor=esxi&state={db}", "fake://seed?state={db}&flavor=kvm", "flavor"),
        ("fake://seed?state={db}", "fake://seed?state={db}&seed=7", "seed"),
        ("fake://seed?state={db}&seed=7", "fake://seed?state={db}&seed=8", "seed"),
    ],
)
def test_a_persisted_world_refuses_a_uri_that_contradicts_it(
    tmp_path: Path, created: str, reopened: str, what: str
) -> None:
    db = tmp_path / "w.db"
    _persist(created.format(db=db))
    with pytest.raises(hvballoon.InvalidURIError) as info:
        hvballoon.connect(reopened.format(db=db))
    msg = str(info.value)
    assert what in msg and str(db) in msg
    assert info.value.details["mismatch"] and what in info.value.details["mismatch"]
    # the world is untouched, and the URI that matches it still opens it
    assert targets(created.format(db=db))["web01"] == 8 * GiB


def test_a_persisted_world_opens_with_what_it_was_created_with_or_less(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    _persist(f"fake://seed?flavor=esxi&seed=3&state={db}")
    # parameters left out mean "whatever the world is"; the same ones are accepted
    for uri in (f"fake://seed?state={db}", f"fake://seed?state={db}&flavor=esxi&seed=3"):
        with hvballoon.connect(uri) as hv:
            assert hv.backend.flavor == "esxi"
    # the world records what made it
    path = tmp_path / "mine.yaml"
    path.write_text(TWINS)
    _other = tmp_path / "o.db"
    with hvballoon.connect(f"fake://{path}?state={_other}") as hv:
        assert len(hv.list_vms()) == 3
    with pytest.raises(hvballoon.InvalidURIError, match="scenario"):
        hvballoon.connect(f"fake://seed?state={_other}")


def test_a_state_file_that_is_not_a_world_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    db.write_text("not a database at all " * 100)
    with pytest.raises(hvballoon.InvalidRequestError, match=str(db)):
        hvballoon.connect(f"fake://seed?state={db}")


def test_a_state_file_from_before_origins_were_recorded_is_checked_by_scenario_name(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "w.db"
    _persist(f"fake://seed?flavor=esxi&state={db}")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE origin")
    with pytest.raises(hvballoon.InvalidURIError, match="scenario java"):
        hvballoon.connect(f"fake://java?state={db}")
    with pytest.raises(hvballoon.InvalidURIError, match="flavor kvm"):
        hvballoon.connect(f"fake://seed?state={db}&flavor=kvm")
    with hvballoon.connect(f"fake://seed?state={db}") as hv:
        assert hv.backend.flavor == "esxi" and hv.get_stats(["web01"])[0].target_bytes == 8 * GiB


@pytest.mark.parametrize(
    ("option", "name", "problem"),
    [
        ("--plot", "/nonexistent/dir/x.png", "does not exist"),
        ("--csv", "/nonexistent/dir/x.csv", "does not exist"),
        ("--series", "/nonexistent/dir/x.json", "does not exist"),
        ("--plot", "{tmp}/x.xyz", "unsupported file type '.xyz'"),
        ("--plot", "{tmp}/noext", "unsupported file type"),
        ("--csv", "{tmp}", "is a directory"),
        ("--series", "{tmp}/file.txt/x.json", "not a directory"),
    ],
)
def test_simulate_checks_its_output_paths_before_simulating(
    tmp_path: Path, option: str, name: str, problem: str
) -> None:
    (tmp_path / "file.txt").write_text("a file, not a directory")
    path = name.format(tmp=tmp_path)
    # ten simulated years would take far longer than the helper's timeout: the refusal must
    # come before the simulation, not after it
    for extra in ([], ["--json"]):
        r = cli("simulate", "dense", "--duration", "3650d", option, path, *extra)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "Traceback" not in r.stderr
        text = json.loads(r.stdout)["message"] if extra else r.stderr
        assert option in text and problem in text, text


@pytest.mark.slow  # matplotlib's import and an SVG: about two seconds
def test_simulate_writes_plot_formats_by_extension(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    r = cli("simulate", "seed", "--duration", "10m", "--plot", str(tmp_path / "run.svg"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run.svg").read_text().lstrip().startswith("<?xml")


def test_simulate_says_when_its_last_round_ran_past_the_duration(tmp_path: Path) -> None:
    """A controller round is never cut short and its own calls take simulated time: a sweep
    timing out from 50 s on (5 s per call, retried) makes the round at 50 s end past a 51 s
    run. The summary covers what was simulated and says how far past the time asked it went;
    a run whose rounds end in time says it covered exactly that."""
    path = tmp_path / "slow.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: slowend
            host: {physical: 16GiB}
            vms:
              - {name: vm1, memory: 4GiB, used: 1GiB, stats_period: 1}
            faults:
              - {op: get_stats, kind: timeout, probability: 1.0, at: 50}
            """
        )
    )
    r = cli("simulate", str(path), "--duration", "51s", "--policy", "hvballoon", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["requested_seconds"] == 51 and summary["overrun_seconds"] > 0
    assert summary["duration_seconds"] == pytest.approx(51 + summary["overrun_seconds"])
    text = cli("simulate", str(path), "--duration", "51s", "--policy", "hvballoon").stdout
    assert "past the 51s asked" in text
    calm = json.loads(
        cli("simulate", str(path), "--duration", "45s", "--policy", "hvballoon", "--json").stdout
    )
    assert (calm["duration_seconds"], calm["requested_seconds"], calm["overrun_seconds"]) == (45, 45, 0)


def _grown_while_advancing(recorded: bool) -> int:
    """The bytes a world of 500 VMs holds more after 100 simulated seconds (sampled every
    second when ``recorded``)."""
    import tracemalloc

    from hvballoon.fake.scenario import HostSpec, Scenario, VMSpec

    vms = [VMSpec(name=f"vm{i:04d}", memory=4 * GiB, used=(1 + i % 3) * GiB) for i in range(500)]
    world = World(Scenario(name="many", seed=1, host=HostSpec(name="h", physical=4 * GiB * 500), vms=vms))
    if recorded:
        record(world, every=1.0)
    world.advance(10)
    tracemalloc.start()
    try:
        held = tracemalloc.get_traced_memory()[0]
        world.advance(100)
        return tracemalloc.get_traced_memory()[0] - held
    finally:
        tracemalloc.stop()


def test_a_recording_holds_a_value_in_eight_bytes_or_so() -> None:
    # each sample was a list of Python floats (32 bytes a value): an hour of 10,000 VMs held a
    # gigabyte, and hvballoon simulate took 2.3 GB
    values = 100 * 5 * 500  # samples, series, VMs
    per_value = (_grown_while_advancing(True) - _grown_while_advancing(False)) / values
    assert per_value < 12, per_value
