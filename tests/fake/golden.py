"""The simulator's golden runs: every built-in scenario in every flavour, driven through the fake
backend for a few simulated hours, reduced to digests of everything it produced.

A run exercises what the simulator does: balloon moves and configuration changes through the
backend adapter (some below what the guest can free: stalls, panics; some refused), workload
spikes into squeezed guests (guest swap, OOM kills), host reclaim in the flavour's way, every
kind of scripted fault, and a persistence round trip (bytes, and a SQLite store) after which the
restored world must go on exactly like the original. At each checkpoint it digests the full
state (every per-VM array, the workload walks, the clock, configurations, events, faults, the
random generator), what the adapter answered, and the recorder's series.

``tests/fake/golden.json`` holds the digests; :mod:`tests.fake.test_golden` fails on any drift.
Regenerate it only for a change that is meant to change the simulation (new physics, a fixed
bug), and say so in the commit::

    python -m tests.fake.golden --write

The digests depend on the floating-point results of numpy's transcendental functions, which
differ in the last bit between CPUs (SIMD implementations) and numpy versions; the file records
a fingerprint of them (:func:`numerics`) so that a mismatch there is told apart from a drift.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import hvballoon
from hvballoon.errors import HVBalloonError
from hvballoon.fake.faults import FAULT_KINDS
from hvballoon.fake.record import record
from hvballoon.fake.scenario import builtin_scenarios, load_scenario
from hvballoon.fake.store import LEGACY_STATE_NAMES, WorldStore, world_from_bytes, world_to_bytes
from hvballoon.fake.world import World
from hvballoon.models import VM, ConfigUpdate
from hvballoon.retry import RetryPolicy

GOLDEN = Path(__file__).with_name("golden.json")
FLAVORS = ("kvm", "esxi", "hyperv")
MiB = 1024**2
#: Targets given to the VMs in turn, as fractions of their memory (the first is below what
#: most guests can free: a stall, and on KVM without deflate-on-OOM a panic).
FRACTIONS = (0.01, 0.3, 0.55, 0.8)
#: What can happen; every one must happen in some run (see test_golden).
COVERAGE = (
    "oom",
    "panic",
    "vanished",
    "stall",
    "guest_swap",
    "host_swap",
    "compressed",
    "shared",
    "refused",
    "fault_error",
)


def numerics() -> str:
    """A digest of the floating-point functions the simulation's results depend on."""
    x = np.linspace(-1e5, 1e5, 4099)
    rng = np.random.Generator(np.random.PCG64(7))
    parts = (np.sin(x), np.cos(x), np.sqrt(np.abs(x)), rng.standard_normal(4099), np.mod(x, 7.3))
    return _digest(b"".join(p.tobytes() for p in parts))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def _json_digest(value: Any) -> str:
    return _digest(json.dumps(value, sort_keys=True, default=str).encode())


def state_arrays(w: World) -> dict[str, np.ndarray[Any, Any]]:
    """Every per-VM array of the world's state, by the names the golden file was recorded with
    (the short names of the first persisted format; an array added since, by its own name)."""
    assert set(LEGACY_STATE_NAMES) <= set(w.state.names())
    return {LEGACY_STATE_NAMES.get(name, name): getattr(w.state, name) for name in w.state.names()}


def walks(w: World) -> list[np.ndarray[Any, Any]]:
    """The workloads' random-walk positions (state too: they move with seeded draws)."""
    return [b.walk for b in w.workloads]


def world_digests(w: World) -> dict[str, str]:
    arrays = state_arrays(w)
    blob = b"".join(name.encode() + np.ascontiguousarray(arrays[name]).tobytes() for name in sorted(arrays))
    blob += b"".join(np.ascontiguousarray(walk).tobytes() for walk in walks(w))
    scalars = {
        "now": repr(w.now),
        "version": w.version,
        "host_free": w.host_free_bytes,
        "pressure": repr(w.pressure_bytes),
        "power": w.power,
        "configs": w.configs,
        "events": w.events,
        "faults": w.faults.to_data(),
        "rng": w.rng.bit_generator.state,
        "ids": w.ids,
        "labels": w.labels,
        "accounting": w.accounting(),
    }
    return {"state": _digest(blob), "world": _json_digest(scalars)}


