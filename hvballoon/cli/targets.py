"""``hvballoon vms``, ``stats``, ``set`` and ``capabilities``: one hypervisor's VMs, their
memory, and their targets."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from hvballoon._freesnothing import with_notes_read
from hvballoon._results import NAMED_IN_MESSAGE, first_few
from hvballoon.cli.common import (
    NegativeValuesCommand,
    change_lines,
    connection,
    connection_options,
    console,
    echo_applied,
    echo_json,
    echo_results,
    error_report,
    fleet_options,
    handle_errors,
    interrupted,
    json_option,
    seconds_option,
    session,
    stats_summary,
    stats_table,
    table,
    warn_configs_unread,
)
from hvballoon.errors import HVBalloonError, InvalidRequestError, VMNotFoundError
from hvballoon.units import format_duration, format_size, parse_duration

__all__ = ["capabilities_cmd", "set_cmd", "stats_cmd", "vms_cmd"]

EPILOG_STATS = """\b
Examples:
  hvballoon stats fake://seed
  hvballoon stats qemu:///system web01 db01 --json
  HVBALLOON_PASSWORD=… hvballoon stats vcenter://admin@vc01/?datacenter=DC1
  hvballoon stats qemu+ssh://root@kvm01/system qemu+ssh://root@kvm02/system --host-timeout 10s
  hvballoon stats --inventory hosts.txt web01 --json
"""


@click.command("vms", cls=NegativeValuesCommand, epilog="\b\nExample:\n  hvballoon vms fake://seed --json")
@click.argument("uri")
@connection_options
@json_option
@handle_errors
def vms_cmd(uri: str, as_json: bool, **kw: Any) -> None:
    """List the VMs on URI."""
    with session(uri, connection(kw)) as hv:
        vms = hv.list_vms()
    if as_json:
        echo_json([v.model_dump(mode="json") for v in vms])
        return
    rows = [[v.name, v.id, v.host or "-", v.power_state.value] for v in vms]
    console().print(table(["name", "id", "host", "power"], rows))


@click.command("stats", cls=NegativeValuesCommand, epilog=EPILOG_STATS)
@click.argument("targets", nargs=-1, metavar="URI [URI…] [VM…]")
@fleet_options
@connection_options
@json_option
@handle_errors
def stats_cmd(
    targets: tuple[str, ...],
    inventory: str | None,
    host_timeout: str | None,
    concurrency: int,
    as_json: bool,
    **kw: Any,
) -> None:
    """Memory statistics of every VM on URI (one bulk call), or of the VMs named.

    The table ends with a line that sums it up: how many VMs, running and with stale figures,
    and the running VMs' configured, current and ballooned memory.

    Arguments containing '://' are URIs, the others VM names (or ids). VMs that exist are
    reported; names that match no VM are named on stderr and the exit code is 7. With several URIs (or
    --inventory) the hosts are queried concurrently, each within --host-timeout; a failing host
    is reported with its error code and the others still answer. --json then prints
    {"ok", "exit_code", "hosts": [{"uri", "backend", "ok", "elapsed_seconds", "stats", "error"}],
    "missing_vms"}, and the exit code is the first failed host's (0 if all answered).
    """
    uris = [t for t in targets if "://" in t]
    if inventory or len(uris) != 1 or "://" not in targets[0]:
        from hvballoon.cli.fleet import run_fleet_stats

        run_fleet_stats(targets, inventory, connection(kw), host_timeout, concurrency, as_json)
        return
    uri, vm = targets[0], targets[1:]
    if host_timeout is not None:  # one host: no deadline of its own, but a bad one is still a mistake
        seconds_option(host_timeout, option="--host-timeout", default="30s")
    missing: list[str] = []
    with session(uri, connection(kw)) as hv:
        if vm:
            found, missing = hv.find_vms(vm)
            stats = hv.get_stats(found) if found else []
        else:
            stats = hv.get_stats()
        stats = with_notes_read(hv, stats, failed=warn_configs_unread)
    if as_json:
        echo_json([s.model_dump(mode="json") for s in stats])
    elif stats or not missing:  # none of the VMs named exists: the error alone, no empty table
        shown, footnotes = stats_table(stats, title=hv.uri)
        console().print(shown)
        for line in footnotes:
            click.echo(line)
        click.echo(stats_summary(stats))
    if missing:
        # what exists was reported; what is missing is named, on stderr, with exit code 7
        # the first few named, each with its close names; the others counted (details has each)
        close = {m: hv.close_matches(m) for m in missing[:NAMED_IN_MESSAGE]}
        named = first_few(
            missing,
            show=lambda m: (
                repr(m) + (f" (did you mean {', '.join(map(repr, close[m]))}?)" if close[m] else "")
            ),
        )
        err = VMNotFoundError(
            f"no VM named or with id {named} on {hv.uri}",
            backend=hv.backend_name,
            uri=hv.uri,
            details={"missing_vms": missing, "close_matches": close},
        )
        if as_json:
            click.echo(json.dumps(error_report(err), indent=2), err=True)
        else:
            click.echo(f"error: {err.describe('cli')}", err=True)
        sys.exit(err.exit_code)


def _is_size(text: str) -> bool:
    from hvballoon.units import parse_size

    try:
        parse_size(text)
    except InvalidRequestError:
        return False
    return True


def _set_pairs(args: tuple[str, ...]) -> list[tuple[str, str]] | None:
    """``VM=SIZE …`` as pairs (split at the last '=': names may hold one, sizes never do);
    ``None`` for the one-VM form ``VM SIZE``. Anything else is refused, naming both forms."""
    if args and all("=" in a for a in args):
        pairs = []
        for a in args:
            vm, _, size = a.rpartition("=")
            if not vm or not size:
                raise InvalidRequestError(f"{a!r} is not VM=SIZE (e.g. web01=6GiB)")
            pairs.append((vm, size))
        return pairs
    if len(args) == 2 and "=" not in args[1]:
        if "=" in args[0] and _is_size(args[0].rpartition("=")[2]) and not _is_size(args[1]):
            # web01=6GiB web02: a VM of several left without its size, not a VM named 'web01=6GiB'
            raise InvalidRequestError(
                f"{args[1]!r} has no size: give VM=SIZE for each of several VMs "
                f"(e.g. hvballoon set URI {args[0]} {args[1]}=4GiB)"
            )
        return None
    split = ""
    if len(args) == 3 and "=" not in args[1] + args[2] and _is_size(args[1] + args[2]):
        split = f" (a size holding a space is quoted: '{args[1]} {args[2]}', or written {args[1]}{args[2]})"
    raise InvalidRequestError(
        "give VM SIZE for one VM, or VM=SIZE for each of several VMs "
        f"(e.g. hvballoon set URI web01=6GiB web02=4GiB), got: {' '.join(args) or 'nothing'}{split}"
    )


@click.command(
    "set",
    cls=NegativeValuesCommand,
    epilog="""\b
