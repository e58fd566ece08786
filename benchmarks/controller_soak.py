"""The controller left running: what grows with rounds rather than with VMs.

The ``hvballoon`` policy's controller runs on a simulated KVM host of ``N`` VMs (the fleet of
``controller_round.py``: under pressure, so it moves targets and asks for quick rounds) for
``--rounds`` rounds of its service loop (:func:`~hvballoon.policy.simulated.simulated_round`: the
waits are simulated time), while the fleet churns — every 20 rounds two VMs are renamed and one is
deleted — and, from round ``--outage-at``, the hypervisor does not answer for an hour (each sweep
loses its connection). Every 100 rounds it records the process's resident memory (after a
collection) and what the controller and its policy hold: the policy's per-VM histories and their
queued figures, the cached configurations, the VMs the journal holds lowered and its change log,
the VMs missing from the sweeps (forgotten an hour after they left), the log records so far.

It reports those samples, the resident memory of the last sample over the one after the first
``--warm`` rounds (``rss_ratio``: 1 when nothing grows with rounds), and the log records written
during the hour of outage (``outage_records``, ``outage_warnings``: of level warning and up).
Run (it prints one JSON document)::

    python benchmarks/controller_soak.py [--vms 1000] [--rounds 3000] [--out result.json]
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _report import emit  # noqa: E402 - the benchmarks' own helper, beside this script
from controller_round import scenario  # noqa: E402 - the fleet of the round benchmark

from hvballoon.fake.world import World  # noqa: E402
from hvballoon.policy.simulated import simulated_controller, simulated_round  # noqa: E402

OUTAGE_SECONDS = 3600.0


class _Records(logging.Handler):
    """Counts hvballoon's log records, and those of level warning and up."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records = 0
        self.warnings = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        self.warnings += record.levelno >= logging.WARNING


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * 4096 / 2**20, 1)


def soak(n: int, rounds: int, outage_at: int, warm: int) -> dict[str, Any]:
    records = _Records()
    logger = logging.getLogger("hvballoon")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    world = World(scenario(n))
    samples: list[dict[str, Any]] = []
    outage: dict[str, int] = {}
    renamed = deleted = 0
    began = time.monotonic()
    try:
        with simulated_controller(world, "hvballoon") as ctl:
            until: float | None = None
            for r in range(rounds):
                if r and r % 20 == 0:
                    live = [g for g in world.guests.values() if not g.crashed]
                    for g in live[r % 7 : r % 7 + 2]:
                        world.rename(g.id, f"{g.name.split('-')[0]}-r{r}")
                        renamed += 1
                    world.vanish(live[-1 - r // 20].id)
                    deleted += 1
                if r == outage_at:
                    until = world.now + OUTAGE_SECONDS
                    world.faults.add(
                        op="get_stats", kind="connection_lost", probability=1.0, at=world.now, until=until
                    )
                    at_start = (records.records, records.warnings, r)
                _decisions, read, wait = simulated_round(world, ctl)
                world.advance(max(wait, 0.001))
                if until is not None and not outage and read and world.now >= until:
                    outage = {
                        "outage_records": records.records - at_start[0],
                        "outage_warnings": records.warnings - at_start[1],
                        "outage_rounds": r - at_start[2],
                    }
                if (r + 1) % 100 == 0:
                    gc.collect()
                    state = ctl.state
                    histories = getattr(state, "vms", {}) or {}
                    samples.append(
                        {
                            "round": r + 1,
                            "simulated_hours": round(world.now / 3600, 2),
                            "rss_mib": _rss_mib(),
                            "vms": sum(not g.crashed for g in world.guests.values()),
                            "histories": len(histories),
                            "queued_figures": sum(len(h.lows) + len(h.highs) for h in histories.values()),
                            "configs": len(ctl._configs),
                            "journal_lowered": len(ctl.journal.lowered()),
                            "journal_changes": len(ctl.journal.changes(limit=10**9)),
                            "missing": len(ctl._missing_since),
                            "log_records": records.records,
                        }
                    )
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    base = next((s for s in samples if s["round"] >= warm), samples[0])
    return {
        "vms": n,
        "rounds": rounds,
        "renamed": renamed,
        "deleted": deleted,
        "wall_seconds": round(time.monotonic() - began, 1),
        "rss_ratio": round(samples[-1]["rss_mib"] / base["rss_mib"], 3),
        **outage,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vms", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--outage-at", type=int, default=600)
    p.add_argument("--warm", type=int, default=500)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    result = soak(args.vms, args.rounds, args.outage_at, args.warm)
    return emit("controller_soak", args.out, **result)


if __name__ == "__main__":
    raise SystemExit(main())
