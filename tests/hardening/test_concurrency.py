"""Concurrency: threads sharing one session (fake, ESXi and Hyper-V peers), and processes sharing
one persisted fake world, under load. What is thread-safe is written down in docs/reliability.md."""

from __future__ import annotations

import multiprocessing
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon.errors import HVBalloonError
from hvballoon.retry import RetryPolicy
from tests.support.require import require

GiB = 1024**3
THREADS = 8


def hammer(hv: Any, rounds: int, work: Callable[[Any, int, int], None]) -> list[BaseException]:
    """``THREADS`` threads run ``work(hv, thread, round)``; returns what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def run(i: int) -> None:
        start.wait()
        for r in range(rounds):
            try:
                work(hv, i, r)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def mixed(names: list[str]) -> Callable[[Any, int, int], None]:
    def work(hv: Any, i: int, r: int) -> None:
        name = names[i % len(names)]
        if r % 3 == 0:
            assert len(hv.get_stats()) == len(hv.list_vms())
        elif r % 3 == 1:
            (st,) = hv.get_stats([name])
            assert st.vm.name == name
        else:
            hv.set_config(name, priority=(i * 7 + r) % 100 + 1)
            assert hv.get_config(name).priority is not None

    return work


def test_threads_share_a_fake_session() -> None:
    with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        names = [v.name for v in hv.list_vms()]
        errors = hammer(hv, 60, mixed(names))
        assert not errors, errors[:3]
    with hvballoon.connect("fake://seed") as hv:
        # targets from many threads: each VM ends at the last target one of its threads set
        last: dict[str, int] = {}
        lock = threading.Lock()

        def targets(hv: Any, i: int, r: int) -> None:
            name = names[i % len(names)]
            size = (10 + (r % 4)) * GiB
            with lock:  # the session is safe; the bookkeeping of what was last set needs a lock
                hv.set_target(name, size, force=True)
                last[name] = size

        assert not hammer(hv, 20, targets)
        for name, size in last.items():
            assert hv.get_stats([name])[0].target_bytes == size


@pytest.mark.peer
def test_threads_share_an_esxi_session() -> None:
    from tests.support.vsphere.fleet import FLEET
    from tests.support.vsphere.harness import VcsimServer, prerequisites

    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))
    with VcsimServer(FLEET, https=True) as peer:
        uri = f"esxi://{peer.username}@{peer.host}:{peer.port}"
        with hvballoon.connect(uri, password=peer.password, ca_file=str(peer.ca_file)) as hv:

            def work(hv: Any, i: int, r: int) -> None:
                name = ["web01", "web02", "db01"][i % 3]
                if r % 2:
                    assert len(hv.get_stats()) == len(FLEET)
                else:
                    hv.set_config(name, shares=1000 + i * 10 + r)

            errors = hammer(hv, 8, work)
    assert not errors, errors[:3]


@pytest.mark.peer
def test_threads_share_a_hyperv_session() -> None:
    from tests.support.hyperv.peer import start_peer

    gen = start_peer("basic", False)
    peer = next(gen)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hv = peer.connect(timeout=20.0, retry=RetryPolicy(max_attempts=1))
        with hv:
            names = [v.name for v in hv.list_vms()]
            errors = hammer(hv, 5, mixed(names))
            assert not errors, errors[:3]
            assert hv.backend.runner.counts["shells_opened"] == 1  # type: ignore[attr-defined]
    finally:
        for _ in gen:
            pass


def _worker(uri: str, vm: str, rounds: int, out: Any) -> None:
    try:
        with hvballoon.connect(uri, retry=RetryPolicy(max_attempts=5, initial_delay=0.01)) as hv:
            for r in range(rounds):
                hv.set_config(vm, stats_period=(r % 50) + 1)
                hv.get_stats()
        out.put((vm, "ok", (rounds - 1) % 50 + 1))
    except HVBalloonError as exc:
        out.put((vm, exc.code, None))
    except BaseException as exc:
        out.put((vm, f"native {type(exc).__name__}: {exc}", None))


@pytest.mark.slow  # several interpreters
def test_processes_share_a_persisted_world_under_load(tmp_path: Path) -> None:
    uri = f"fake://seed?state={tmp_path / 'world.db'}"
    with hvballoon.connect(uri) as hv:
        names = [v.name for v in hv.list_vms()][:6]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(uri, name, 25, out)) for name in names]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert all(r[1] == "ok" for r in results), results
    with hvballoon.connect(uri) as hv:
        for vm, _, period in results:
            assert hv.get_config(vm).stats_period_seconds == period  # no lost update
