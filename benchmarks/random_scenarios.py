"""The auto-balloon policies on random scenarios far from the built-ins, with invariant checks.

Each seed draws a scenario (:func:`hvballoon.fake.randomized.random_scenario`: any flavour, hosts
of about 1 GiB to 1.75 TiB, 1–285 VMs, odd sizes, VMs bigger than the host, every scripted
fault), what an operator does meanwhile (power changes, renames, deletions, stopped drivers:
:func:`~hvballoon.fake.randomized.operator_events`), per-VM settings (floor, ceiling,
self-managed, exclude) and, one time in ten, a dry run. The four policies run on it, each on a
fresh world from the same seed, for ``--minutes`` of simulated time, then a release
(:func:`hvballoon.policy.release.release`) gives back what was lowered. Checked on every run:

* ``untyped_error``: only typed errors (:class:`~hvballoon.errors.HVBalloonError`) reach the
  caller, never another exception;
* ``target_bounds``: every target the hypervisor was given is at most the VM's memory, on the
  VM's alignment, within its floor and ceiling; a lower by a policy that respects the guard rails
  is not below the use the controller saw; an excluded or self-managed VM is never lowered, nor
  one whose memory a VFIO device pins or that huge pages back;
* ``decisions_moves``: the VMs the hypervisor moved in a round are the VMs of the round's applied
  decisions, one to one (besides the VMs a release after too many failed rounds in a row gave
  back: :attr:`Round.released <hvballoon.policy.running.Round.released>`);
* ``dry_run``: a dry run moves nothing;
* ``release``: after the release every running VM holds at least the target it started with,
  or the release names it with the error that kept it (a Hyper-V host without the memory free).

Reported per policy: kills (guest OOM, panics, host OOM), guest swap-in, reclaim (GiB·h of
balloons) and the invariants broken; and the seeds where ``hvballoon`` killed more than
``static``, with the scenario's capacity class: ``whole`` (the host holds every VM at its full
size), ``demand`` (it holds the peak demand), ``over`` (it does not).

``--extreme`` (repeatable) pushes the draws to shapes the default ones reach rarely
(:class:`~hvballoon.fake.randomized.Extremes`: ``crowd``, ``tiny``, ``huge``, ``tight``; and
``busy``, 20–60 operator events); without it a seed draws the world it always did.

Run::

    python benchmarks/random_scenarios.py --seeds 150 --minutes 30 --jobs 2
    python benchmarks/random_scenarios.py --first 41 --seeds 1 --policy static --policy hvballoon
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _report import emit  # noqa: E402 - the benchmarks' own helper, beside this script

from hvballoon.errors import HVBalloonError  # noqa: E402
from hvballoon.fake.randomized import Extremes, operator_events, play, random_scenario  # noqa: E402
from hvballoon.fake.scenario import Scenario  # noqa: E402
from hvballoon.fake.waves import wave_facts  # noqa: E402
from hvballoon.fake.world import World  # noqa: E402
from hvballoon.policy.model import VMSettings  # noqa: E402
from hvballoon.policy.simulated import simulated_controller, simulated_round  # noqa: E402

GiB = 1024**3
POLICIES = ("static", "mom", "proxmox", "hvballoon")
BASELINES = ("mom", "proxmox")
KILLS = ("oom", "panic", "host_oom", "crashed")
#: the shapes ``--extreme`` pushes the draws to (:class:`~hvballoon.fake.randomized.Extremes`) and
#: ``busy``, 20–60 operator events a run
EXTREMES = ("crowd", "tiny", "huge", "tight", "busy")


@dataclass
class Run:
    seed: int
    policy: str
    flavor: str = ""
    vms: int = 0
    capacity: str = ""
    dry_run: bool = False
    kills: dict[str, int] = field(default_factory=dict)
    guest_swap_in_gib: float = 0.0
    reclaimed_gib_hours: float = 0.0
    changes: int = 0
    violations: list[str] = field(default_factory=list)
    stopped: str | None = None
    seconds: float = 0.0
    #: kills per VM an operator's ceiling (a drawn setting) holds below its size
    capped_kills: dict[str, int] = field(default_factory=dict)

    @property
    def killed(self) -> int:
        return sum(self.kills.values())


def capacity_class(spec: Scenario, *, hours: float) -> str:
    """``whole``: the host holds every VM at its full size (and its reserve); ``demand``: it
    holds the VMs' peak demand; ``over``: it does not."""
    facts = wave_facts(spec, hours=hours)
    h = spec.host
    from hvballoon.fake.world import FLAVOR_PHYSICS

    overheads = h.overhead + len(spec.vms) * FLAVOR_PHYSICS[spec.flavor].vm_overhead
    room = h.physical - h.reserve - overheads
    if sum(v.memory for v in spec.vms) <= room:
        return "whole"
    return "demand" if facts.peak_demand_bytes <= room else "over"


