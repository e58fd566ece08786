"""``hvballoon autoballoon`` on a simulated hypervisor runs on the simulator's clock, so the same
scenario and options give the same run every time, retries included: a scenario whose sweeps
time out has its retries wait a jitter drawn from a fixed seed, as ``hvballoon simulate
--policy`` draws it, not one left to chance that moved every round after the first retry."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import invoke

_SCENARIO = """\
name: flaky
host: {physical: 32GiB}
vms:
  - {name: a, memory: 8GiB, used: 2GiB, cache: 1GiB, workload: {kind: random_walk, params: {step: 512MiB}}}
  - {name: b, memory: 8GiB, used: 3GiB, cache: 1GiB}
faults:
  - {op: get_stats, kind: timeout, rate: 0.5}
"""


def test_the_same_scenario_gives_the_same_run_twice(tmp_path: Path) -> None:
    path = tmp_path / "flaky.yaml"
    path.write_text(_SCENARIO)
    runs = []
    for n in range(2):
        journal = tmp_path / f"journal-{n}.db"
        r = invoke("autoballoon", f"fake://{path}", "--rounds", "8", "--json", "--journal", str(journal))
        assert r.returncode == 0, r.stderr
        runs.append([json.loads(line) for line in r.stdout.splitlines()])
    moments = [[d["at"] for d in run] for run in runs]
    # the retries' jittered waits moved the clock off whole seconds: they did happen
    assert any("." in m for m in moments[0]), moments[0]
    assert runs[0] == runs[1]
