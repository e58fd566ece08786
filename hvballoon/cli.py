"""The ``hvballoon`` command: the API from a shell, with tables for people and ``--json`` for
scripts. Exit codes follow the error's ``code`` (see ``hvballoon.errors``): 0 success, 2 bad
input, 3 backend missing, 4 connection, 5 timeout, 6 auth, 7 VM not found, 8 guard rail,
9 unsupported, 10 invalid state, 11 stalled, 12 partial change, 13 backend error; and 130 when
interrupted (Ctrl-C), after saying what was done.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click

from hvballoon.errors import HVBalloonError, InvalidRequestError, VMNotFoundError
from hvballoon.units import format_duration, format_size, parse_duration

F = TypeVar("F", bound=Callable[..., Any])

EPILOG_STATS = """\b
Examples:
  hvballoon stats fake://seed
  hvballoon stats qemu:///system web01 db01 --json
  HVBALLOON_PASSWORD=… hvballoon stats vcenter://admin@vc01/?datacenter=DC1
  hvballoon stats qemu+ssh://root@kvm01/system qemu+ssh://root@kvm02/system --host-timeout 10s
  hvballoon stats --inventory hosts.txt web01 --json
"""


#: An argument that starts like a negative number ('-1GiB', '-5m', '-.5'): a value, not an option.
_NEGATIVE = re.compile(r"^-\.?[0-9]")


class NegativeValuesCommand(click.Command):
    """A command whose positional arguments may be negative numbers.

    click reads ``-1GiB`` as an (unknown) option and answers "No such option '-1'"; here such an
    argument reaches the argument's own parser, which says what is wrong with it (a negative
    size). Every other token parses as usual, so a misspelt option is still reported as one.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if any(_NEGATIVE.match(a) for a in args):
            args = self._positionals_last(ctx, args)
        return super().parse_args(ctx, args)

    def _positionals_last(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: set[str] = set()
        for param in self.get_params(ctx):
            if isinstance(param, click.Option) and not param.is_flag and not param.count:
                takes_value.update(param.opts)
        options: list[str] = []
        positionals: list[str] = []
        args_left = iter(args)
        for arg in args_left:
            if arg == "--":
                positionals.extend(args_left)
                break
            if arg.startswith("-") and len(arg) > 1 and not _NEGATIVE.match(arg):
                options.append(arg)
                value = next(args_left, None) if arg in takes_value else None
                if value is not None:  # an option's value is the next argument, whatever it looks like
                    options.append(value)
            else:
                positionals.append(arg)
        return [*options, "--", *positionals]


class _Group(click.Group):
    command_class = NegativeValuesCommand


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _console() -> Any:
    from rich.console import Console

    console = Console(soft_wrap=False)
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console = Console(soft_wrap=False, width=200)
    return console


def _table(columns: list[str], rows: list[list[str]], title: str | None = None) -> Any:
    """A rich table without the columns that are empty ('-') on every row."""
    from rich.markup import escape
    from rich.table import Table

    keep = (
        [i for i in range(len(columns)) if any(r[i] != "-" for r in rows)]
        if rows
        else list(range(len(columns)))
    )
    table = Table(*[columns[i] for i in keep], title=title)
    for r in rows:
        table.add_row(*[escape(r[i]) for i in keep])
    return table


def error_report(exc: HVBalloonError) -> dict[str, Any]:
    """An error as ``--json`` prints it (the ``ErrorReport`` schema; hints in the CLI's words)."""
    from hvballoon.outputs import ErrorReport

    return ErrorReport.model_validate(exc.to_dict("cli")).model_dump(mode="json")


#: The exit code after Ctrl-C (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130


def interrupted(what_was_done: str) -> NoReturn:
    """Ctrl-C: say what was done (on stderr), exit with :data:`EXIT_INTERRUPTED`."""
    click.echo(f"interrupted: {what_was_done}", err=True)
    sys.exit(EXIT_INTERRUPTED)


def _fail(exc: HVBalloonError, as_json: bool) -> None:
    if as_json:
        _echo_json(error_report(exc))
    else:
        click.echo(f"error: {exc.describe('cli', with_hint=False)}", err=True)
        for hint in (exc.hint_text("cli"), exc.details.get("install")):
            if hint:
                click.echo(f"hint: {hint}", err=True)
    sys.exit(exc.exit_code)


def read_password_stdin() -> str:
    """The password on the first line of standard input (``--password-stdin``); an empty one is
    refused, as it is never what was meant (an unset variable, a pipe that produced nothing)."""
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise InvalidRequestError(
            "--password-stdin read an empty password (standard input was empty or began with an "
            "empty line); give the password on its first line, e.g. "
            "printf '%s\\n' \"$PASSWORD\" | hvballoon … --password-stdin"
        )
    return password


def handle_errors(fn: F) -> F:
    """Turn hvballoon errors into a message (or JSON) and the error's exit code, and Ctrl-C
    into exit code 130 (commands that have something to report catch it first)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except HVBalloonError as exc:
            _fail(exc, as_json)
        except KeyboardInterrupt:
            interrupted("stopped before the command finished")

    return wrapper  # type: ignore[return-value]


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (the models' schema).")(fn)


def connection_options(fn: F) -> F:
    """--timeout, --no-verify, --ca-file, --password-stdin (the password never on the command line)."""
    fn = click.option(
        "--timeout", default="30s", show_default=True, help="Timeout of each remote call (e.g. 30s, 2m)."
    )(fn)
    fn = click.option(
        "--no-verify", is_flag=True, help="Do NOT verify TLS certificates (insecure; warned about)."
    )(fn)
    fn = click.option(
        "--ca-file",
        type=click.Path(dir_okay=False),
        help="CA bundle to verify the hypervisor's certificate with.",
    )(fn)
    fn = click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from standard input (else HVBALLOON_PASSWORD).",
    )(fn)
    return fn


@contextmanager
def session(uri: str, opts: dict[str, Any]) -> Iterator[Any]:
    import hvballoon

    password = read_password_stdin() if opts.get("password_stdin") else None
    timeout = parse_duration(opts.get("timeout") or "30s", what="timeout")
    if timeout <= 0:
        raise InvalidRequestError("--timeout must be above zero")
    with hvballoon.connect(
        uri,
        password=password,
        timeout=timeout,
        verify=not opts.get("no_verify"),
        ca_file=opts.get("ca_file"),
    ) as hv:
        yield hv


def _conn(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in ("timeout", "no_verify", "ca_file", "password_stdin")}


def _fleet_options(fn: F) -> F:
    """--inventory, --host-timeout, --concurrency (see hvballoon.cli_fleet)."""
    fn = click.option(
        "--concurrency",
        type=click.IntRange(1, 1024),
        default=32,
        show_default=True,
        help="Hosts queried at the same time.",
    )(fn)
    fn = click.option(
        "--host-timeout",
        default=None,
        help="Deadline of each host's part (connecting included); default: --timeout.",
    )(fn)
    fn = click.option(
        "--inventory",
        "-i",
        type=click.Path(dir_okay=False),
        help="File of URIs: one per line (# comments), or a YAML list.",
    )(fn)
    return fn


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hvballoon", prog_name="hvballoon")
def main() -> None:
    """Read guest memory statistics and move balloon / dynamic-memory targets on KVM, ESXi,
    Hyper-V — or on the built-in simulator (fake://seed).

    \b
    Quick look:
      hvballoon stats fake://seed
      hvballoon set fake://seed web01 6GiB --dry-run
    """
    warnings.showwarning = _show_warning
    _shown.clear()  # each invocation (several run in one process under tests) says its own
    library_log = logging.getLogger("hvballoon")
    if not any(isinstance(h, _WarningLines) for h in library_log.handlers):
        library_log.addHandler(_WarningLines(logging.WARNING))


_shown: set[str] = set()  # warning texts already printed by this process


def _warn_line(text: str) -> None:
    if text not in _shown:
        _shown.add(text)
        click.echo(f"warning: {text}", err=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Warnings as the command's own 'warning:' lines on stderr, without Python's source line."""
    _warn_line(str(message))


class _WarningLines(logging.Handler):
    """The library's warnings and errors as 'warning:' lines, each text once (a warning that was
    also logged, such as --no-verify's, is not printed twice)."""

    def emit(self, record: logging.LogRecord) -> None:
        _warn_line(record.getMessage())


@main.command(
    "backends",
    epilog="\b\nExamples:\n  hvballoon backends\n  hvballoon backends --json | jq -r '.[] | select(.status != \"installed\") | .install'",
)
@json_option
@handle_errors
def backends_cmd(as_json: bool) -> None:
    """List the backends and whether each is installed (with the command to install it)."""
    from hvballoon.registry import backends

    rows = backends()
    if as_json:
        from hvballoon.outputs import BackendInfo

        _echo_json([BackendInfo.model_validate(r.to_dict()).model_dump(mode="json") for r in rows])
        return
    table_rows = [
        [
            r.name,
            ", ".join(r.schemes),
            r.status,
            r.version or "-",
            r.problem or ("-" if r.status == "installed" else r.install_hint),
        ]
        for r in rows
    ]
    _console().print(_table(["backend", "schemes", "status", "version", "install / problem"], table_rows))


@main.command("vms", epilog="\b\nExample:\n  hvballoon vms fake://seed --json")
@click.argument("uri")
@connection_options
@json_option
@handle_errors
def vms_cmd(uri: str, as_json: bool, **kw: Any) -> None:
    """List the VMs on URI."""
    with session(uri, _conn(kw)) as hv:
        vms = hv.list_vms()
    if as_json:
        _echo_json([v.model_dump(mode="json") for v in vms])
        return
    rows = [[v.name, v.id, v.host or "-", v.power_state.value] for v in vms]
    _console().print(_table(["name", "id", "host", "power"], rows))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


#: The columns of a stats table (see :func:`stats_row`).
STATS_COLUMNS: list[str] = [
    "vm",
    "power",
    "configured",
    "current",
    "target",
    "guest used",
    "available",
    "cache",
    "ballooned",
    "demand",
    "host swap",
    "pressure",
    "stats",
]


def stats_row(s: Any) -> list[str]:
    """One VM's :class:`~hvballoon.MemoryStats` as the cells of :data:`STATS_COLUMNS`."""
    sizes = (
        s.configured_bytes,
        s.current_bytes,
        s.target_bytes,
        s.guest_used_bytes,
        s.guest_available_bytes,
        s.guest_cache_bytes,
        s.ballooned_bytes,
        s.demand_bytes,
        s.swapped_bytes,
    )
    return [
        s.vm.name,
        s.vm.power_state.value,
        *(format_size(n) for n in sizes),
        _pct(s.pressure_ratio),
        "stale" if s.stale else "fresh",
    ]


@main.command("stats", epilog=EPILOG_STATS)
@click.argument("targets", nargs=-1, metavar="URI [URI…] [VM…]")
@_fleet_options
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

    Arguments containing '://' are URIs, the others VM names (or ids). VMs that exist are
    reported; names that match no VM are named on stderr and the exit code is 7. With several URIs (or
    --inventory) the hosts are queried concurrently, each within --host-timeout; a failing host
    is reported with its error code and the others still answer. --json then prints
    {"ok", "exit_code", "hosts": [{"uri", "backend", "ok", "elapsed_seconds", "stats", "error"}],
    "missing_vms"}, and the exit code is the first failed host's (0 if all answered).
    """
    uris = [t for t in targets if "://" in t]
    if inventory or len(uris) != 1 or "://" not in targets[0]:
        from hvballoon.cli_fleet import run_fleet_stats

        run_fleet_stats(targets, inventory, _conn(kw), host_timeout, concurrency, as_json)
        return
    uri, vm = targets[0], targets[1:]
    missing: list[str] = []
    with session(uri, _conn(kw)) as hv:
        if vm:
            found, missing = hv.find_vms(vm)
            stats = hv.get_stats(found) if found else []
        else:
            stats = hv.get_stats()
    if as_json:
        _echo_json([s.model_dump(mode="json") for s in stats])
    else:
        _console().print(_table(STATS_COLUMNS, [stats_row(s) for s in stats], title=hv.uri))
    if missing:
        # what exists was reported; what is missing is named, on stderr, with exit code 7
        err = VMNotFoundError(
            f"no VM named or with id {', '.join(repr(m) for m in missing)} on {hv.uri}",
            backend=hv.backend_name,
            uri=hv.uri,
            details={"missing_vms": missing},
        )
        if as_json:
            click.echo(json.dumps(error_report(err), indent=2), err=True)
        else:
            click.echo(f"error: {err.describe('cli')}", err=True)
        sys.exit(err.exit_code)


def _change_lines(change: Any) -> list[str]:
    verb = (
        "would change"
        if change.dry_run and change.changed
        else ("changed" if change.changed else "unchanged")
    )
    out = [f"{change.vm.name}: {verb} ({change.mechanism.value})"]
    for key in change.after:
        b, a = change.before.get(key), change.after[key]
        fmt = format_size if key.endswith("_bytes") else str
        out.append(
            f"  {key.removesuffix('_bytes')}: {fmt(b) if b is not None else '-'} -> "
            f"{fmt(a) if a is not None else 'unlimited'}"
        )
    out.extend(f"  warning: {w}" for w in change.warnings)
    return out


@main.command(
    "set",
    epilog="""\b
Examples:
  hvballoon set fake://seed web01 6GiB --dry-run
  hvballoon set qemu:///system web01 4GiB --wait
  hvballoon set fake://seed web01 1GiB --force     # past the guard rail (never past the maximum)
""",
)
@click.argument("uri")
@click.argument("vm")
@click.argument("size")
@click.option("--dry-run", is_flag=True, help="Compute the change, touch nothing.")
@click.option("--force", is_flag=True, help="Go below the guard rail's floor (never above the maximum).")
@click.option("--wait", is_flag=True, help="Wait until the memory reaches the target.")
@click.option("--wait-timeout", default="60s", show_default=True, help="How long --wait waits.")
@connection_options
@json_option
@handle_errors
def set_cmd(
    uri: str,
    vm: str,
    size: str,
    dry_run: bool,
    force: bool,
    wait: bool,
    wait_timeout: str,
    as_json: bool,
    **kw: Any,
) -> None:
    """Set VM's memory target to SIZE (4GiB, 512MiB, 8GB = 8e9 bytes, or bytes)."""
    from hvballoon.units import parse_size

    parse_size(size, what="target")  # refuse bad sizes before connecting
    wait_seconds = parse_duration(wait_timeout, what="--wait-timeout")
    from hvballoon.outputs import WaitedChange
    from hvballoon.session import noting_unobservable

    waiting = wait and not dry_run
    with session(uri, _conn(kw)) as hv:
        change = hv.set_target(vm, size, dry_run=dry_run, force=force)
        stats = None
        notes: list[str] = []
        if waiting:
            goal = format_size(change.after["target_bytes"])
            if not as_json:  # what was applied, before the wait
                for line in _change_lines(change):
                    click.echo(line)
                click.echo(f"  waiting up to {format_duration(wait_seconds)} for the memory to reach {goal}…")
            try:
                # a target that cannot be observed arriving: applied, warned about, not waited for
                with noting_unobservable() as notes:
                    stats = hv.wait_for_target(change.vm, timeout=wait_seconds)
            except KeyboardInterrupt:
                if as_json:
                    _echo_json(
                        WaitedChange(change=change, stats=None, interrupted=True).model_dump(mode="json")
                    )
                done = "set to" if change.changed else "already"
                interrupted(
                    f"the target of {change.vm.name} was {done} {goal}; stopped waiting for the memory to reach it"
                )
            change = change.model_copy(update={"warnings": (*change.warnings, *notes)})
    if as_json:
        if waiting:
            _echo_json(WaitedChange(change=change, stats=stats).model_dump(mode="json"))
        else:
            _echo_json(change.model_dump(mode="json"))
        return
    if not waiting:
        for line in _change_lines(change):
            click.echo(line)
        return
    for note in notes:
        click.echo(f"  warning: {note}")
    if stats is not None and not notes:
        click.echo(f"  reached: {format_size(stats.current_bytes)}")


@main.command(
    "config",
    epilog="""\b
Examples:
  hvballoon config fake://seed web01                          # show
  hvballoon config 'fake://seed?flavor=hyperv' web01 --maximum 12GiB --buffer-percent 20
  hvballoon config 'fake://seed?flavor=esxi' db01 --reservation 4GiB --limit unlimited
  hvballoon config 'fake://seed?flavor=esxi' db01 --shares-level high --memory-reservation-lock
""",
)
@click.argument("uri")
@click.argument("vm")
@click.option("--minimum")
@click.option("--maximum")
@click.option("--startup")
@click.option("--dynamic/--static", default=None, help="Hyper-V Dynamic Memory on/off (VM off).")
@click.option("--buffer-percent", type=int)
@click.option("--priority", type=int, help="Hyper-V memory weight 0-100.")
@click.option("--reservation")
@click.option("--limit", help="ESXi limit, or 'unlimited'.")
@click.option("--shares", type=int, help="ESXi custom share count.")
@click.option("--shares-level", help="ESXi shares: low, normal, high (5/10/20 per MB) or custom.")
@click.option(
    "--memory-reservation-lock/--no-memory-reservation-lock",
    default=None,
    help="ESXi: keep the reservation at the memory size (memoryReservationLockedToMax).",
)
@click.option("--balloon-cap", help="ESXi sched.mem.maxmemctl.")
@click.option("--deflate-on-oom/--no-deflate-on-oom", default=None)
@click.option("--stats-period", type=int, help="KVM balloon stats period in seconds.")
@click.option("--dry-run", is_flag=True)
@connection_options
@json_option
@handle_errors
def config_cmd(uri: str, vm: str, dry_run: bool, as_json: bool, **kw: Any) -> None:
    """Show VM's memory configuration, or change the fields given."""
    conn = _conn(kw)
    fields = {k: v for k, v in kw.items() if v is not None}
    with session(uri, conn) as hv:
        if not fields:
            cfg = hv.get_config(vm)
            if as_json:
                _echo_json(cfg.model_dump(mode="json"))
                return
            click.echo(f"{cfg.vm.name} ({cfg.mechanism.value})")
            for key, value in cfg.model_dump(exclude={"vm", "mechanism", "extra"}).items():
                if value is not None:
                    shown = format_size(value) if key.endswith("_bytes") else value
                    click.echo(f"  {key.removesuffix('_bytes')}: {shown}")
            return
        change = hv.set_config(vm, dry_run=dry_run, **fields)
    if as_json:
        _echo_json(change.model_dump(mode="json"))
        return
    for line in _change_lines(change):
        click.echo(line)


@main.command(
    "capabilities",
    epilog="\b\nExamples:\n  hvballoon capabilities qemu:///system\n  hvballoon capabilities 'fake://seed?flavor=hyperv' db01 --json",
)
@click.argument("uri")
@click.argument("vm", required=False)
@connection_options
@json_option
@handle_errors
def capabilities_cmd(uri: str, vm: str | None, as_json: bool, **kw: Any) -> None:
    """What URI's backend (or one VM on it) can read and change."""
    with session(uri, _conn(kw)) as hv:
        caps = hv.vm_capabilities(vm) if vm else hv.capabilities
    if as_json:
        _echo_json(caps.model_dump(mode="json"))
        return
    click.echo(f"backend: {caps.backend}\nmechanism: {caps.mechanism.value}\nbulk stats: {caps.bulk_stats}")
    click.echo(f"alignment: {format_size(caps.alignment_bytes, exact=True)}")
    click.echo(f"settable live: {', '.join(sorted(caps.set_live)) or '-'}")
    click.echo(f"settable when off: {', '.join(sorted(caps.set_offline)) or '-'}")
    click.echo(f"readable: {', '.join(sorted(caps.readable))}")
    for note in caps.notes:
        click.echo(f"note: {note}")


#: The columns of a host table (see :func:`host_row`).
HOST_COLUMNS: list[str] = [
    "host",
    "physical",
    "used",
    "free",
    "overhead",
    "swap used",
    "swap total",
    "shared",
    "vms",
    "configured",
    "current",
    "ballooned",
    "overcommit",
]


def host_row(h: Any) -> list[str]:
    """One :class:`~hvballoon.HostStats` as the cells of :data:`HOST_COLUMNS`."""
    sizes = (
        h.physical_bytes,
        h.used_bytes,
        h.free_bytes,
        h.hypervisor_overhead_bytes,
        h.swap_used_bytes,
        h.swap_total_bytes,
        h.shared_bytes,
    )
    vm_sizes = (h.vm_configured_bytes, h.vm_current_bytes, h.ballooned_bytes)
    return [
        h.host,
        *(format_size(n) for n in sizes),
        "-" if h.vms_running is None else str(h.vms_running),
        *(format_size(n) for n in vm_sizes),
        "-" if h.overcommit_ratio is None else f"{h.overcommit_ratio:.2f}",
    ]


@main.command(
    "host",
    epilog="""\b
Examples:
  hvballoon host fake://seed
  hvballoon host 'vcenter://admin@vc01/?datacenter=DC1' --json
  hvballoon schema HostStats
""",
)
@click.argument("uri")
@connection_options
@json_option
@handle_errors
def host_cmd(uri: str, as_json: bool, **kw: Any) -> None:
    """The memory picture of every host behind URI (one bulk read): physical, used and free
    memory, swap, page sharing, and what its running VMs were promised (configured), have
    (current) and hold in balloons; overcommit = configured / physical.

    A figure the hypervisor cannot supply is shown as '-' (null in --json), never 0.
    """
    with session(uri, _conn(kw)) as hv:
        hosts = hv.get_host_stats()
    if as_json:
        _echo_json([h.model_dump(mode="json") for h in hosts])
        return
    _console().print(_table(HOST_COLUMNS, [host_row(h) for h in hosts], title=hv.uri))


@main.command("scenarios", epilog="\b\nExamples:\n  hvballoon scenarios\n  hvballoon stats fake://seed-spike")
@json_option
@handle_errors
def scenarios_cmd(as_json: bool) -> None:
    """List the fake backend's built-in scenarios (use as fake://NAME)."""
    from hvballoon.fake.scenario import builtin_scenarios, load_scenario

    rows = [load_scenario(n) for n in builtin_scenarios()]
    if as_json:
        from hvballoon.outputs import ScenarioInfo

        _echo_json(
            [
                ScenarioInfo(
                    name=s.name,
                    flavor=s.flavor,
                    vms=len(s.vms),
                    physical_bytes=s.host.physical,
                    promised_bytes=s.promised_bytes,
                    description=s.description,
                ).model_dump(mode="json")
                for s in rows
            ]
        )
        return
    table_rows = [
        [
            s.name,
            s.flavor,
            str(len(s.vms)),
            format_size(s.host.physical),
            format_size(s.promised_bytes),
            s.description or "-",
        ]
        for s in rows
    ]
    _console().print(
        _table(["scenario", "flavor", "vms", "host memory", "promised", "description"], table_rows)
    )


@main.command(
    "schema",
    epilog="\b\nExamples:\n  hvballoon schema MemoryStats\n  hvballoon schema > hvballoon-schemas.json",
)
@click.argument("model", required=False)
def schema_cmd(model: str | None) -> None:
    """Print the JSON Schema of every --json output (all, or MODEL: MemoryStats, FleetStats,
    WatchSweep, Decision, SimulationSummary, ErrorReport, …)."""
    from hvballoon.outputs import output_schemas

    schemas = output_schemas()
    if model is None:
        _echo_json(schemas)
        return
    if model not in schemas:
        raise click.BadParameter(f"choose one of {', '.join(schemas)}", param_hint="MODEL")
    _echo_json(schemas[model])


from hvballoon.cli_fleet import exporter_cmd, watch_cmd  # noqa: E402 - needs the helpers above

main.add_command(watch_cmd)
main.add_command(exporter_cmd)

from hvballoon.cli_policy import autoballoon_cmd  # noqa: E402

main.add_command(autoballoon_cmd)

from hvballoon.cli_fake import fake_group, simulate_cmd  # noqa: E402

main.add_command(simulate_cmd)
main.add_command(fake_group)

if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