def draw_settings(spec: Scenario, seed: int) -> tuple[dict[str, VMSettings], bool]:
    """Per-VM settings (by name) and whether the run is a dry one, drawn from ``seed``."""
    rng = random.Random(f"settings-{seed}")
    vms: dict[str, VMSettings] = {}
    for v in spec.vms:
        if rng.random() >= 0.15:
            continue
        pick = rng.choice(("floor", "ceiling", "both", "self_managed", "exclude"))
        floor = int(v.memory * rng.uniform(0.1, 1.2)) if pick in ("floor", "both") else None
        ceiling = int(v.memory * rng.uniform(0.2, 1.1)) if pick in ("ceiling", "both") else None
        if floor is not None and ceiling is not None and floor > ceiling:
            floor, ceiling = ceiling, floor
        vms[v.name] = VMSettings(
            floor=floor, ceiling=ceiling, self_managed=pick == "self_managed", exclude=pick == "exclude"
        )
    return vms, rng.random() < 0.1


class _Moves:
    """Every change of a VM's memory the world was asked for (not the stats period)."""

    def __init__(self, world: World) -> None:
        self.moves: list[tuple[str, str, dict[str, Any]]] = []
        set_target, set_config = world.set_target, world.set_config

        def on_target(guest_id: str, target_bytes: int) -> None:
            self.moves.append((guest_id, "target", {"target_bytes": target_bytes}))
            set_target(guest_id, target_bytes)

        def on_config(guest_id: str, update: Any) -> None:
            fields = {
                k: v for k, v in update.model_dump(exclude_unset=True).items() if k != "stats_period_seconds"
            }
            if fields:
                self.moves.append((guest_id, "config", fields))
            set_config(guest_id, update)

        world.set_target = on_target  # type: ignore[method-assign]
        world.set_config = on_config  # type: ignore[method-assign]

    def take(self) -> list[tuple[str, str, dict[str, Any]]]:
        out, self.moves = self.moves, []
        return out


def run_one(
    seed: int,
    policy: str,
    *,
    minutes: float,
    policy_options: dict[str, Any] | None = None,
    scenario: Scenario | None = None,
    hugepages: bool = False,
    idle_held: bool = False,
    reserved: bool = False,
    extremes: tuple[str, ...] = (),
) -> Run:
    """``policy`` on seed ``seed``'s scenario (or ``scenario``, one cut down from it: the seed
    still draws the events and settings, for the VMs it kept), pushed to the ``extremes`` named
    (:data:`EXTREMES`); ``hugepages``, ``idle_held`` and ``reserved``: drawn with
    :func:`random_scenario`'s options of those names."""
    started = time.perf_counter()
    shape = Extremes(**{name: True for name in extremes if name != "busy"})
    spec = scenario or random_scenario(
        seed,
        hours=minutes / 60,
        hugepages=hugepages,
        idle_held=idle_held,
        reserved=reserved,
        extremes=shape,
    )
    seconds = minutes * 60.0
    kept = {v.id for v in spec.vms}
    drawn = random_scenario(seed, extremes=shape)
    events = [
        e
        for e in operator_events(drawn, seed=seed, seconds=seconds, busy="busy" in extremes)
        if e.vm_id in kept
    ]
    hints, dry_run = draw_settings(drawn, seed)
    hints = {name: h for name, h in hints.items() if any(v.name == name for v in spec.vms)}
    run = Run(seed, policy, spec.flavor, len(spec.vms), capacity_class(spec, hours=minutes / 60), dry_run)
    try:
        _drive(run, spec, policy, events, hints, seconds, policy_options or {})
    except HVBalloonError as e:  # typed: allowed, but the run ends there
        run.stopped = f"{type(e).__name__}: {e.message[:200]}"
    except Exception:  # the invariant: nothing untyped reaches the caller
        run.violations.append("untyped_error: " + traceback.format_exc(limit=-3).replace("\n", " | ")[-600:])
    run.seconds = time.perf_counter() - started
    return run


