"""Right-size the VMs of a host: leave each running VM its use plus some headroom, and no more.

A one-shot script an operator runs from cron or a pipeline (the controller, ``hvballoon
autoballoon``, is the long-running alternative). It is a dry run unless ``--apply`` is given:

    python examples/rightsize.py fake://seed                      # what it would do
    python examples/rightsize.py fake://seed --apply --json       # do it; one JSON document
    python examples/rightsize.py 'fake://seed?flavor=esxi' --headroom 2GiB --exclude db01

Every VM is read in one sweep; the plan is checked as a whole by ``set_targets`` (the session's
guard rails and the hypervisor's rules) and the valid moves are applied, the others reported
with their error's code. The exit code is 0 when every planned move was valid, else that of
hvballoon's error for the whole (docs/errors.md: 12 when some moves were made and others
refused, the refusal's own when none was made); 2 for bad arguments. The same script runs unchanged
against ``qemu:///system``, ``vcenter://…`` or ``hyperv://…``; ``test_rightsize.py`` beside it
shows how to test it against the simulator.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import hvballoon
from hvballoon import HVBalloonError, Mechanism, MemoryStats, PowerState, format_size
from hvballoon.units import parse_typed_target


def plan(
    hv: hvballoon.Hypervisor,
    stats: Sequence[MemoryStats],
    *,
    headroom_bytes: int,
    min_step_bytes: int,
    exclude: frozenset[str] = frozenset(),
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The targets to set (VM name → bytes) and the VMs left alone, each with why."""
    targets: dict[str, int] = {}
    skipped: list[dict[str, Any]] = []
    for st in stats:
        name = st.vm.name
        why = None
        if name in exclude:
            why = "excluded"
        elif st.vm.power_state is not PowerState.RUNNING:
            why = f"not running ({st.vm.power_state.value})"
        elif st.mechanism is Mechanism.DYNAMIC_MEMORY:
            # Hyper-V balances it by its demand; its target (the maximum) only rises while it runs
            why = "Dynamic Memory balances it"
        elif not hv.guard_rails.trusts(st):
            why = "its guest's figures are unknown or stale"
        if why is not None:
            skipped.append({"vm": name, "why": why})
            continue
        used, size = st.used_bytes or 0, st.configured_bytes
        wanted = max(used + headroom_bytes, hv.guard_rails.floor(used, size))
        if size is not None:
            wanted = min(wanted, size)
        now = st.target_bytes if st.target_bytes is not None else st.current_bytes
        if now is not None and abs(wanted - now) < min_step_bytes:
            skipped.append({"vm": name, "why": f"already within {format_size(min_step_bytes)} of its goal"})
            continue
        targets[name] = wanted
    return targets, skipped


#: The options that take a value: the next argument is their value, even one that starts with '-'.
_VALUED = ("--headroom", "--min-step", "--exclude")


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are hvballoon's JSON error report with ``--json`` (exit 2)."""

    as_json = False

    def error(self, message: str) -> NoReturn:
        if not self.as_json:
            super().error(message)
        error = hvballoon.InvalidRequestError(message)
        print(json.dumps(error.to_dict("cli")))
        sys.exit(error.exit_code)


def _values_joined(argv: Sequence[str]) -> list[str]:
    """``--headroom -1GiB`` as ``--headroom=-1GiB``: argparse reads a value that starts like a
    negative size as an option ("expected one argument"); joined, the size's own parser says
    what is wrong with it."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            out.append(arg)
            out.extend(args)
            break
        value = next(args, None) if arg in _VALUED else None
        out.append(arg if value is None else f"{arg}={value}")
    return out


def main(
    argv: Sequence[str] | None = None, connect: Callable[[str], hvballoon.Hypervisor] = hvballoon.connect
) -> int:
    """The command; ``connect`` opens the session (a test passes one without retry waits)."""
    argv = _values_joined(sys.argv[1:] if argv is None else argv)
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.as_json = "--json" in argv[: argv.index("--") if "--" in argv else len(argv)]
    parser.add_argument("uri", help="the hypervisor, e.g. qemu:///system or fake://seed")
    parser.add_argument("--headroom", default="1GiB", help="left above each VM's use (default 1GiB)")
    parser.add_argument("--min-step", default="512MiB", help="smaller moves are not made (default 512MiB)")
    parser.add_argument("--exclude", action="append", default=[], metavar="VM", help="never touch this VM")
    parser.add_argument("--apply", action="store_true", help="make the moves (default: a dry run)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    try:
        # a number without a unit is bytes: "--headroom 2" (2 bytes) is refused as a unit left out
        headroom, min_step = (
            parse_typed_target(
                getattr(args, opt), what=f"--{opt.replace('_', '-')}", allow_zero=True, noun="size"
            )
            for opt in ("headroom", "min_step")
        )
    except HVBalloonError as exc:
        parser.error(str(exc))  # exits 2
    if any(not name.strip() for name in args.exclude):
        parser.error("--exclude takes a VM's name, got an empty one")  # it would exclude nothing
    try:
        with connect(args.uri) as hv:
            stats = hv.get_stats()
            targets, skipped = plan(
                hv, stats, headroom_bytes=headroom, min_step_bytes=min_step, exclude=frozenset(args.exclude)
            )
            results = hv.set_targets(targets, dry_run=not args.apply, skip_invalid=True) if targets else None
    except HVBalloonError as exc:
        if args.json:  # one JSON document on stdout, an error's too (docs/errors.md)
            print(json.dumps(exc.to_dict("cli")))
        else:
            print(f"rightsize: {exc}", file=sys.stderr)
        return exc.exit_code
    records = results.records() if results is not None else []
    if args.json:
        print(json.dumps({"uri": args.uri, "applied": args.apply, "moves": records, "skipped": skipped}))
    else:
        for r in records:
            change, error = r["change"], r["error"]
            if error is not None:
                print(f"{r['vm']:<12} refused: {error['message']}")
            else:
                verb = "set" if r["changed"] else ("would set" if change["dry_run"] else "kept at")
                print(f"{r['vm']:<12} {verb} {format_size(change['after']['target_bytes'])}")
        for s in skipped:
            print(f"{s['vm']:<12} left alone: {s['why']}")
    error = results.error if results is not None else None
    return 0 if error is None else error.exit_code


if __name__ == "__main__":
    sys.exit(main())