Examples:
  hvballoon set fake://seed web01 6GiB --dry-run
  hvballoon set qemu:///system web01 4GiB --wait
  hvballoon set fake://seed web01 1GiB --force     # past the guard rail (never past the maximum)
  hvballoon set fake://seed web01=6GiB web02=7GiB app01=9GiB --json
""",
)
@click.argument("uri")
@click.argument("targets", nargs=-1, required=True, metavar="VM SIZE | VM=SIZE…")
@click.option("--dry-run", is_flag=True, help="Compute the change, touch nothing.")
@click.option("--force", is_flag=True, help="Go below the guard rail's floor (never above the maximum).")
@click.option("--wait", is_flag=True, help="Wait until the memory reaches the target.")
@click.option("--wait-timeout", default=None, help="How long --wait waits (default 60s; only with --wait).")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="With several VMs: when some are refused, change the others anyway (exit 12).",
)
@connection_options
@json_option
@handle_errors
def set_cmd(
    uri: str,
    targets: tuple[str, ...],
    dry_run: bool,
    force: bool,
    wait: bool,
    wait_timeout: str | None,
    skip_invalid: bool,
    as_json: bool,
    **kw: Any,
) -> None:
    """Set VM's memory target to SIZE (4GiB, 512MiB, 8GB = 8e9 bytes, or bytes); or several
    VMs' at once, as VM=SIZE pairs.

    Several VMs are all resolved, read and checked first; when one is refused nothing is changed
    (unless --skip-invalid), and when some change and others fail the exit code is 12
    (partial_change). --json then prints a TargetsReport: {"ok", "applied", "changed",
    "exit_code", "error", "results": [{"vm", "ok", "changed", "change", "error", "stats"}]}.
    """
    from hvballoon.units import parse_typed_target

    pairs = _set_pairs(targets)
    # a wait option that would be ignored is refused, not dropped (the caller meant to wait)
    if wait_timeout is not None and not wait:
        raise InvalidRequestError("--wait-timeout applies to --wait: add --wait, or leave the timeout out")
    if wait and dry_run:
        raise InvalidRequestError(
            "--wait with --dry-run: a dry run changes nothing, so there is nothing to wait for"
        )
    wait_seconds = parse_duration("60s" if wait_timeout is None else wait_timeout, what="--wait-timeout")
    if wait and wait_seconds <= 0:  # refused before anything is changed, with one VM as with several
        raise InvalidRequestError(f"--wait-timeout must be a positive duration, got {wait_timeout!r}")
    if pairs is not None:
        _set_many(uri, pairs, dry_run, force, wait, wait_seconds, skip_invalid, as_json, kw)
        return
    vm, size = targets
    parse_typed_target(size, what="target")  # refuse bad sizes before connecting
    from hvballoon import TargetsInterrupted
    from hvballoon.outputs import WaitedChange
    from hvballoon.session import noting_unobservable

    waiting = wait and not dry_run
    with session(uri, connection(kw)) as hv:
        try:
            change = hv.set_target(vm, size, dry_run=dry_run, force=force)
        except TargetsInterrupted as stop:  # Ctrl-C while it was sent: whether it was applied
            if as_json:  # as an interrupted wait says it (or the send's failure, as one says it)
                sent = next(iter(stop.results.values()))
                echo_json(
                    error_report(sent)
                    if isinstance(sent, HVBalloonError)
                    else WaitedChange(change=sent, stats=None, interrupted=True).model_dump(mode="json")
                )
            interrupted(_stopped_applying(stop, waiting))
        stats = None
        notes: list[str] = []
        if waiting:
            goal = format_size(change.after["target_bytes"])
            try:
                if not as_json:  # what was applied, before the wait (Ctrl-C from here on: applied)
                    for line in change_lines(change):
                        click.echo(line)
                    if _awaited(hv, change):  # else the warning below says why it is not waited for
                        click.echo(
                            f"  waiting up to {format_duration(wait_seconds)} for the memory to reach {goal}…"
                        )
                # a target that cannot be observed arriving: applied, warned about, not waited for
                with noting_unobservable() as notes:
                    stats = hv.wait_for_target(change.vm, timeout=wait_seconds)
            except KeyboardInterrupt:
                if as_json:
                    echo_json(
                        WaitedChange(change=change, stats=None, interrupted=True).model_dump(mode="json")
                    )
                done = "set to" if change.changed else "already"
                interrupted(
                    f"the target of {change.vm.name} was {done} {goal}; stopped waiting for the memory to reach it"
                )
            change = change.model_copy(update={"warnings": (*change.warnings, *notes)})
    if as_json:
        if waiting:
            echo_json(WaitedChange(change=change, stats=stats).model_dump(mode="json"))
        else:
            echo_json(change.model_dump(mode="json"))
        return
    if not waiting:
        for line in change_lines(change):
            click.echo(line)
        return
    for note in notes:
        click.echo(f"  warning: {note}")
    if stats is not None and not notes:
        click.echo(f"  reached: {format_size(stats.current_bytes)}")


def _awaited(hv: Any, change: Any) -> bool:
    """Whether ``--wait`` waits for this applied change (as ``set_targets`` decides)."""
    from hvballoon._waiting import awaited

    return awaited(hv.vm_capabilities(change.vm), change.vm)


def _set_many(
    uri: str,
    pairs: list[tuple[str, str]],
    dry_run: bool,
    force: bool,
    wait: bool,
    wait_seconds: float,
    skip_invalid: bool,
    as_json: bool,
    kw: dict[str, Any],
) -> None:
    """``set URI VM=SIZE …``: one ``set_targets``, one line (or record) per VM, the whole's code."""
    from hvballoon.units import parse_typed_target

    for vm, size in pairs:
        parse_typed_target(size, what=f"target of {vm}")  # refuse bad sizes before connecting
    from hvballoon import TargetsInterrupted

    waiting = wait and not dry_run
    shown: dict[str, Any] = {}  # what was printed before the wait, per VM

    def before_wait(applied: Any) -> None:
        """What was applied and that it is waiting (as ``set URI VM SIZE --wait`` says it)."""
        echo_applied(applied)
        shown.update(applied)
        awaited = [key for key, change in applied.changes.items() if _awaited(hv, change)]
        if awaited:
            its = "its target" if len(awaited) == 1 else "their targets"
            click.echo(
                f"waiting up to {format_duration(wait_seconds)} for the memory of "
                f"{first_few(awaited)} to reach {its}…"
            )

    with session(uri, connection(kw)) as hv:
        try:
            results = hv.set_targets(
                pairs,
                dry_run=dry_run,
                force=force,
                wait=waiting,
                wait_timeout=wait_seconds,
                skip_invalid=skip_invalid,
                on_applied=None if as_json else before_wait,  # --json: one document, at the end
            )
        except TargetsInterrupted as stop:  # Ctrl-C while applying or waiting: say what was applied
            # what was printed before the wait (all of it, were the wait cut before it was said)
            printed = shown if stop.waiting and shown and not as_json else None
            echo_results(stop.results, as_json, interrupted=True, waited=stop.waiting, shown=printed)
            interrupted(_stopped_waiting(stop) if stop.waiting else _stopped_applying(stop, waiting))
        except KeyboardInterrupt:  # before anything was sent: set_targets says what it sent
            interrupted(f"no target was applied: stopped before the targets of {len(pairs)} VMs were sent")
    echo_results(results, as_json, shown=shown if waiting and not as_json else None)