def _drive(
    run: Run,
    spec: Scenario,
    policy: str,
    events: list[Any],
    hints: dict[str, VMSettings],
    seconds: float,
    options: dict[str, Any],
) -> None:
    from hvballoon.policy.journal import Journal
    from hvballoon.policy.release import release

    world = World(spec)
    start = {g.id: g.target_bytes for g in world.guests.values()}
    moves = _Moves(world)
    by_name = {g.id: g.name for g in world.guests.values()}  # the names the settings were given for
    played = 0
    with (
        warnings.catch_warnings(),
        Journal.open(None, uri="fake://") as journal,
        simulated_controller(
            world,
            policy,
            dry_run=run.dry_run,
            journal=journal,
            respect_guard_rails=policy not in BASELINES,
            policy_options=options if policy == "hvballoon" else {},
            vms=hints,
        ) as ctl,
    ):
        warnings.simplefilter("ignore")
        hv = ctl.hv
        while world.now < seconds - 1e-9:
            decisions, _read, wait = simulated_round(world, ctl)
            guarded = policy not in BASELINES
            moved = moves.take()
            # a release after too many failed rounds in a row gives VMs back without a decision
            last = ctl.last_round
            released = last.released if last is not None else None
            given_back = [r.vm_id for r in released.vms if r.action == "released"] if released else []
            for vm_id in given_back:  # its own move, once (a decision may move the VM after it)
                k = next((k for k, m in enumerate(moved) if m[0] == vm_id), None)
                if k is not None:
                    del moved[k]
            _check_round(run, world, hv, decisions, moved, hints, by_name, guarded=guarded)
            dt = max(0.0, min(wait, seconds - world.now))
            ballooned = sum(g.ballooned_bytes for g in world.guests.values())
            run.reclaimed_gib_hours += ballooned * dt / (GiB * 3600)
            until = world.now + dt
            # the operator acts at its own times, not at the controller's rounds (every policy
            # meets the same events at the same moments)
            while played < len(events) and events[played].at <= until:
                world.advance(max(0.0, events[played].at - world.now))
                played = play(world, events, played)
            world.advance(max(0.0, until - world.now))
            moves.take()  # what the operator changed is not the controller's
        # a VM an operator's ceiling holds below its size: what kills it is a setting `static`
        # never applies (it never moves), told apart in the comparison with it
        capped = {
            g.name
            for g in world.guests.values()
            if (h := hints.get(g.name)) is not None and h.ceiling is not None and h.ceiling < g.memory_bytes
        }
        for e in world.events:
            if e["kind"] in KILLS:
                run.kills[e["kind"]] = run.kills.get(e["kind"], 0) + 1
                if e["vm"] in capped:
                    run.capped_kills[e["vm"]] = run.capped_kills.get(e["vm"], 0) + 1
        run.guest_swap_in_gib = sum(g.swap_in_bytes for g in world.guests.values()) / GiB
        report = release(hv, journal=journal)
        released = moves.take()
        if run.dry_run and released:
            run.violations.append(f"dry_run: the release moved {len(released)} VMs")
        told = {r.vm_id for r in report.vms if r.action == "error"}  # what it could not, it says
        for g in world.guests.values():
            if g.running and g.target_bytes < start[g.id] and g.id not in told:
                run.violations.append(
                    f"release: {g.label} holds {g.target_bytes} after the release, below its start "
                    f"{start[g.id]}, and the release does not say why"
                )


