"""What every command of the ``hvballoon`` CLI shares: connection options and the session they
open, ``--json``, error handling and exit codes, warnings, tables and the console.

The command modules import this one (and nothing from :mod:`hvballoon.cli.app`, which only
assembles them), so the package has no import cycle.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click

from hvballoon._freesnothing import FREES_NOTHING
from hvballoon.cli.tables import PLAIN_ROWS, PlainTable
from hvballoon.errors import HVBalloonError, InvalidRequestError
from hvballoon.units import format_size, parse_duration

__all__ = [
    "EXIT_OUTPUT_CLOSED",
    "EXIT_INTERRUPTED",
    "HOST_COLUMNS",
    "STATS_COLUMNS",
    "NegativeValuesCommand",
    "OptionsCommand",
    "change_lines",
    "connection",
    "connection_options",
    "console",
    "deferred_interrupt",
    "echo_applied",
    "echo_json",
    "error_report",
    "fleet_options",
    "handle_errors",
    "host_row",
    "install_warning_lines",
    "interrupted",
    "json_option",
    "output_closed",
    "output_watched",
    "read_password_stdin",
    "refuse_repeated_options",
    "seconds_option",
    "session",
    "stats_footnotes",
    "stats_row",
    "stats_summary",
    "table",
    "uninstall_warning_lines",
    "warn_configs_unread",
    "warn_line",
]

F = TypeVar("F", bound=Callable[..., Any])


#: An argument that starts like a negative number ('-1GiB', '-5m', '-.5', '- 6GiB'): a value, not
#: an option.
_NEGATIVE = re.compile(r"^-\s*\.?[0-9]")


def _option_uses(command: click.Command, ctx: click.Context, args: list[str]) -> dict[str, list[str]]:
    """Each single-valued option's uses in ``args`` (by the parameter's name): the spelling
    given, with its value (``--minimum 2GiB``, ``--dynamic``). Options that may be repeated
    (``multiple``, ``count``) and click's own (``--help``) are left out; an option's value is
    skipped whatever it looks like, and nothing after ``--`` is an option."""
    params: dict[str, click.Option] = {}
    for declared in command.get_params(ctx):
        if isinstance(declared, click.Option):
            for opt in (*declared.opts, *declared.secondary_opts):
                params[opt] = declared
    uses: dict[str, list[str]] = {}
    tokens = iter(args)
    for token in tokens:
        if token == "--":  # noqa: S105 (the end of the options, no password)
            break
        name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        param = params.get(name)
        if param is None and not token.startswith("--") and len(token) > 2 and token[:2] in params:
            name, eq, value = token[:2], "=", token[2:]  # -ihosts.txt: a short option and its value
            param = params[name]
        if param is None:
            continue
        takes_value = not param.is_flag and not param.count
        if takes_value and not eq:
            value = next(tokens, "")
        if param.multiple or param.count or not param.expose_value or param.name is None:
            continue
        uses.setdefault(param.name, []).append(f"{name} {value}" if takes_value else name)
    return uses


def refuse_repeated_options(command: click.Command, ctx: click.Context, args: list[str]) -> None:
    """A single-valued option given twice (``--minimum 2GiB --minimum 4GiB``) or both sides of
    an on/off pair (``--dynamic --static``) is a usage error naming them, not settled silently
    by the last one. The same flag written twice (``--dry-run --dry-run``) says nothing new and
    is let through."""
    for used in _option_uses(command, ctx, args).values():
        if len(used) < 2 or (len(set(used)) == 1 and " " not in used[0]):
            continue
        if " " not in used[0]:  # a flag and its opposite
            raise click.UsageError(f"{' and '.join(sorted(set(used)))} contradict each other: give one", ctx)
        option = used[0].split(" ", 1)[0]
        values = ", then ".join(repr(u.split(" ", 1)[1]) for u in used)
        raise click.UsageError(
            f"{option} is given {len(used)} times ({values}): it takes one value, give it once", ctx
        )


class OptionsCommand(click.Command):
    """A command whose single-valued options are given at most once
    (:func:`refuse_repeated_options`). Every ``hvballoon`` command is one (a test checks)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        refuse_repeated_options(self, ctx, args)
        return super().parse_args(ctx, args)


class NegativeValuesCommand(OptionsCommand):
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