def _stopped_applying(stop: Any, wait: bool) -> str:
    """What ``set URI VM=SIZE…`` (or ``set URI VM SIZE``) says when Ctrl-C comes while the
    targets are sent: whose targets the call in flight applied, whose it did not send again,
    and whose failed."""
    results = stop.results
    applied = [k for k in results if k in results.made or k not in results.errors]
    failed = [k for k in results.errors if k not in stop.not_sent]
    if len(results) == 1:  # set URI VM SIZE
        said = f"the target of {next(iter(results))} was {'applied' if applied else 'not applied'}"
        said += "; stopped while it was sent" + (", before waiting" if wait else "")
    else:
        said = f"the targets of {len(applied)} of {len(results)} VMs were applied"
        said += f" ({first_few(applied)})" if applied else ""
        said += "; stopped while applying them" + (", before waiting" if wait else "")
    if stop.not_sent:
        said += f"; not sent again after a retryable failure: {first_few(stop.not_sent)}"
    if failed:
        said += f"; failed: {first_few(failed)}"
    return said


def _stopped_waiting(stop: Any) -> str:
    """What ``set URI VM=SIZE… --wait`` says when Ctrl-C stops its wait: whose targets were
    applied, whose memory had not reached them yet, and whose failed."""
    results = stop.results
    applied = [k for k in results if k in results.made or k not in results.errors]
    failed = list(results.errors)
    said = f"the targets of {len(applied)} of {len(results)} VMs were applied"
    if applied:
        said += f" ({first_few(applied)})"
    if stop.not_reached:
        them = "it" if len(stop.not_reached) == 1 else "them"
        said += f"; stopped waiting for the memory of {first_few(stop.not_reached)} to reach {them}"
    else:
        said += "; every one had reached its target"
    if failed:
        said += f"; failed: {first_few(failed)}"
    return said