def _check_round(
    run: Run,
    world: World,
    hv: Any,
    decisions: list[Any],
    moved: list[tuple[str, str, dict[str, Any]]],
    hints: dict[str, VMSettings],
    by_name: dict[str, str],
    *,
    guarded: bool,
) -> None:
    applied = {d.vm_id: d for d in decisions if d.applied and d.action in ("raise", "lower")}
    run.changes += len(applied)
    if run.dry_run:
        if moved:
            run.violations.append(f"dry_run: {len(moved)} moves at {world.now:.0f} s")
        return
    moved_ids = {vm_id for vm_id, _, _ in moved}
    if moved_ids != set(applied):
        run.violations.append(
            f"decisions_moves at {world.now:.0f} s: moved {sorted(moved_ids)}, decided {sorted(applied)}"
        )
    for vm_id, what, fields in moved:
        g = world.guests[vm_id]
        d = applied.get(vm_id)
        value = fields.get("target_bytes", fields.get("limit_bytes", fields.get("maximum_bytes")))
        if value is None:
            continue
        hint = hints.get(by_name[vm_id])
        problems = []
        if value > g.memory_bytes:
            problems.append(f"above the VM's memory {g.memory_bytes}")
        try:
            alignment = hv.vm_capabilities(vm_id).alignment_bytes
        except HVBalloonError:
            alignment = 1
        if value % alignment:
            problems.append(f"not a multiple of {alignment}")
        lowering = d is not None and d.action == "lower"
        if hint is not None and lowering and (hint.exclude or hint.self_managed):
            problems.append("lowered although excluded or self-managed")
        if lowering and world.configs[g.index].get("vfio_devices"):
            problems.append("lowered although its memory is pinned (VFIO): its balloon frees nothing")
        if lowering and world.configs[g.index].get("hugepages"):
            problems.append("lowered although huge pages back its memory: its balloon frees nothing")
        if hint is not None and lowering and hint.floor is not None and value < hint.floor:
            problems.append(f"below its floor {hint.floor}")
        raising = d is not None and d.action == "raise"
        if (
            hint is not None
            and raising
            and hint.ceiling is not None
            and value > max(hint.ceiling, (d.before_bytes if d is not None else None) or 0)
        ):
            problems.append(f"raised above its ceiling {hint.ceiling}")
        used = d.inputs.get("used_bytes") if d is not None else None
        if guarded and lowering and isinstance(used, int) and value < used:
            problems.append(f"lowered below the use seen, {used} (guard rails)")
        if problems:
            run.violations.append(
                f"target_bounds: {g.label} {what} {value} at {world.now:.0f} s: {'; '.join(problems)}"
            )


def _job(args: tuple[int, str, float, dict[str, Any], dict[str, Any]]) -> Run:
    seed, policy, minutes, options, draws = args
    return run_one(seed, policy, minutes=minutes, policy_options=options, **draws)


def probe(
    seeds: range | list[int],
    *,
    minutes: float,
    policies: tuple[str, ...] = POLICIES,
    jobs: int = 1,
    policy_options: dict[str, Any] | None = None,
    hugepages: bool = False,
    idle_held: bool = False,
    reserved: bool = False,
    flavor: str | None = None,
    extremes: tuple[str, ...] = (),
) -> list[Run]:
    """Every policy of ``policies`` on every seed of ``seeds`` (only those whose world is of
    ``flavor``, when given)."""
    if flavor is not None:
        seeds = [s for s in seeds if random_scenario(s).flavor == flavor]
    draws = {"hugepages": hugepages, "idle_held": idle_held, "reserved": reserved, "extremes": extremes}
    work = [(s, p, minutes, dict(policy_options or {}), draws) for s in seeds for p in policies]
    if jobs <= 1:
        return [_job(w) for w in work]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_job, work, chunksize=1))


def worse_than_static(runs: list[Run]) -> list[dict[str, Any]]:
    """The seeds where ``hvballoon`` killed more than ``static`` (with how many of its kills were
    of VMs an operator's ceiling holds below their size, a setting ``static`` never applies)."""
    by: dict[int, dict[str, Run]] = {}
    for r in runs:
        by.setdefault(r.seed, {})[r.policy] = r
    out = []
    for seed, rs in sorted(by.items()):
        ours, static = rs.get("hvballoon"), rs.get("static")
        if ours is not None and static is not None and ours.killed > static.killed:
            out.append({
                "seed": seed, "flavor": ours.flavor, "vms": ours.vms, "capacity": ours.capacity,
                "hvballoon": ours.kills, "static": static.kills,
                # of ours, the kills beyond static's of VMs an operator's ceiling holds below their size
                "hvballoon_more_on_capped_vms": sum(
                    max(0, n - static.capped_kills.get(vm, 0)) for vm, n in ours.capped_kills.items()
                ),
            })  # fmt: skip
    return out