# -- output ------------------------------------------------------------------------------------


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@functools.cache
def _console_class() -> Any:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # rich's own exits with 1
            self.quiet = True
            output_closed()

    return _Console


def console() -> Any:
    cls = _console_class()
    out = cls(soft_wrap=False)
    if not out.is_terminal:  # piped: do not squeeze the table into 80 columns
        out = cls(soft_wrap=False, width=200)
    return out


#: Control characters (C0, DEL, C1): a VM name is the hypervisor's to choose, and one holding
#: an escape sequence would otherwise be sent to the terminal as it is.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with each control character written as its Python escape (``\\x1b``, ``\\n``).

    >>> printable("web\\x1b[31m01\\n")
    'web\\\\x1b[31m01\\\\n'
    """
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def table(columns: list[str], rows: list[list[str]], title: str | None = None) -> Any:
    """A rich table without the columns that are empty ('-') on every row; its cells and title
    shown as text (no markup, no control characters)."""
    from rich.markup import escape
    from rich.table import Table

    keep = (
        [i for i in range(len(columns)) if any(r[i] != "-" for r in rows)]
        if rows
        else list(range(len(columns)))
    )
    if len(rows) > PLAIN_ROWS:  # the same table, without rich's per-cell work
        return PlainTable(
            [columns[i] for i in keep],
            [[printable(r[i]) for i in keep] for r in rows],
            title=None if title is None else printable(title),
        )
    out = Table(*[columns[i] for i in keep], title=None if title is None else escape(printable(title)))
    for r in rows:
        out.add_row(*[escape(printable(r[i])) for i in keep])
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


#: The size columns of a stats table, with the :class:`~hvballoon.MemoryStats` field of each.
_STATS_SIZES: tuple[tuple[str, str], ...] = (
    ("configured", "configured_bytes"),
    ("current", "current_bytes"),
    ("target", "target_bytes"),
    ("guest used", "guest_used_bytes"),
    ("available", "guest_available_bytes"),
    ("cache", "guest_cache_bytes"),
    ("ballooned", "ballooned_bytes"),
    ("demand", "demand_bytes"),
    ("host swap", "swapped_bytes"),
)

#: The columns of a stats table (see :func:`stats_row`).
STATS_COLUMNS: list[str] = ["vm", "power", *(c for c, _ in _STATS_SIZES), "pressure", "stats", "note"]


def stats_summary(stats: list[Any]) -> str:
    """The line under a stats table: how many VMs, running and with stale figures, and the sums
    of their configured, current and ballooned memory (a table of 10,000 rows said none of it)."""
    running = [s for s in stats if s.vm.power_state.value == "running"]
    stale = sum(1 for s in stats if s.stale)

    def total(field: str) -> str:
        return format_size(sum(getattr(s, field) or 0 for s in running))

    return (
        f"{len(stats)} VMs, {len(running)} running, {stale} with stale figures; running: "
        f"configured {total('configured_bytes')}, current {total('current_bytes')}, "
        f"ballooned {total('ballooned_bytes')}"
    )


def warn_configs_unread(exc: HVBalloonError) -> None:
    """What a stats view says on stderr when the configurations behind its notes could not be
    read (the stats are shown without them)."""
    click.echo(f"warning: the configurations could not be read: {exc.describe('cli')}", err=True)


def stats_footnotes(stats: list[Any]) -> tuple[dict[str, str], list[str]]:
    """The footnote mark (``*``, ``**`` …) of each distinct :data:`FREES_NOTHING` note of
    ``stats`` (for :func:`stats_row`), and the footnotes that say them, for any table of stats."""
    marks: dict[str, str] = {}
    for s in stats:
        note = s.extra.get(FREES_NOTHING)
        if isinstance(note, str) and note not in marks:
            marks[note] = "*" * (len(marks) + 1)
    return marks, [f"{mark} frees nothing: {printable(note)}" for note, mark in marks.items()]


def stats_row(s: Any, marks: dict[str, str] | None = None) -> list[str]:
    """One VM's :class:`~hvballoon.MemoryStats` as the cells of :data:`STATS_COLUMNS` (``marks``:
    the footnote mark of each note, :func:`stats_footnotes`)."""
    note = s.extra.get(FREES_NOTHING)
    return [
        s.vm.name,
        s.vm.power_state.value,
        *(format_size(getattr(s, f)) for _, f in _STATS_SIZES),
        _pct(s.pressure_ratio),
        "stale" if s.stale else "fresh",
        f"frees nothing{(marks or {}).get(note, '')}" if isinstance(note, str) else "-",
    ]


def stats_table(stats: list[Any], title: str | None = None) -> tuple[Any, list[str]]:
    """The stats table, and its footnotes: the note of each VM whose balloon frees nothing."""
    marks, footnotes = stats_footnotes(stats)
    rows = [stats_row(s, marks) for s in stats]
    return table(STATS_COLUMNS, rows, title=title), footnotes


#: The size columns of a host table: the host's figures, then the sums over its running VMs
#: (with the count of those VMs between them), with the :class:`~hvballoon.HostStats` field of each.
_HOST_SIZES: tuple[tuple[str, str], ...] = (
    ("physical", "physical_bytes"),
    ("used", "used_bytes"),
    ("free", "free_bytes"),
    ("overhead", "hypervisor_overhead_bytes"),
    ("swap used", "swap_used_bytes"),
    ("swap total", "swap_total_bytes"),
    ("shared", "shared_bytes"),
)
_HOST_VM_SIZES: tuple[tuple[str, str], ...] = (
    ("configured", "vm_configured_bytes"),
    ("current", "vm_current_bytes"),
    ("ballooned", "ballooned_bytes"),
)

#: The columns of a host table (see :func:`host_row`).
HOST_COLUMNS: list[str] = [
    "host",
    *(c for c, _ in _HOST_SIZES),
    "vms",
    *(c for c, _ in _HOST_VM_SIZES),
    "overcommit",
]


def host_row(h: Any) -> list[str]:
    """One :class:`~hvballoon.HostStats` as the cells of :data:`HOST_COLUMNS`."""
    return [
        h.host,
        *(format_size(getattr(h, f)) for _, f in _HOST_SIZES),
        "-" if h.vms_running is None else str(h.vms_running),
        *(format_size(getattr(h, f)) for _, f in _HOST_VM_SIZES),
        "-" if h.overcommit_ratio is None else f"{h.overcommit_ratio:.2f}",
    ]


def change_lines(change: Any) -> list[str]:
    """A :class:`~hvballoon.Change` as the lines ``set`` and ``config`` print."""
    verb = (
        "would change"
        if change.dry_run and change.changed
        else ("changed" if change.changed else "unchanged")
    )
    out = [f"{change.vm.name}: {verb} ({change.mechanism.value})"]
    for key in change.after:
        fmt = format_size if key.endswith("_bytes") else str
        # None is the field's "no bound" (an unlimited ESXi limit) on either side of the change
        after = change.after[key]
        shown = ["unlimited" if v is None else fmt(v) for v in (change.before.get(key), after)]
        if key in change.before and change.before[key] == after:
            # asked for, already so: not shown as a move from a value to itself
            out.append(f"  {key.removesuffix('_bytes')}: {shown[1]} (unchanged)")
            continue
        before = shown[0] if key in change.before else "-"
        out.append(f"  {key.removesuffix('_bytes')}: {before} -> {shown[1]}")
    out.extend(f"  warning: {w}" for w in change.warnings)
    return out


def echo_results(
    results: Any, as_json: bool, *, interrupted: bool = False, waited: bool = True, shown: Any = None
) -> None:
    """A bulk call's :class:`~hvballoon.TargetResults` (``set URI VM=SIZE …``, ``config URI VM
    VM … --field …``): one line (or record) per VM in the order given, the whole's error on
    stderr, and its exit code. ``interrupted``: Ctrl-C stopped its wait (each VM applied and not
    seen reached says so; the caller then exits with :data:`EXIT_INTERRUPTED`), or its apply
    (``waited`` false: nothing was waited for). ``shown``: what :func:`echo_applied` printed
    before the wait; only what the wait added is printed then, a line per VM."""
    from hvballoon.outputs import TargetsReport

    error = results.error
    if as_json:
        report = TargetsReport(
            ok=results.ok,
            applied=results.applied,
            changed=results.changed,
            exit_code=EXIT_INTERRUPTED if interrupted else (error.exit_code if error is not None else 0),
            error=error_report(error) if error is not None else None,
            results=results.records("cli"),
            interrupted=interrupted,
        )
        echo_json(report.model_dump(mode="json"))
    else:
        for key, value in results.items():
            if shown is None:
                lines = _result_lines(key, value, results.stats.get(key), interrupted and waited)
            else:
                lines = _waited_lines(key, value, results.stats.get(key), shown.get(key), interrupted)
            for line in lines:
                click.echo(line)
        if error is not None:
            click.echo(f"error: {error.describe('cli', with_hint=False)}", err=True)
    if error is not None and not interrupted:
        sys.exit(error.exit_code)


def echo_applied(results: Any) -> None:
    """What a bulk call applied, before it waits (``set URI VM=SIZE… --wait``): a VM's lines as
    :func:`echo_results` prints them, without the whole's error (it comes after the wait)."""
    for key, value in results.items():
        for line in _result_lines(key, value, None, False):
            click.echo(line)


