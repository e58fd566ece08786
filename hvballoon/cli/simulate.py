"""``hvballoon simulate`` and ``hvballoon fake advance``: the simulator from a shell."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hvballoon._uri import parse_uri, redact_uri
from hvballoon.cli.common import (
    NegativeValuesCommand,
    OptionsCommand,
    console,
    handle_errors,
    interrupted,
    json_option,
    table,
)
from hvballoon.errors import BackendNotInstalledError, InvalidRequestError
from hvballoon.outputs import AdvanceResult, SimulationSummary
from hvballoon.units import format_duration, format_size, parse_duration

if TYPE_CHECKING:
    from hvballoon.fake.record import Recorder

__all__ = ["fake_group", "simulate_cmd"]

_PROGRESS_STEPS = 20_000  # show a progress bar above this many simulated steps (on a terminal)
#: the most simulation steps one command runs (the longest duration, ten years, at the default
#: 1-s step): a step mistyped by orders of magnitude is refused, not left running for ever
MAX_STEPS = 3650 * 86_400
#: the most points a recording keeps
MAX_RECORDS = 1_000_000


def _check_span(seconds: float, step: float, what: str) -> None:
    """Refuse a simulation of more than :data:`MAX_STEPS` steps of ``step``."""
    if seconds / step > MAX_STEPS:
        raise InvalidRequestError(
            f"{what} {format_duration(seconds)} is {seconds / step:.3g} simulation steps of {step:g} s; "
            f"at most {MAX_STEPS:,} are run at once"
        )


#: What --plot can draw, by the file's extension (matplotlib's formats that need nothing more).
PLOT_FORMATS = (".png", ".svg", ".pdf")


def output_path(value: str | None, option: str, suffixes: tuple[str, ...] = ()) -> Path | None:
    """Check an output file before any work is done: its directory exists and is writable, it
    is not a directory, and (when ``suffixes`` are given) its extension is one of them."""
    if value is None:
        return None
    path = Path(value).expanduser()

    def bad(why: str) -> InvalidRequestError:
        return InvalidRequestError(f"{option} {value!r}: {why}", details={"option": option, "path": value})

    if suffixes and path.suffix.lower() not in suffixes:
        shown = repr(path.suffix) if path.suffix else "(no extension)"
        raise bad(f"unsupported file type {shown}; use {', '.join(suffixes)}")
    parent = path.parent
    if not parent.exists():
        raise bad(f"the directory {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise bad(f"{str(parent)!r} is not a directory")
    if path.is_dir():
        raise bad("is a directory; name a file")
    writable = os.access(path, os.W_OK) if path.exists() else os.access(parent, os.W_OK | os.X_OK)
    if not writable:
        raise bad("cannot be written (permission denied)")
    return path


def clock_seconds(seconds: float, step: float) -> float:
    """A span of the world's clock as it is reported: its sum of steps in floating point rounded
    to the clock's precision (the step's decimals, and at least the microsecond the world's clock
    snaps to), so that N steps of S seconds report N*S — ten steps of 0.1 s are 1.0, not
    0.9999999999999999.

    >>> clock_seconds(sum([0.1] * 10), 0.1), clock_seconds(sum([0.1] * 3), 0.1)
    (1.0, 0.3)
    >>> clock_seconds(0.35, 0.1), clock_seconds(0.25, 0.125)
    (0.35, 0.25)
    """
    from decimal import Decimal

    exponent = Decimal(repr(float(step))).as_tuple().exponent
    places = max(6, -exponent if isinstance(exponent, int) else 0)
    return round(seconds, places) + 0.0  # + 0.0: never a -0.0


def summarize(world: Any, rec: Recorder, data: dict[str, Any]) -> dict[str, Any]:
    """Headline figures of a run recorded by ``rec`` (``data``: :func:`run_simulation`'s)."""
    extremes = rec.extremes()
    vms = {}
    for i, g in enumerate(world.guests.values()):  # in the recording's order
        vms[g.label] = {
            "configured_bytes": g.memory_bytes,
            "peak_demand_bytes": extremes["demand_bytes"]["max"][i],
            "min_current_bytes": extremes["current_bytes"]["min"][i],
            "peak_guest_swap_bytes": extremes["guest_swap_bytes"]["max"][i],
            "oom_events": g.oom_events,
            "power_state": g.power_state,
        }
    host = data["host"]
    return {
        "scenario": world.scenario.name,
        "flavor": world.flavor,
        "seed": world.seed,
        "duration_seconds": data.get("simulated_seconds", clock_seconds(world.now, world.step)),
        "requested_seconds": data.get("requested_seconds"),
        "overrun_seconds": data.get("overrun_seconds", 0.0),
        "step_seconds": world.step,
        "host": {
            "physical_bytes": world.host.physical_bytes,
            "promised_bytes": world.promised_bytes,
            "min_free_bytes": min(host["free_bytes"]),
            "peak_reclaimed_bytes": max(host["reclaimed_bytes"]),
        },
        "vms": vms,
        "events": list(world.events),
        "interrupted": bool(data.get("interrupted")),
        "rounds": data.get("rounds"),
        "failed_rounds": data.get("failed_rounds"),
    }


def run_simulation(
    world: Any,
    rec: Recorder,
    duration: float,
    *,
    policy: str | None = None,
    interval: float = 10.0,
    progress: bool = False,
    policy_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``world`` for ``duration`` seconds, recorded by ``rec``; with ``policy``, the
    auto-balloon controller acts every ``interval`` seconds through the fake backend (sooner
    while the policy asks for it, see :attr:`Controller.next_round_seconds
    <hvballoon.policy.Controller.next_round_seconds>`), the policy built with ``policy_options``
    (:attr:`ControllerSettings.policy_options <hvballoon.policy.ControllerSettings.policy_options>`).

    Ctrl-C stops the run between two slices of simulated time (never in the middle of one, so
    the world and its recording stay whole): the data then covers the part simulated and says
    ``"interrupted": True``.

    A controller round cannot be cut short: its own calls take simulated time (a call that
    times out, the retries' waits), so the last one may end past ``duration``. The data says
    what it covers: ``simulated_seconds`` (from the run's start to where the world's clock
    stopped), ``requested_seconds`` and ``overrun_seconds`` (how far past the duration it went).
    """
    stack = contextlib.ExitStack()
    controller = None
    if policy is not None:
        from hvballoon.policy.simulated import simulated_controller, simulated_round

        controller = stack.enter_context(
            simulated_controller(
                world, policy, interval_seconds=interval, policy_options=policy_options or {}
            )
        )
    # slices of at most an hour of simulated time: Ctrl-C is heard between two of them
    slice_ = interval if controller is not None else min(max(world.step, duration / 200), 3600.0)
    start = world.now
    end = start + duration
    stop = threading.Event()

    rounds = failed = 0

    def run(tick: Any = None) -> None:
        nonlocal rounds, failed
        while world.now < end - 1e-9 and not stop.is_set():
            step = slice_
            if controller is not None:
                _, read, step = simulated_round(world, controller)
                rounds += 1
                failed += not read
            world.advance(max(0.0, min(step, end - world.now)))
            if tick is not None:
                tick(world.now)

    def on_sigint(_signum: int, _frame: Any) -> None:
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    try:
        if progress:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            with Progress(
                TextColumn("simulating"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            ) as bar:
                task = bar.add_task("simulate", total=duration)
                run(lambda now: bar.update(task, completed=now - start))
        else:
            run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        stack.close()
    if rec.t and rec.t[-1] < world.now - 1e-9:
        rec.sample_now()  # the run's last moment, whatever --every (its summary reads it)
    # each VM's series is built when read (Recorder.data): as lists, 10,000 VMs' take gigabytes
    data: dict[str, Any] = rec.data()
    data["interrupted"] = stop.is_set()
    data["simulated_seconds"] = clock_seconds(world.now - start, world.step)
    data["requested_seconds"] = duration
    data["overrun_seconds"] = clock_seconds(max(0.0, world.now - end), world.step)
    if controller is not None:
        data["rounds"], data["failed_rounds"] = rounds, failed
    return data


def _headline(summary: dict[str, Any]) -> str:
    h = summary["host"]
    return (
        f"{format_size(h['promised_bytes'])} promised on {format_size(h['physical_bytes'])}; "
        f"host free at least {format_size(h['min_free_bytes'])}, "
        f"at most {format_size(h['peak_reclaimed_bytes'])} reclaimed"
        + (
            f"; {summary['failed_rounds']} of {summary['rounds']} rounds failed"
            if summary.get("failed_rounds")
            else ""
        )
    )


@click.command(
    "simulate",
    cls=OptionsCommand,
    epilog="""\b
Examples:
  hvballoon simulate seed --duration 2h --plot seed.png
  hvballoon simulate dense --duration 24h --flavor kvm --csv dense.csv --json
  hvballoon simulate seed-spike --duration 3h --policy hvballoon --plot spike.png
  hvballoon simulate waves-tight --duration 1h --policy hvballoon \\
      --policy-option surge_fraction=0.8 --policy-option calm_seconds=20m
  hvballoon simulate ./my-scenario.yaml --duration 30m --step 1s
""",
)
@click.argument("scenario")
@click.option("--duration", default="2h", show_default=True, help="Simulated time (e.g. 30m, 2h, 1d).")
@click.option("--step", default=None, help="Simulation step (default: the scenario's, 1s).")
@click.option("--every", default=None, help="Recording interval (default: duration / 720, at least a step).")
@click.option("--flavor", type=click.Choice(["kvm", "esxi", "hyperv"]), default=None)
@click.option(
    "--seed", type=click.IntRange(min=0), default=None, help="Random seed (default: the scenario's)."
)
@click.option("--policy", default=None, help="Run the auto-balloon controller with this policy.")
@click.option(
    "--policy-option",
    "policy_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="With --policy: one of the policy's own options, e.g. surge_fraction=0.8 (repeatable).",
)
@click.option("--interval", default="10s", show_default=True, help="How often the policy acts.")
@click.option(
    "--plot", "plot_path", help="Draw the run as PNG, SVG or PDF (by the file's extension; needs matplotlib)."
)
@click.option("--csv", "csv_path", help="Write the series as CSV.")
@click.option("--series", "series_path", help="Write the series as JSON.")
@json_option
@handle_errors
def simulate_cmd(
    scenario: str,
    duration: str,
    step: str | None,
    every: str | None,
    flavor: str | None,
    seed: int | None,
    policy: str | None,
    policy_option: tuple[str, ...],
    interval: str,
    plot_path: str | None,
    csv_path: str | None,
    series_path: str | None,
    as_json: bool,
) -> None:
    """Run SCENARIO (a built-in name, a generated wave scenario such as waves-7-esxi, or a
    YAML/JSON file) in the simulator and report it."""
    from hvballoon.fake.catalog import load_scenario
    from hvballoon.fake.record import plot, record
    from hvballoon.fake.scenario import MIN_STEP
    from hvballoon.fake.world import World

    seconds = parse_duration(duration, what="--duration")
    if seconds <= 0:
        raise InvalidRequestError("--duration must be above zero")
    from hvballoon.policy.base import get_policy, policy_options
    from hvballoon.policy.options import format_options, parse_option_pairs

    options = parse_option_pairs(policy_option)
    if options and policy is None:
        raise InvalidRequestError("--policy-option sets an option of the policy: give --policy too")
    if policy is not None:  # checked (and converted) before anything runs
        options = policy_options(policy, options)
        get_policy(policy, **options)
    # every output is checked before the simulation runs, not found unwritable after it
    plot_file = output_path(plot_path, "--plot", PLOT_FORMATS)
    csv_file = output_path(csv_path, "--csv")
    series_file = output_path(series_path, "--series")
    if plot_file is not None and importlib.util.find_spec("matplotlib") is None:
        raise BackendNotInstalledError(
            "--plot needs matplotlib: pip install 'hvballoon[plot]'",
            details={"install": "pip install 'hvballoon[plot]'", "missing": "matplotlib"},
        )
    if "://" in scenario:  # a fake:// URI names a world; simulate takes what it is made from
        what = "a built-in name, a generated wave scenario or a YAML/JSON file"
        fake = scenario.lower().startswith("fake://")
        name = scenario[len("fake://") :].split("?", 1)[0] if fake else ""
        if not name:
            raise InvalidRequestError(
                f"simulate runs a scenario of the simulator ({what}), not a URI: {redact_uri(scenario)!r}"
            )
        raise InvalidRequestError(
            f"simulate takes a scenario, not a URI: {name!r} rather than {redact_uri(scenario)!r} ({what}; "
            "--flavor and --seed for the URI's parameters)"
        )
    spec = load_scenario(scenario)
    if step is not None:
        step_s = parse_duration(step, what="--step")
        if not MIN_STEP <= step_s <= 60:
            raise InvalidRequestError("--step must be from 1ms to 60s")
        spec = spec.model_copy(update={"step": step_s})
    world = World(spec, flavor=flavor, seed=seed)
    every_s = parse_duration(every, what="--every") if every is not None else max(world.step, seconds / 720)
    if every_s <= 0:  # not read as "every step": no recording at no interval was meant
        raise InvalidRequestError("--every must be above zero (a recording interval of at least a step)")
    every_s = max(every_s, world.step)
    _check_span(seconds, world.step, "--duration")
    if seconds / every_s > MAX_RECORDS:
        raise InvalidRequestError(
            f"--every {format_duration(every_s)} records {seconds / every_s:.3g} points over "
            f"{format_duration(seconds)}; at most {MAX_RECORDS:,}: record less often"
        )
    interval_s = parse_duration(interval, what="--interval")
    if interval_s <= 0:
        raise InvalidRequestError("--interval must be above zero")
    steps = seconds / world.step * max(1, world.n / 10)
    show = steps >= _PROGRESS_STEPS and not as_json and console().is_terminal
    rec = record(world, every=every_s)
    data = run_simulation(
        world, rec, seconds, policy=policy, interval=interval_s, progress=show, policy_options=options
    )
    summary = SimulationSummary.model_validate(
        {**summarize(world, rec, data), "policy": policy, "policy_options": options}
    ).model_dump(mode="json")
    if summary["interrupted"]:
        if as_json:
            click.echo(json.dumps(summary, indent=2))
        unwritten = [p for p in (plot_path, csv_path, series_path) if p]
        interrupted(
            f"simulated {format_duration(summary['duration_seconds'])} of {format_duration(seconds)}"
            + (f"; not written: {', '.join(unwritten)}" if unwritten else "")
            + ("" if as_json else f"; {_headline(summary)}")
        )
    if plot_file is not None:
        plot(data, plot_file)
    # written as they are built, never held whole
    if csv_file is not None:
        with csv_file.open("w", encoding="utf-8") as out:
            rec.write_csv(out)
    if series_file is not None:
        with series_file.open("w", encoding="utf-8") as out:
            rec.write_json(out)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"{summary['scenario']} ({summary['flavor']}, seed {summary['seed']}): "
        f"{format_duration(summary['duration_seconds'])} simulated at {world.step:g} s steps"
        + (
            f" ({format_duration(summary['overrun_seconds'])} past the {format_duration(seconds)} asked: "
            "the last round's own calls took simulated time)"
            if summary["overrun_seconds"] > 1e-9
            else ""
        )
        + (f", the {policy} policy" if policy else "")
        + (f" with {format_options(options)}" if options else "")
        + f"; {_headline(summary)}"
    )
    rows = [
        [
            name,
            v["power_state"],
            format_size(v["configured_bytes"]),
            format_size(v["peak_demand_bytes"]),
            format_size(v["min_current_bytes"]),
            format_size(v["peak_guest_swap_bytes"]),
            str(v["oom_events"]),
        ]
        for name, v in summary["vms"].items()
    ]
    console().print(
        table(["vm", "power", "configured", "peak demand", "min current", "peak guest swap", "OOM"], rows)
    )
    for e in summary["events"][:20]:
        click.echo(f"  t={format_duration(e['t'])} {e['vm']}: {e['kind']}: {e['message']}")
    for path in (plot_path, csv_path, series_path):
        if path:
            click.echo(f"wrote {path}")


@click.group("fake")
def fake_group() -> None:
    """Drive a fake world: its clock, when it is persisted (fake://NAME?state=FILE)."""


@fake_group.command(
    "advance",
    cls=NegativeValuesCommand,
    epilog="""\b
Example:
  hvballoon fake advance 'fake://seed?state=/tmp/world.db' 10m
""",
)
@click.argument("uri")
@click.argument("duration")
@json_option
@handle_errors
def advance_cmd(uri: str, duration: str, as_json: bool) -> None:
    """Move the clock of the persisted fake world at URI forward by DURATION."""
    import hvballoon
    from hvballoon.fake.backend import FakeBackend

    seconds = parse_duration(duration, what="duration")
    parsed = parse_uri(uri)
    if parsed.scheme != "fake":  # refused before connecting: never a login to a real hypervisor
        raise InvalidRequestError(
            f"{parsed.redacted} is not a fake:// world: fake advance moves the clock of a persisted "
            "simulated world (fake://NAME?state=FILE)"
        )
    with hvballoon.connect(uri) as hv:
        backend = hv.backend
        if not isinstance(backend, FakeBackend):
            raise InvalidRequestError(f"{hv.uri} is not a fake:// world")
        if backend.store is None:
            raise InvalidRequestError(
                f"{hv.uri} is not persisted, so advancing it would be forgotten at once: "
                "add ?state=/path/world.db to the URI"
            )
        _check_span(seconds, backend.world.step, "duration")
        backend.sleep(seconds)
        now = clock_seconds(backend.monotonic(), backend.world.step)
    if as_json:
        result = AdvanceResult(uri=hv.uri, advanced_seconds=seconds, now_seconds=now)
        click.echo(json.dumps(result.model_dump(mode="json")))
    else:
        click.echo(
            f"{hv.uri}: advanced {format_duration(seconds)}; the world's clock is at {format_duration(now)}"
        )