def summary(runs: list[Run]) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for policy in POLICIES:
        rs = [r for r in runs if r.policy == policy]
        if not rs:
            continue
        kinds: dict[str, int] = {}
        for r in rs:
            for k, n in r.kills.items():
                kinds[k] = kinds.get(k, 0) + n
        per[policy] = {
            "runs": len(rs),
            "kills": sum(r.killed for r in rs),
            "runs_with_kills": sum(1 for r in rs if r.killed),
            "kills_by_kind": kinds,
            "guest_swap_in_gib": round(sum(r.guest_swap_in_gib for r in rs), 2),
            "reclaimed_gib_hours": round(sum(r.reclaimed_gib_hours for r in rs), 2),
            "changes": sum(r.changes for r in rs),
            "violations": sum(len(r.violations) for r in rs),
            "stopped_by_typed_error": sum(1 for r in rs if r.stopped),
        }
    return per


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds (default 100)")
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--minutes", type=float, default=30.0, help="simulated minutes per run (default 30)")
    parser.add_argument("--policy", action="append", choices=POLICIES, help="only this policy (repeatable)")
    parser.add_argument(
        "--policy-option", action="append", default=[], metavar="KEY=VALUE", help="an hvballoon policy option"
    )
    parser.add_argument(
        "--hugepages",
        action="store_true",
        help="KVM worlds draw VMs backed by huge pages (random_scenario's option)",
    )
    parser.add_argument(
        "--extreme",
        action="append",
        default=[],
        choices=EXTREMES,
        help="push the draws to this shape (repeatable): crowd 200-400 VMs, tiny VMs of 256 MiB, a huge "
        "one of 2 TiB, a tight host with almost no free memory at the start, busy 20-60 operator events",
    )
    parser.add_argument(
        "--idle-held",
        action="store_true",
        help="ESXi worlds draw guests holding memory they do not touch (random_scenario's option)",
    )
    parser.add_argument(
        "--reserved",
        action="store_true",
        help="ESXi worlds draw VMs reserving 85-100%% of their memory (random_scenario's option)",
    )
    parser.add_argument(
        "--flavor", choices=("kvm", "esxi", "hyperv"), help="only the seeds whose world is of this flavour"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (processes; same figures)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--runs", action="store_true", help="include every run in the JSON")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.seeds < 1 or args.minutes <= 0:
        parser.error("--jobs and --seeds are at least 1, --minutes above 0")
    from hvballoon.policy.base import policy_options
    from hvballoon.policy.options import parse_option_pairs

    try:
        options = policy_options("hvballoon", parse_option_pairs(args.policy_option))
    except HVBalloonError as e:
        parser.error(f"--policy-option: {e.message}")
    began = time.perf_counter()
    runs = probe(
        range(args.first, args.first + args.seeds),
        minutes=args.minutes,
        policies=tuple(args.policy or POLICIES),
        jobs=args.jobs,
        policy_options=options,
        hugepages=args.hugepages,
        extremes=tuple(sorted(set(args.extreme))),
        idle_held=args.idle_held,
        reserved=args.reserved,
        flavor=args.flavor,
    )
    violations = [{"seed": r.seed, "policy": r.policy, "violation": v} for r in runs for v in r.violations]
    fields: dict[str, Any] = {
        "seeds": [args.first, args.first + args.seeds - 1],
        "minutes": args.minutes,
        "policy_options": {k: str(v) for k, v in options.items()},
        "hugepages": args.hugepages,
        "extremes": sorted(set(args.extreme)),
        "idle_held": args.idle_held,
        "reserved": args.reserved,
        "flavor": args.flavor,
        "capacity": {c: len({r.seed for r in runs if r.capacity == c}) for c in ("whole", "demand", "over")},
        "flavors": {f: len({r.seed for r in runs if r.flavor == f}) for f in ("kvm", "esxi", "hyperv")},
        "dry_runs": len({r.seed for r in runs if r.dry_run}),
        "policies": summary(runs),
        "hvballoon_kills_more_than_static": worse_than_static(runs),
        "violations": violations,
        "wall_seconds": round(time.perf_counter() - began, 1),
    }
    if args.runs:
        fields["runs"] = [asdict(r) for r in runs]
    return emit("random_scenarios", args.out, **fields)


if __name__ == "__main__":
    sys.exit(main())