def _result_lines(key: str, value: Any, reached: Any, stopped_waiting: bool) -> list[str]:
    if isinstance(value, HVBalloonError):
        return [f"{key}: failed ({value.code}): {value.describe('cli', with_hint=True)}"]
    lines = change_lines(value)
    if reached is not None:
        lines.append(f"  reached: {format_size(reached.current_bytes)}")
    elif stopped_waiting:
        lines.append("  not reached yet: stopped waiting")
    return lines


def _waited_lines(key: str, value: Any, reached: Any, before: Any, interrupted: bool) -> list[str]:
    """What the wait added to a VM's result ``before`` it: a failure (a stall), a warning (its
    memory cannot be seen to move), the memory reached, or that it was not reached yet."""
    if isinstance(value, HVBalloonError):
        return (
            []
            if value is before
            else [f"{key}: failed ({value.code}): {value.describe('cli', with_hint=True)}"]
        )
    known = before.warnings if before is not None and not isinstance(before, HVBalloonError) else ()
    lines = [f"{key}: warning: {w}" for w in value.warnings if w not in known]
    if reached is None:
        if interrupted:
            lines.append(f"{key}: not reached yet: stopped waiting")
    elif not lines:  # a warning instead: its memory was not seen to move, so not said to arrive
        lines.append(f"{key}: reached {format_size(reached.current_bytes)}")
    return lines