class Run:
    """One scenario in one flavour, driven through the fake backend."""

    def __init__(self, scenario: str, flavor: str, tmp: Path) -> None:
        self.world = World(load_scenario(scenario), flavor=flavor)
        self.tmp = tmp
        self.flavor = flavor
        self.recorder = record(self.world, every=60)
        self.answers: list[Any] = []
        self.digests: dict[str, dict[str, str]] = {}
        self.seen: set[str] = set()
        self._connect()

    def _connect(self) -> None:
        self.session = hvballoon.connect("fake://", world=self.world, retry=RetryPolicy(max_attempts=1))
        self.backend: Any = self.session.backend
        if not hasattr(self, "_vms"):
            self._vms: list[VM] = self.backend.list_vms()

    def call(self, what: str, fn: Any, *args: Any) -> Any:
        """Call the adapter, keeping its answer (or its error's type, code and rule)."""
        try:
            out = fn(*args)
        except HVBalloonError as exc:
            rule = exc.details.get("rule") if isinstance(exc.details, dict) else None
            self.answers.append([what, type(exc).__name__, exc.code, rule])
            self.seen.add("fault_error" if exc.native_code in FAULT_KINDS else "refused")
            return None
        self.answers.append([what, _dump(out)])
        return out

    def vms(self) -> list[VM]:
        """The VMs as first listed (a vanished one stays: the adapter says it is gone)."""
        return self._vms

    def read_everything(self) -> None:
        self.call("get_stats", self.backend.get_stats)
        for vm in self.vms():
            self.call("get_config", self.backend.get_config, vm)
        self.call("get_host_stats", self.backend.get_host_stats)

    def checkpoint(self, name: str) -> None:
        self.read_everything()
        w = self.world
        parts = world_digests(w)
        parts["answers"] = _json_digest(self.answers)
        parts["series"] = _digest(self.recorder.to_json().encode())
        self.digests[name] = parts
        self.answers = []
        self._observe()

    def _observe(self) -> None:
        w, a = self.world, state_arrays(self.world)
        self.seen.update(e["kind"] for e in w.events)
        floor = a["kern"] + a["unf"]
        running = (a["running"] > 0) & (a["crashed"] == 0)
        checks = {
            # a balloon held at what the guest can free, short of its target
            "stall": bool((running & (a["tgt"] < floor) & (a["cur"] <= floor)).any()),
            "guest_swap": bool((a["swp"] > 0).any()),
            "host_swap": bool((a["hsw"] > 0).any()),
            "compressed": bool((a["comp"] > 0).any()),
            "shared": bool((a["shr"] > 0).any()),
        }
        self.seen.update(k for k, v in checks.items() if v)

    def advance(self, seconds: float, every: float) -> None:
        """Advance in slices, reading the stats between them (as a poller would)."""
        done = 0.0
        while done < seconds:
            step = min(every, seconds - done)
            self.world.advance(step)
            done += step
            self.call("get_stats", self.backend.get_stats)
            self._observe()

    def squeeze(self) -> None:
        for i, vm in enumerate(self.vms()):
            memory = self.world.guest(vm.id).memory_bytes
            target = int(memory * FRACTIONS[i % len(FRACTIONS)]) // (64 * MiB) * 64 * MiB
            self.call("apply_target", self.backend.apply_target, vm, target)

    def release(self) -> None:
        for vm in self.vms():
            g = self.world.guest(vm.id)
            self.call("apply_target", self.backend.apply_target, vm, g.memory_bytes)

    def reconfigure(self) -> None:
        vms = self.vms()
        b = self.backend
        changes: list[dict[str, Any]]
        if self.flavor == "kvm":
            changes = [
                {"stats_period_seconds": 5},
                {"stats_period_seconds": 0},
                {"maximum_bytes": 20 * 1024 * MiB},
            ]
        elif self.flavor == "esxi":
            changes = [
                {"limit_bytes": 4096 * MiB},
                {"limit_bytes": None},
                {"shares": 40000, "shares_level": "custom"},
                {"maximum_bytes": 8192 * MiB},
            ]
        else:
            changes = [
                {"priority": 95},
                {"buffer_percent": 40},
                {"maximum_bytes": 24 * 1024 * MiB},
                {"minimum_bytes": 256 * MiB},
            ]
        for vm, change in zip(vms, changes, strict=False):
            current = self.call("get_config", b.get_config, vm)
            if current is not None:
                self.call("apply_config", b.apply_config, vm, ConfigUpdate.from_fields(change), current)

    def faults(self) -> None:
        """Every kind of scripted fault, once, then the calls that meet them."""
        w, vms = self.world, self.vms()
        f = w.faults
        f.add(op="get_stats", kind="connection_lost")
        f.add(op="get_config", kind="timeout")
        f.add(op="list_vms", kind="session_expired")
        f.add(op="get_host_stats", kind="permission_denied")
        f.add(op="get_stats", kind="slow", latency=7.0, after=1)
        f.add(op="get_stats", kind="stats_stale", vm=vms[0].name, duration=120.0, after=2)
        f.add(op="set_target", kind="no_balloon_driver", vm=vms[1].name)
        f.add(op="get_config", kind="vm_vanished", vm=vms[-1].name, after=1)
        f.add(op="*", kind="timeout", probability=0.25, after=40, count=6)
        b = self.backend
        self.call("list_vms", b.list_vms)
        for _ in range(4):
            self.call("get_stats", b.get_stats)
        self.call("get_host_stats", b.get_host_stats)
        for vm in vms:
            self.call("get_config", b.get_config, vm)
        self.call("apply_target", b.apply_target, vms[1], self.world.guest(vms[1].id).memory_bytes // 2)

    def round_trip(self) -> None:
        """Through bytes and through a SQLite store: the restored world must go on exactly
        like the original; the run carries on with the restored one."""
        original = self.world
        restored = world_from_bytes(world_to_bytes(original))
        store = WorldStore(self.tmp / f"{self.flavor}.db", lambda: restored)
        with store.transaction() as w:
            w.advance(90)
        store.close()
        again = WorldStore(self.tmp / f"{self.flavor}.db", lambda: restored)  # loaded from the file
        with again.transaction(write=False) as stored:
            restored = world_from_bytes(world_to_bytes(stored))
        again.close()
        original.advance(90)
        assert world_digests(restored) == world_digests(original), "a restored world went another way"
        self.session.close()
        self.world = restored
        self.recorder = record(restored, every=60)
        self._connect()


def _dump(value: Any) -> Any:
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def run(scenario: str, flavor: str, tmp: Path) -> dict[str, Any]:
    """The digests of one golden run, by checkpoint, and what happened in it."""
    r = Run(scenario, flavor, tmp)
    r.checkpoint("start")
    r.advance(1800, every=300)
    r.checkpoint("warm")
    r.squeeze()
    r.advance(2 * 3600, every=600)
    r.checkpoint("squeezed")
    r.reconfigure()
    r.faults()
    r.advance(600, every=60)
    r.checkpoint("faults")
    r.round_trip()
    r.checkpoint("restored")
    r.release()
    r.advance(3600, every=900)
    r.checkpoint("released")
    r.session.close()
    return {"digests": r.digests, "seen": sorted(r.seen)}


def run_all() -> dict[str, Any]:
    out: dict[str, Any] = {"numerics": numerics(), "numpy": np.__version__, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in sorted(builtin_scenarios()):
            for flavor in FLAVORS:
                path = Path(tmp) / f"{scenario}-{flavor}"
                path.mkdir()
                out["runs"][f"{scenario}/{flavor}"] = run(scenario, flavor, path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the simulator's golden runs.")
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN.name}")
    args = parser.parse_args()
    data = run_all()
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if args.write:
        GOLDEN.write_text(text, "utf-8")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
