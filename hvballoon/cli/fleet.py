"""The fleet side of the ``hvballoon`` command: several hosts at once, ``watch`` and ``exporter``.

Positional arguments that contain ``://`` are URIs, the others VM names; ``--inventory FILE``
adds URIs (one per line, or a YAML list). Hosts are queried concurrently, each within
``--host-timeout``; a failing host is reported with its error code and never stops the others.
Exit code: 0 when every host answered, else the exit code of the first failed host's error (in
the order given), else 7 when a VM named matched no host.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import click

from hvballoon._results import first_few
from hvballoon.cli.common import (
    HOST_COLUMNS,
    STATS_COLUMNS,
    OptionsCommand,
    connection,
    connection_options,
    console,
    fleet_options,
    handle_errors,
    host_row,
    interrupted,
    json_option,
    read_password_stdin,
    seconds_option,
    stats_footnotes,
    stats_row,
    table,
    warn_line,
)
from hvballoon.errors import InvalidRequestError, VMNotFoundError
from hvballoon.exporter import DEFAULT_PORT
from hvballoon.fleet import Fleet, HostResult, first_error, read_inventory, split_targets
from hvballoon.outputs import FleetStats, HostSweep, WatchFleet, WatchHost, WatchSweep
from hvballoon.units import parse_duration

__all__ = ["exporter_cmd", "run_fleet_stats", "watch_cmd"]

_STATS_COLUMNS = ["host", *STATS_COLUMNS]


def _uris_and_vms(targets: tuple[str, ...], inventory: str | None) -> tuple[list[str], list[str]]:
    uris, vms = split_targets(targets)
    if inventory:
        uris.extend(read_inventory(inventory))
    if not uris:
        raise InvalidRequestError(
            "name at least one hypervisor URI (an argument containing '://') or --inventory FILE"
        )
    return uris, vms


def _make_fleet(
    uris: list[str],
    conn: dict[str, Any],
    host_timeout: str | None,
    concurrency: int,
    keep: bool,
    *,
    host_stats: bool = False,
    notes: bool = False,
) -> Fleet:
    password = read_password_stdin() if conn.get("password_stdin") else None
    timeout = seconds_option(conn.get("timeout"), option="--timeout", default="30s")
    deadline = (
        seconds_option(host_timeout, option="--host-timeout", default="30s")
        if host_timeout is not None
        else timeout
    )
    return Fleet(
        uris,
        password=password,
        timeout=timeout,
        host_timeout=deadline,
        verify=not conn.get("no_verify"),
        ca_file=conn.get("ca_file"),
        concurrency=concurrency,
        keep_sessions=keep,
        host_stats=host_stats,
        frees_nothing_notes=notes,
    )


def _missing(results: list[HostResult], vms: list[str]) -> list[str]:
    """VM names/ids asked for that no answering host has (only meaningful if all answered),
    each once however often it was named."""
    seen = {key for r in results for s in r.stats for key in (s.vm.name, s.vm.id)}
    return [v for v in dict.fromkeys(vms) if v not in seen]


def _exit_code(results: list[HostResult], missing: list[str]) -> int:
    err = first_error(results)
    if err is not None:
        return err.exit_code
    return VMNotFoundError.exit_code if missing else 0


def _summary(results: list[HostResult], vms: list[str], *, hosts: bool = False) -> FleetStats:
    """The fleet's answer; with ``hosts`` (watch), each host's memory picture too."""
    missing = _missing(results, vms)
    code = _exit_code(results, missing)
    entry = WatchHost if hosts else HostSweep
    return (WatchFleet if hosts else FleetStats)(
        ok=code == 0,
        exit_code=code,
        hosts=[entry.model_validate(r.to_dict("cli", hosts=hosts)) for r in results],
        missing_vms=missing,
    )


def _render(results: list[HostResult], title: str | None = None) -> tuple[list[Any], list[str], list[Any]]:
    """The tables of a sweep in the order shown: the stats table, its footnotes (as
    ``hvballoon stats``'s, right under it), the hosts' and their memory's tables."""
    marks, footnotes = stats_footnotes([s for r in results for s in r.stats])
    rows = []
    for r in results:
        for s in r.stats:
            rows.append([r.uri, *stats_row(s, marks)])
    host_rows = [
        [
            r.uri,
            r.backend or "-",
            "ok" if r.ok else (r.error.code if r.error else "-"),
            str(len(r.stats)) if r.ok else "-",
            f"{r.elapsed_seconds:.2f}s",
            r.error.message if r.error else "-",
        ]
        for r in results
    ]
    # no VM to show (none named exists, or the hosts have none): the hosts' table says so; a
    # watch keeps its titled table, the time of each sweep
    stats = [table(_STATS_COLUMNS, rows, title=title)] if rows or title else []
    after = [table(["host", "backend", "status", "vms", "time", "error"], host_rows, title="hosts")]
    memory = [[r.uri, *host_row(h)] for r in results for h in r.hosts]
    memory += [
        [r.uri, f"error: {r.host_error.code}", *["-"] * (len(HOST_COLUMNS) - 1)]
        for r in results
        if r.host_error is not None
    ]
    if memory:
        after.append(table(["uri", *HOST_COLUMNS], memory, title="host memory"))
    return stats, footnotes, after


def _print(out: Any, results: list[HostResult], title: str | None = None) -> None:
    from rich.console import Group

    stats, footnotes, after = _render(results, title=title)
    if stats:
        out.print(Group(*stats))
    for line in footnotes:
        click.echo(line)
    out.print(Group(*after))


def run_fleet_stats(
    targets: tuple[str, ...],
    inventory: str | None,
    conn: dict[str, Any],
    host_timeout: str | None,
    concurrency: int,
    as_json: bool,
) -> None:
    """``hvballoon stats`` over several hosts; exits with the fleet's exit code."""
    uris, vms = _uris_and_vms(targets, inventory)
    with _make_fleet(uris, conn, host_timeout, concurrency, keep=False, notes=True) as fleet:
        results = fleet.sweep(vms or None)
    summary = _summary(results, vms)
    if as_json:
        click.echo(json.dumps(summary.model_dump(mode="json"), indent=2))
    else:
        _print(console(), results)
        for r in results:
            if r.error is not None:
                click.echo(f"error: {r.uri}: {r.error.code}: {r.error.describe('cli')}", err=True)
        if summary.missing_vms:
            named = first_few(summary.missing_vms, show=repr)  # every one is in --json's missing_vms
            click.echo(f"error: no host has a VM named or with id {named}", err=True)
    sys.exit(summary.exit_code)


@contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back until the block is done, then raise it: output and the count
    of what was output stay in step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@click.command(
    "watch",
    cls=OptionsCommand,
    epilog="""\b
Examples:
  hvballoon watch fake://seed
  hvballoon watch qemu:///system web01 db01 --interval 2s
  hvballoon watch -i hosts.txt --json --count 3     # one JSON line per sweep
""",
)
@click.argument("targets", nargs=-1, metavar="[URI…] [VM…]")
@click.option("--interval", default="5s", show_default=True, help="Time between sweeps (e.g. 2s, 1m).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after N sweeps (default: until Ctrl-C).")
@fleet_options
@connection_options
@json_option
@handle_errors
def watch_cmd(
    targets: tuple[str, ...],
    interval: str,
    count: int | None,
    inventory: str | None,
    host_timeout: str | None,
    concurrency: int,
    as_json: bool,
    **kw: Any,
) -> None:
    """Refresh a live table of the stats of every VM on one or several hosts, and of each
    host's memory (physical, used, free, swap, what its running VMs were promised and hold,
    overcommit).

    With --json, print one JSON line per sweep ({"sweep", "at", "ok", "exit_code", "hosts",
    "missing_vms"}; each host also has "host_stats" and "host_error"). With --count N the exit
    code is the last sweep's (0 if every host answered).
    """
    every = parse_duration(interval, what="--interval")
    if every <= 0:
        raise InvalidRequestError("--interval must be above zero")
    uris, vms = _uris_and_vms(targets, inventory)
    conn = connection(kw)
    out = console()
    code = 0
    done = 0
    last: FleetStats | None = None
    stopped = False
    with _make_fleet(uris, conn, host_timeout, concurrency, keep=True, host_stats=True, notes=True) as fleet:
        live: Any = None
        if not as_json and out.is_terminal:
            from rich.live import Live

            live = Live(console=out, auto_refresh=False, transient=False)
            live.start()
        try:
            while count is None or done < count:
                started = time.monotonic()
                results = fleet.sweep(vms or None)
                at = datetime.now(timezone.utc)
                last = _summary(results, vms, hosts=True)
                code = last.exit_code
                title = f"sweep {done + 1} at {at.astimezone().strftime('%H:%M:%S')} (every {interval})"
                with _ctrl_c_deferred():  # a sweep shown is a sweep counted in the summary
                    if as_json:
                        line = WatchSweep(sweep=done + 1, at=at, **dict(last))  # last: a WatchFleet
                        click.echo(json.dumps(line.model_dump(mode="json")))
                    elif live is not None:
                        from rich.console import Group
                        from rich.text import Text

                        stats, footnotes, after = _render(results, title=title)
                        notes = [Text(line) for line in footnotes]
                        live.update(Group(*stats, *notes, *after), refresh=True)
                    else:
                        _print(out, results, title=title)
                    sys.stdout.flush()
                    done += 1
                if count is not None and done >= count:
                    break
                time.sleep(max(0.0, every - (time.monotonic() - started)))
        except KeyboardInterrupt:
            stopped = True
        finally:
            if live is not None:
                live.stop()
    if stopped:
        said = f"{done} sweep{'' if done == 1 else 's'} of {len(uris)} host{'' if len(uris) == 1 else 's'}"
        if last is not None:
            answered = sum(1 for h in last.hosts if h.ok)
            said += f"; in the last, {answered} answered"
            if last.missing_vms:
                said += f" and {first_few(last.missing_vms)} matched no VM"
        interrupted(said)
    sys.exit(code)


@click.command(
    "exporter",
    cls=OptionsCommand,
    epilog="""\b
Examples:
  hvballoon exporter qemu:///system --listen 127.0.0.1:10177
  HVBALLOON_PASSWORD=… hvballoon exporter -i hosts.txt --interval 30s --host-timeout 8s
  curl -s http://127.0.0.1:10177/metrics | grep hvballoon_host_overcommit_ratio
""",
)
@click.argument("uris", nargs=-1, metavar="[URI…]")
@click.option(
    "--listen",
    default=f"127.0.0.1:{DEFAULT_PORT}",
    show_default=True,
    help="ADDRESS:PORT to serve /metrics on (port 0: any free port; beyond loopback: warned about).",
)
@click.option(
    "--interval",
    default="15s",
    show_default=True,
    help="A scrape younger than this reuses the last sweep (0: sweep on every scrape).",
)
@fleet_options
@connection_options
@handle_errors
def exporter_cmd(
    uris: tuple[str, ...],
    listen: str,
    interval: str,
    inventory: str | None,
    host_timeout: str | None,
    concurrency: int,
    **kw: Any,
) -> None:
    """Serve every VM's and every host's memory figures to Prometheus (needs: pip install
    'hvballoon[exporter]').

    Each scrape is answered from one concurrent sweep of every host, or from the last sweep when
    it is younger than --interval. Keep --host-timeout below Prometheus' scrape_timeout.
    --host-timeout defaults to 10s here. Prints the address it listens on (and a warning when it
    is beyond loopback), then serves until interrupted (SIGINT / SIGTERM).
    """
    from hvballoon.exporter import Exporter, parse_listen

    host_uris, vms = _uris_and_vms(uris, inventory)
    if vms:
        raise InvalidRequestError(f"the exporter exports every VM; not URIs: {', '.join(vms)}")
    address, port = parse_listen(listen)
    every = parse_duration(interval, what="--interval")
    fleet = _make_fleet(
        host_uris, connection(kw), "10s" if host_timeout is None else host_timeout, concurrency, keep=True
    )
    exporter = Exporter(fleet, interval=every)

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    bound = exporter.start(address, port)
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    click.echo(f"serving http://{shown}:{bound[1]}/metrics for {len(host_uris)} host(s)", err=True)
    if exporter.exposure_warning is not None:
        # logged already, and the command prints the library's warnings once: this is a no-op
        # then, and the line itself where the log went elsewhere
        warn_line(exporter.exposure_warning)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop()