# -- warnings ----------------------------------------------------------------------------------

_shown: set[str] = set()  # warning texts already printed by this process


def warn_line(text: str) -> None:
    """Print ``warning: text`` on stderr, once per invocation."""
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
    warn_line(str(message))


class _WarningLines(logging.Handler):
    """The library's warnings and errors as 'warning:' lines, each text once (a warning that was
    also logged, such as --no-verify's, is not printed twice)."""

    def emit(self, record: logging.LogRecord) -> None:
        warn_line(record.getMessage())


def install_warning_lines() -> None:
    """Route Python warnings and the library's log warnings to :func:`warn_line` (each
    invocation, several of which run in one process under tests, says its own)."""
    warnings.showwarning = _show_warning
    _shown.clear()
    library_log = logging.getLogger("hvballoon")
    if not any(isinstance(h, _WarningLines) for h in library_log.handlers):
        library_log.addHandler(_WarningLines(logging.WARNING))


def uninstall_warning_lines() -> None:
    """Stop printing the library's log warnings as 'warning:' lines (a command that sets up
    its own log output, such as ``autoballoon --log-format``, says them there)."""
    library_log = logging.getLogger("hvballoon")
    for handler in [h for h in library_log.handlers if isinstance(h, _WarningLines)]:
        library_log.removeHandler(handler)


# -- errors and exit codes ---------------------------------------------------------------------


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


#: The exit code when the reader of the output went away (``… | head -1``): 128 + SIGPIPE, what
#: a shell reports for a program a broken pipe killed.
EXIT_OUTPUT_CLOSED = 141