@click.command(
    "capabilities",
    cls=NegativeValuesCommand,
    epilog="\b\nExamples:\n  hvballoon capabilities qemu:///system\n  hvballoon capabilities 'fake://seed?flavor=hyperv' db01 --json",
)
@click.argument("uri")
@click.argument("vm", required=False)
@connection_options
@json_option
@handle_errors
def capabilities_cmd(uri: str, vm: str | None, as_json: bool, **kw: Any) -> None:
    """What URI's backend (or one VM on it) can read and change."""
    with session(uri, connection(kw)) as hv:
        caps = hv.vm_capabilities(vm) if vm else hv.capabilities
    if as_json:
        echo_json(caps.model_dump(mode="json"))
        return
    click.echo(f"backend: {caps.backend}\nmechanism: {caps.mechanism.value}\nbulk stats: {caps.bulk_stats}")
    click.echo(f"alignment: {format_size(caps.alignment_bytes, exact=True)}")
    click.echo(f"settable live: {', '.join(sorted(caps.set_live)) or '-'}")
    click.echo(f"settable when off: {', '.join(sorted(caps.set_offline)) or '-'}")
    click.echo(f"readable: {', '.join(sorted(caps.readable))}")
    for note in caps.notes:
        click.echo(f"note: {note}")
    if caps.frozen_reason:
        click.echo(f"nothing can change: {caps.frozen_reason}")
    if caps.withheld_reason:
        click.echo(f"not on this VM ({', '.join(sorted(caps.withheld))}): {caps.withheld_reason}")
