"""``hvballoon autoballoon`` killed (SIGKILL) while it controls real KVM guests, then
``hvballoon release`` gives every guest it lowered its memory back — each step its own process.

The guests are the tiny real Linux guests of ``tests/support/kvm_guest`` (a real virtio-balloon
driver, libvirt's embedded QEMU driver). That driver binds a root to one process for the life of
the process, so this test never opens the root itself: a helper process boots the guests and
exits (the QEMUs run on; the next process to open the root finds them), then the controller, the
release and the checks each open it in turn. The root is this test's own
(``.cache/kvm-release-root``, kept between runs for QEMU's capability cache).

The controller runs the ``mom`` policy on a host said to have 500 MiB (``--host-memory``): the
two 512 MiB guests then put it under pressure, and MoM shrinks both, 5 % a round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hvballoon.policy.journal import Journal
from tests.support.cli import Running, hvballoon_cmd
from tests.support.require import require

pytestmark = [pytest.mark.peer, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / ".cache" / "kvm-release-root"
URI = f"qemu:///embed?root={ROOT}"
GUESTS = ("hvb-rel-a", "hvb-rel-b")
MiB = 2**20

HELPER = """
import sys
from pathlib import Path
from tests.support.kvm_guest.harness import KvmGuestHarness

harness = KvmGuestHarness(root=Path(sys.argv[1]))
harness.open()  # destroys what an earlier run left
if sys.argv[2] == "boot":
    for name in sys.argv[3:]:
        harness.boot(name, 512, wait=True, timeout=120, stats_period=2)
    harness.detach()
else:
    harness.close()
"""


def helper(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(
        [sys.executable, "-c", HELPER, str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]


def current(tmp_path: Path) -> dict[str, int]:
    """Each guest's memory now (the balloon's ``actual``), read by its own process."""
    r = subprocess.run(
        hvballoon_cmd("stats", URI, *GUESTS, "--json"), capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    return {s["vm"]["name"]: s["current_bytes"] for s in json.loads(r.stdout)}


@pytest.fixture
def guests() -> Iterator[None]:
    from tests.support.kvm_guest.harness import prerequisites

    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))
    ROOT.mkdir(parents=True, exist_ok=True)
    helper("boot", *GUESTS)
    try:
        yield
    finally:
        helper("clean")


def test_release_after_sigkill_gives_every_lowered_guest_its_memory_back(
    guests: None, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.db"
    assert current(tmp_path) == dict.fromkeys(GUESTS, 512 * MiB)
    ctl = Running(
        "autoballoon", URI, "--policy", "mom", "--host-memory", "500MiB", "--interval", "1s",
        "--journal", str(journal), "--json", "--timeout", "60s",
    )  # fmt: skip
    try:

        def both_lowered(r: Running) -> bool:
            rows = [json.loads(line) for line in r.stdout]
            return {d["vm"] for d in rows if d["action"] == "lower" and d["applied"]} == set(GUESTS)

        ctl.wait_for(both_lowered, timeout=240)
    finally:
        ctl.kill()  # SIGKILL: no round finished, nothing released, no summary
    assert ctl.proc.returncode == -9
    lowered = current(tmp_path)
    assert all(v < 512 * MiB for v in lowered.values()), lowered
    with Journal.open(journal, uri=URI, lock=False) as j:
        entries = {e.vm: e for e in j.lowered()}
    assert set(entries) == set(GUESTS)
    assert all(e.before_bytes == 512 * MiB for e in entries.values())

    r = subprocess.run(
        hvballoon_cmd("release", URI, "--journal", str(journal), "--json", "--timeout", "60s"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert {v["vm"]: (v["action"], v["to_bytes"]) for v in report["vms"]} == {
        name: ("released", 512 * MiB) for name in GUESTS
    }
    # the balloons deflate: each guest has its 512 MiB again
    deadline = time.monotonic() + 60
    while (now := current(tmp_path)) != dict.fromkeys(GUESTS, 512 * MiB):
        assert time.monotonic() < deadline, now
        time.sleep(1)
    with Journal.open(journal, uri=URI, lock=False) as j:
        assert j.lowered() == []
