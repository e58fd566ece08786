"""``hvballoon autoballoon``: run the auto-balloon controller from a shell or as a service
(``hvballoon release``, which gives back what it lowered, is in :mod:`hvballoon.cli.release`).

Each round prints the decisions that move something (``--verbose``: every decision); ``--json``
prints one JSON object per decision and line, and a summary on stderr when it ends. ``--serve``
runs until stopped (SIGTERM, SIGINT), reloads ``--settings`` on SIGHUP and logs its decisions
instead of printing them. The controller journals what it lowers (``--journal``, by default one
file per URI under the state directory) so that ``hvballoon release`` can give it back, also
after a crash.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from hvballoon.cli.autoballoon_settings import Overrides, typed_size, vm_pairs
from hvballoon.cli.common import (
    EXIT_INTERRUPTED,
    OptionsCommand,
    connection,
    connection_options,
    echo_json,
    handle_errors,
    interrupted,
    json_option,
)
from hvballoon.cli.controller_session import check_journal_path, open_journal, session_factory
from hvballoon.cli.release import release_cmd  # re-exported: the command long lived here
from hvballoon.errors import HVBalloonError, InvalidRequestError
from hvballoon.units import format_size, parse_duration

__all__ = ["autoballoon_cmd", "release_cmd"]

log = logging.getLogger("hvballoon.autoballoon")

EPILOG = """\b
Examples:
  hvballoon autoballoon fake://seed --policy hvballoon --once --dry-run
  hvballoon autoballoon fake://seed --policy mom --rounds 30 --json
  hvballoon autoballoon qemu:///system --policy hvballoon \\
      --self-managed db01 --floor web01=4GiB --interval 10s
  hvballoon autoballoon esxi://root@esx01 --policy hvballoon --settings fleet.yaml
  hvballoon autoballoon qemu:///system --policy hvballoon \\
      --policy-option surge_fraction=0.8 --policy-option calm_seconds=20m
  hvballoon autoballoon qemu:///system --serve --settings /etc/hvballoon/autoballoon.yaml \\
      --metrics-address 127.0.0.1:10178 --log-format json --release-on-exit
  hvballoon autoballoon --check-settings /etc/hvballoon/autoballoon.yaml