def output_closed() -> NoReturn:
    """The output's reader has gone (a broken pipe): end quietly, with no message (there is no
    one to read it) and :data:`EXIT_OUTPUT_CLOSED`. What is still buffered goes nowhere, so
    Python does not fail again flushing it at exit ("Exception ignored … BrokenPipeError")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (AttributeError, OSError, ValueError):  # no file of its own (a test's runner)
                continue
    finally:
        os.close(devnull)
    sys.exit(EXIT_OUTPUT_CLOSED)


def _reader_gone(stream: Any) -> bool:
    """Whether ``stream`` is a pipe whose reader has closed it (poll says POLLERR)."""
    import select

    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _fd, events in poller.poll(0))


@contextmanager
def output_watched() -> Iterator[None]:
    """Run a command so that its output's reader going away ends it with :func:`output_closed`.

    A write that fails whole raises ``BrokenPipeError`` (handled where the commands are
    invoked); one that the reader closes *part way* through returns as if it had written
    everything, and the rest is lost: the kernel's SIGPIPE is the only sign of it, noted here
    (not acted on: a socket's broken connection raises one too) and checked against standard
    output at the end."""
    import threading

    sigpipe: list[int] = []
    previous: Any = None
    if hasattr(signal, "SIGPIPE") and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGPIPE, lambda signum, _frame: sigpipe.append(signum))
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGPIPE, previous)
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            output_closed()
        if sigpipe and _reader_gone(sys.stdout):
            output_closed()


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until the block is done, then raise it.

    For what must go out whole: the lines of an applied round and the count that sums them.
    Only where Python's own SIGINT handler is in place (the main thread, not ignored):

    >>> with deferred_interrupt():
    ...     print("one round, printed whole")
    one round, printed whole
    """
    import threading

    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


def _fail(exc: HVBalloonError, as_json: bool) -> None:
    if as_json:
        echo_json(error_report(exc))
    else:
        click.echo(f"error: {exc.describe('cli', with_hint=False)}", err=True)
        for hint in (exc.hint_text("cli"), exc.details.get("install")):
            if hint:
                click.echo(f"hint: {hint}", err=True)
    sys.exit(exc.exit_code)


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


# -- options -----------------------------------------------------------------------------------


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (the models' schema).")(fn)


#: The keyword arguments :func:`connection_options` adds to a command.
_CONNECTION_KEYS = ("timeout", "no_verify", "ca_file", "password_stdin")


def _a_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An empty path (``--ca-file "$UNSET"``) is a mistake, not the option left out: refused
    naming the option, rather than read as "no CA file" or "no inventory"."""
    if value is not None and not value.strip():
        raise click.BadParameter("an empty path; name the file (or leave the option out)", ctx, param)
    return value


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
        callback=_a_path,
        help="CA bundle to verify the hypervisor's certificate with.",
    )(fn)
    fn = click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from standard input (else HVBALLOON_PASSWORD).",
    )(fn)
    return fn


def connection(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the :func:`connection_options` out of a command's keyword arguments; ``--ca-file``
    with ``--no-verify`` is refused (the CA would be ignored: nothing is verified)."""
    opts = {k: kwargs.pop(k) for k in _CONNECTION_KEYS}
    if opts["no_verify"] and opts["ca_file"] is not None:
        raise InvalidRequestError(
            "--no-verify and --ca-file contradict each other: --ca-file names the CA to verify the "
            "hypervisor's certificate with, --no-verify turns verification off; give one"
        )
    return opts


def fleet_options(fn: F) -> F:
    """--inventory, --host-timeout, --concurrency (see :mod:`hvballoon.cli.fleet`)."""
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
        callback=_a_path,
        help="File of URIs: one per line (# comments), or a YAML list.",
    )(fn)
    return fn


# -- sessions ----------------------------------------------------------------------------------


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


def seconds_option(value: str | None, *, option: str, default: str) -> float:
    """The duration an option was given (``default`` when it was not given at all), above zero.
    An empty value is an error naming the option, not the default (``--timeout "$UNSET"``)."""
    seconds = parse_duration(default if value is None else value, what=option)
    if seconds <= 0:
        raise InvalidRequestError(f"{option} must be above zero, got {value!r}")
    return seconds


@contextmanager
def session(uri: str, opts: dict[str, Any]) -> Iterator[Any]:
    """A :class:`~hvballoon.Hypervisor` connected with the :func:`connection_options` given."""
    import hvballoon

    password = read_password_stdin() if opts.get("password_stdin") else None
    timeout = seconds_option(opts.get("timeout"), option="--timeout", default="30s")
    with hvballoon.connect(
        uri,
        password=password,
        timeout=timeout,
        verify=not opts.get("no_verify"),
        ca_file=opts.get("ca_file"),
    ) as hv:
        yield hv