\b
Policies: static (never moves), mom (oVirt MoM's default balloon rules), proxmox (Proxmox VE's
auto-ballooning), hvballoon (ours). --policy-option KEY=VALUE sets one of the policy's own
options (docs/policies.md, "Tuning the policy"), also the settings file's policy_options:
mapping (the command line wins); SIGHUP (--serve) applies changed ones, keeping what the policy
learned. The fake backend runs on virtual time: use --rounds.
The host's memory is read every round (hvballoon host URI shows it); --host-memory overrides
its physical memory (the host's use is then derived from the VMs, plus --host-overhead).
\b
A round whose sweep fails is skipped and the next waits longer (up to 60 s); after
--max-failed-rounds in a row the controller gives back what it lowered and keeps trying.
SIGTERM / SIGINT end it after the round under way (with --release-on-exit: then it releases);
SIGHUP (--serve) reads --settings again. Exit: 0, or 130 after SIGINT; when every round
failed, the last failure's code.
"""


# -- logging ------------------------------------------------------


def _log_setup(log_format: str | None, serve: bool) -> bool:
    """Structured logs (``--log-format``, or ``--serve``) replace the 'warning:' lines."""
    if log_format is None and not serve:
        return False
    from hvballoon._logformat import configure_logging
    from hvballoon.cli.common import uninstall_warning_lines

    uninstall_warning_lines()
    configure_logging("json" if log_format == "json" else "text")
    return True


def _line(d: Any) -> str:
    moved = d.action in ("raise", "lower")
    if "buffer_percent" in d.inputs and "buffer_percent_before" in d.inputs:
        # a Dynamic Memory buffer, not the target
        change = f"buffer {d.inputs['buffer_percent_before']} % -> {d.inputs['buffer_percent']} %"
    elif moved:
        change = f"{format_size(d.before_bytes)} -> {format_size(d.after_bytes)}"
    else:
        change = format_size(d.before_bytes)
    if moved and d.dry_run:
        change += " (dry run)"
    return f"[{d.round}] {d.vm}: {d.action} {change} [{d.rule}] {d.reason}"


def _log_decision(d: Any, verbose: bool) -> None:
    moved = d.action in ("raise", "lower", "error", "refused")
    if not moved and not verbose:
        return
    level = logging.WARNING if d.action == "error" else logging.INFO
    log.log(
        level,
        "%s",
        _line(d),
        extra={
            "event": "decision",
            "round": d.round,
            "vm": d.vm,
            "action": d.action,
            "rule": d.rule,
            "before_bytes": d.before_bytes,
            "after_bytes": d.after_bytes,
            "applied": d.applied,
            "error_code": d.error_code,
        },
    )


class _Signals:
    """SIGTERM / SIGINT stop the controller after its round (a second SIGINT interrupts at
    once); SIGHUP asks for the settings to be read again."""

    def __init__(self, ctl: Any, *, hup: bool) -> None:
        self.ctl = ctl
        self.stopped_by: str | None = None
        self.reload = False
        self._old: dict[int, Any] = {}
        self._install(signal.SIGTERM, self._stop)
        self._install(signal.SIGINT, self._stop)
        if hup and hasattr(signal, "SIGHUP"):
            self._install(signal.SIGHUP, self._hup)

    def _install(self, sig: int, handler: Callable[[int, Any], None]) -> None:
        self._old[sig] = signal.signal(sig, handler)

    def _stop(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.stopped_by == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt  # a second Ctrl-C: now
        self.stopped_by = self.stopped_by or name
        self.ctl.stop()

    def _hup(self, _signum: int, _frame: Any) -> None:
        self.reload = True
        self.ctl.wake()

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


# -- the command --------------------------------------------------------------------------------


@click.command("autoballoon", cls=OptionsCommand, epilog=EPILOG)
@click.argument("uri", required=False)
@click.option(
    "--policy",
    "policy_name",
    default="hvballoon",
    show_default=True,
    type=click.Choice(["static", "mom", "proxmox", "hvballoon"]),
    help="The policy deciding the targets.",
)
@click.option(
    "--policy-option",
    "policy_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="One of the policy's own options, e.g. calm_seconds=20m (repeatable; wins over the settings').",
)
@click.option("--interval", default=None, help="Time between rounds (default: the settings', else 10s).")
@click.option("--dry-run", is_flag=True, help="Decide and check each move, change nothing.")
@click.option("--once", is_flag=True, help="Run one round and exit.")
@click.option("--rounds", type=click.IntRange(min=1), help="Run this many rounds and exit.")
@click.option(
    "--serve",
    is_flag=True,
    help="Run as a service until stopped: decisions go to the log, SIGHUP reloads --settings.",
)
@click.option(
    "--host-memory",
    help="Override the host's physical memory (e.g. 128GiB); by default it is read every round.",
)
@click.option(
    "--host-overhead", default=None, help="With --host-memory: memory the host uses besides the VMs."
)
@click.option("--host-reserve", default=None, help="Memory the policies keep free on the host.")
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False), help="YAML/JSON settings.")
@click.option(
    "--check-settings",
    "check_file",
    type=click.Path(dir_okay=False),
    help="Only validate this settings file (no URI needed) and exit: 0 when it is valid.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Check the options and settings, connect and check the settings fit the hypervisor, then "
    "exit without a round.",
)
@click.option("--exclude", multiple=True, metavar="VM", help="Never touch this VM (repeatable).")
@click.option("--self-managed", multiple=True, metavar="VM", help="Never lower this VM (JVM, database).")
@click.option("--floor", multiple=True, metavar="VM=SIZE", help="Never below SIZE (repeatable).")
@click.option("--ceiling", multiple=True, metavar="VM=SIZE", help="Never above SIZE (repeatable).")
@click.option("--max-lower", help="Lower one VM by at most this much per round.")
@click.option("--max-changes", type=click.IntRange(min=1), help="At most this many changes per round.")
@click.option(
    "--max-failed-rounds",
    type=click.IntRange(min=1),
    help="Failed rounds in a row before releasing what was lowered (default: three minutes' worth).",
)
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False),
    help="The journal of what the controller lowers (default: one per URI under the state directory).",
)
@click.option(
    "--release-on-exit",
    is_flag=True,
    help="On SIGTERM / SIGINT (or after --rounds), give back what was lowered.",
)
@click.option(
    "--metrics-address",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics of the controller, its VMs and hosts (needs hvballoon[exporter]).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines on stderr: text, or one JSON object per line (default with --serve: text).",
)
@click.option(
    "--session-margins",
    is_flag=True,
    help="Check every lower against the session's guard-rail margins, even where the policy "
    "sizes each VM's headroom itself (hvballoon narrows them to the absolute margin).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse to start when the settings name a VM that does not exist or a floor above a "
    "VM's maximum (default: warn and run).",
)
@click.option("--verbose", "-v", is_flag=True, help="Print every decision, holds included.")
@json_option
@connection_options
@handle_errors
def autoballoon_cmd(
    uri: str | None,
    policy_name: str,
    policy_option: tuple[str, ...],
    interval: str | None,
    dry_run: bool,
    once: bool,
    rounds: int | None,
    serve: bool,
    host_memory: str | None,
    host_overhead: str | None,
    host_reserve: str | None,
    settings_file: str | None,
    check_file: str | None,
    check: bool,
    exclude: tuple[str, ...],
    self_managed: tuple[str, ...],
    floor: tuple[str, ...],
    ceiling: tuple[str, ...],
    max_lower: str | None,
    max_changes: int | None,
    max_failed_rounds: int | None,
    journal_path: str | None,
    release_on_exit: bool,
    metrics_address: str | None,
    log_format: str | None,
    session_margins: bool,
    strict: bool,
    verbose: bool,
    as_json: bool,
    **kw: Any,
) -> None:
    """Balloon the VMs of URI automatically by a policy, explaining every decision."""
    from hvballoon.policy import Controller
    from hvballoon.policy.options import parse_option_pairs

    opts = connection(kw)
    cli_options = parse_option_pairs(policy_option)
    check_journal_path(journal_path)
    if check_file is not None and (uri is not None or once or rounds or serve):
        raise InvalidRequestError(
            "--check-settings checks a file and runs nothing: it takes no URI, --once, --rounds or --serve"
        )
    if once and rounds:
        raise InvalidRequestError("--once runs one round: it takes no --rounds")
    if check_file is not None:
        checked = Overrides(policy=policy_name, policy_options=cli_options)
        settings = checked.settings(check_file)
        if as_json:
            echo_json(settings.model_dump(mode="json"))
        else:
            click.echo(f"{check_file}: valid autoballoon settings ({len(settings.vms)} VMs named)")
        return
    if uri is None:
        raise InvalidRequestError("autoballoon needs a URI (or --check-settings FILE)")
    if serve and (once or rounds):
        raise InvalidRequestError("--serve runs until stopped: it takes neither --once nor --rounds")
    seconds = None
    if interval is not None:
        seconds = parse_duration(interval, what="--interval")
        if seconds <= 0:
            raise InvalidRequestError("--interval must be above zero")
    vms: dict[str, dict[str, Any]] = {}
    for option, names in (("--exclude", exclude), ("--self-managed", self_managed)):
        if any(not n.strip() for n in names):
            # an empty name matches no VM: the one meant would be lowered
            raise InvalidRequestError(f"{option} takes a VM's name or id, got an empty one")
    for name in exclude:
        vms.setdefault(name, {})["exclude"] = True
    for name in self_managed:
        vms.setdefault(name, {})["self_managed"] = True
    for name, size in vm_pairs(floor, "floor").items():
        vms.setdefault(name, {})["floor"] = size
    for name, size in vm_pairs(ceiling, "ceiling").items():
        vms.setdefault(name, {})["ceiling"] = size
    overrides = Overrides(
        interval=seconds,
        host_memory=typed_size(host_memory, "host memory") if host_memory is not None else None,
        host_overhead=typed_size(host_overhead, "host overhead", allow_zero=True)
        if host_overhead is not None
        else None,
        host_reserve=typed_size(host_reserve, "host reserve", allow_zero=True)
        if host_reserve is not None
        else None,
        max_lower=typed_size(max_lower, "max lower") if max_lower is not None else None,
        max_changes=max_changes,
        max_failed_rounds=max_failed_rounds,
        session_margins=session_margins,
        vms=vms,
        policy=policy_name,
        policy_options=cli_options,
    )
    settings = overrides.settings(settings_file)
    listen = None
    if metrics_address is not None:
        from hvballoon.exporter import parse_listen

        listen = parse_listen(metrics_address, what="--metrics-address")
    structured = _log_setup(log_format, serve)
    connect = session_factory(uri, opts)
    hv = connect()
    first = [hv]

    def factory() -> Any:
        return first.pop() if first else connect()

    journal = None
    ctl = None
    try:
        journal = open_journal(hv, journal_path, dry_run)
        ctl = Controller(factory, policy_name, settings, dry_run=dry_run, journal=journal)
        ctl.hv  # noqa: B018 - the first session, the one just opened
        unfit = ctl.check_settings()
        if unfit and strict:
            raise InvalidRequestError(
                "the settings do not fit this hypervisor (--strict): " + "; ".join(unfit),
                uri=hv.uri,
                details={"problems": unfit},
            )
        for problem in unfit:  # a typo must not leave the intended VM silently unprotected
            if structured:
                log.warning("%s", problem, extra={"event": "settings_unfit"})
            else:
                click.echo(f"warning: {problem}", err=True)
        if check:
            advice = ctl.advice()
            if as_json:
                from hvballoon.outputs import AutoballoonCheck

                shown = str(journal.path) if journal.path is not None else None
                echo_json(
                    AutoballoonCheck(
                        uri=ctl.uri,
                        policy=policy_name,
                        policy_options=ctl.policy_options,
                        journal=shown,
                        problems=unfit,
                        advice=advice,
                    ).model_dump(mode="json")
                )
            else:
                click.echo(
                    f"{uri}: ready ({policy_name} policy{_shown_options(ctl.policy_options)}, "
                    f"journal {journal.path or 'in memory'})"
                )
                for line in advice:
                    click.echo(f"advice: {line}", err=True)
            return
        _run(
            ctl,
            journal,
            rounds=1 if once else rounds,
            serve=serve,
            settings_file=settings_file,
            overrides=overrides,
            listen=listen,
            release_on_exit=release_on_exit,
            structured=structured,
            verbose=verbose,
            as_json=as_json,
        )
    finally:
        if ctl is not None:
            ctl.close()  # the session it holds now (the first, or one that replaced it)
        for session in first:  # not handed to the controller yet
            session.close()
        if journal is not None:
            journal.close()


def _run(
    ctl: Any,
    journal: Any,
    *,
    rounds: int | None,
    serve: bool,
    settings_file: str | None,
    overrides: Overrides,
    listen: tuple[str, int] | None,
    release_on_exit: bool,
    structured: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    metrics = None
    if listen is not None:
        from hvballoon.policy.metrics import ControllerMetrics

        metrics = ControllerMetrics(ctl)
        host, port = metrics.start(*listen)
        log.info(
            "serving metrics on http://%s:%d/metrics", host, port, extra={"event": "metrics", "port": port}
        )
        if not structured:
            click.echo(f"metrics: http://{host}:{port}/metrics", err=True)
    signals = _Signals(ctl, hup=serve)

    def reload() -> None:
        if signals.reload:
            signals.reload = False
            _reload(ctl, overrides, settings_file)

    ok_rounds = 0
    last_error: HVBalloonError | None = None
    unreleased: HVBalloonError | None = None
    changed = 0
    if serve:
        log.info(
            "controlling %s with the %s policy%s every %g s (journal %s)",
            ctl.uri, ctl.policy.name, _shown_options(ctl.policy_options), ctl.settings.interval_seconds,
            journal.path or "in memory",
            extra={"event": "started", "uri": ctl.uri, "policy": ctl.policy.name,
                   "policy_options": ctl.policy_options},
        )  # fmt: skip
    try:
        for rnd in ctl.run(rounds=rounds, before_round=reload):
            # a failed round is said by the controller's log (a 'warning:' line without
            # --log-format)
            if rnd.ok:
                ok_rounds += 1
            else:
                last_error = rnd.error
            changed += sum(1 for d in rnd if d.applied)
            for d in rnd:
                if as_json:
                    click.echo(d.model_dump_json())
                elif serve:
                    _log_decision(d, verbose)
                elif verbose or d.action != "hold":
                    click.echo(_line(d))
        released = None
        if release_on_exit and not ctl.dry_run:
            try:
                released = ctl.release()
            except HVBalloonError as exc:  # nothing could be given back: said after the summary
                unreleased = exc
    except KeyboardInterrupt:
        said = f"after {ctl.health.rounds} round{'' if ctl.health.rounds == 1 else 's'}, {changed} targets changed"
        interrupted(said + "; a round under way when interrupted may have been cut short")
    finally:
        signals.restore()
        if metrics is not None:
            metrics.stop()
    _summary(ctl, journal, released, signals.stopped_by, structured=structured, as_json=as_json)
    if unreleased is not None:
        unreleased = _not_released(ctl, unreleased)
        if structured:  # else the error line says it
            log.error("%s", unreleased.message, extra={"event": "release_failed", "code": unreleased.code})
    if signals.stopped_by == "SIGINT":
        said = f"after {ctl.health.rounds} round{'' if ctl.health.rounds == 1 else 's'}, {changed} targets changed"
        if ctl.dry_run:
            said += " (a dry run: nothing was changed)"
        if released is not None:
            said += f"; released {released.released} VMs"
        click.echo(f"interrupted: {said}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    release_error = released.error() if released is not None else unreleased
    if release_error is not None:
        raise release_error
    if ok_rounds == 0 and last_error is not None:
        raise last_error


def _reload(ctl: Any, overrides: Overrides, settings_file: str | None) -> bool:
    """Read the settings again (SIGHUP) and put them in force from the next round; a file that
    does not validate keeps those in force, and says why. What the new settings cannot do on
    the hypervisor is said as at the start; a hypervisor that does not answer now leaves that
    check to the next round that reads the VMs (a reload never stops the controller)."""
    try:
        new = overrides.settings(settings_file)
        ctl.reconfigure(new)  # checked when read: a policy given as an object
    except HVBalloonError as exc:
        log.warning(
            "keeping the settings in force: %s",
            exc.message,
            extra={"event": "reload_failed", "code": exc.code},
        )
        return False
    log.info(
        "settings read again from %s%s",
        settings_file or "the command line",
        _shown_options(ctl.policy_options, " (policy options: %s)"),
        extra={"event": "reloaded", "policy_options": ctl.policy_options},
    )
    try:
        unfit = ctl.check_settings()
    except HVBalloonError as exc:
        log.warning(
            "the settings will be checked against the VMs at the next round that reads them: %s",
            exc.message,
            extra={"event": "settings_unchecked", "code": exc.code},
        )
        return True
    for problem in unfit:  # a typo must not leave the intended VM silently unprotected
        log.warning("%s", problem, extra={"event": "settings_unfit"})
    return True


def _not_released(ctl: Any, exc: HVBalloonError) -> HVBalloonError:
    """The error of a release on exit that could not be made at all, of the same class, saying
    what is left lowered and how to give it back."""
    held = len(ctl.lowered())
    what = f"{held} VM{'' if held == 1 else 's'} it lowered" if held else "what it lowered"
    error = type(exc)(
        f"could not give back {what} on exit: {exc.message}; the journal holds "
        f"{'them' if held != 1 else 'it'}: `hvballoon release {ctl.uri}` gives "
        f"{'them' if held != 1 else 'it'} back",
        backend=exc.backend,
        uri=exc.uri,
        native_code=exc.native_code,
        retryable=exc.retryable,
        details={**exc.details, "lowered_vms": held},
    )
    return error


def _shown_options(options: dict[str, Any], form: str = " with %s") -> str:
    """The policy's options in force, for a line: ``' with calm_seconds=20m'``, or nothing."""
    from hvballoon.policy.options import format_options

    return form % format_options(options) if options else ""


def _summary(
    ctl: Any, journal: Any, released: Any, stopped_by: str | None, *, structured: bool, as_json: bool
) -> None:
    from hvballoon.outputs import AutoballoonSummary

    h = ctl.health
    by_action: dict[str, int] = {}
    for (action, _rule), n in h.decisions.items():
        by_action[action] = by_action.get(action, 0) + n
    summary = AutoballoonSummary(
        uri=ctl.uri,
        policy=ctl.policy.name,
        policy_options=ctl.policy_options,
        dry_run=ctl.dry_run,
        rounds=h.rounds,
        failed_rounds=h.failed_rounds,
        failed_by_code=dict(sorted(h.failed_by_code.items())),
        decisions=dict(sorted(by_action.items())),
        targets_changed=h.moves_made,
        moves_failed=h.moves_failed,
        reconnects=h.reconnects,
        fail_open_releases=h.fail_open_releases,
        lowered_vms=len(ctl.lowered()),
        journal=str(journal.path) if journal.path is not None else None,
        released=released,
        stopped_by=stopped_by,
    )
    failures = ", ".join(f"{code} {n}" for code, n in summary.failed_by_code.items())
    text = (
        f"autoballoon: {summary.rounds} rounds, {summary.failed_rounds} failed"
        + (f" ({failures})" if failures else "")
        + f", {summary.targets_changed} targets changed, {summary.moves_failed} moves failed"
        + f", {summary.lowered_vms} VMs held lowered"
        + (f" (journal {summary.journal})" if summary.journal else "")
        + (f"; released {released.released} VMs on exit" if released is not None else "")
    )
    if structured:
        log.info(
            "%s", text, extra={"event": "summary", **summary.model_dump(mode="json", exclude={"released"})}
        )
    elif as_json:
        click.echo(summary.model_dump_json(), err=True)
    else:
        click.echo(text, err=True)
