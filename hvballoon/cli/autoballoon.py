"""``hvballoon autoballoon``: run the auto-balloon controller from a shell.

Each round prints the decisions that move something
(``--verbose``: every decision); ``--json`` prints one JSON object per decision and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from hvballoon.cli.common import (
    connection,
    connection_options,
    deferred_interrupt,
    handle_errors,
    interrupted,
    json_option,
    session,
)
from hvballoon.errors import InvalidRequestError
from hvballoon.units import format_size, parse_duration, parse_size

__all__ = ["autoballoon_cmd"]

EPILOG = """\b
Examples:
  hvballoon autoballoon fake://seed --policy hvballoon --once --dry-run
  hvballoon autoballoon fake://seed --policy mom --rounds 30 --json
  hvballoon autoballoon qemu:///system --policy hvballoon \\
      --self-managed db01 --floor web01=4GiB --interval 10s
  hvballoon autoballoon esxi://root@esx01 --policy hvballoon --settings fleet.yaml
\b
Policies: static (never moves), mom (oVirt MoM's default balloon rules), proxmox (Proxmox VE's
auto-ballooning), hvballoon (ours). The fake backend runs on virtual time: use --rounds.
The host's memory is read every round (hvballoon host URI shows it); --host-memory overrides
its physical memory (the host's use is then derived from the VMs, plus --host-overhead).
"""


def _pairs(values: tuple[str, ...], what: str) -> dict[str, int]:
    out = {}
    for item in values:
        name, sep, size = item.partition("=")
        if not sep or not name:
            raise InvalidRequestError(f"--{what} takes VM=SIZE (e.g. web01=4GiB), got {item!r}")
        out[name] = parse_size(size, what=what)
    return out


def _load_settings(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    text = Path(path).read_text("utf-8")
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{path}: the settings file must hold a mapping")
    return data


def _line(d: Any) -> str:
    moved = d.action in ("raise", "lower")
    change = (
        f"{format_size(d.before_bytes)} -> {format_size(d.after_bytes)}"
        if moved
        else format_size(d.before_bytes)
    )
    if moved and d.dry_run:
        change += " (dry run)"
    return f"[{d.round}] {d.vm}: {d.action} {change} [{d.rule}] {d.reason}"


@click.command("autoballoon", epilog=EPILOG)
@click.argument("uri")
@click.option(
    "--policy",
    "policy_name",
    default="hvballoon",
    show_default=True,
    type=click.Choice(["static", "mom", "proxmox", "hvballoon"]),
    help="The policy deciding the targets.",
)
@click.option("--interval", default="10s", show_default=True, help="Time between rounds.")
@click.option("--dry-run", is_flag=True, help="Decide and check each move, change nothing.")
@click.option("--once", is_flag=True, help="Run one round and exit.")
@click.option("--rounds", type=click.IntRange(min=1), help="Run this many rounds and exit.")
@click.option(
    "--host-memory",
    help="Override the host's physical memory (e.g. 128GiB); by default it is read every round.",
)
@click.option(
    "--host-overhead", default="0", help="With --host-memory: memory the host uses besides the VMs."
)
@click.option("--host-reserve", default="0", help="Memory the policies keep free on the host.")
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False), help="YAML/JSON settings.")
@click.option("--exclude", multiple=True, metavar="VM", help="Never touch this VM (repeatable).")
@click.option("--self-managed", multiple=True, metavar="VM", help="Never lower this VM (JVM, database).")
@click.option("--floor", multiple=True, metavar="VM=SIZE", help="Never below SIZE (repeatable).")
@click.option("--ceiling", multiple=True, metavar="VM=SIZE", help="Never above SIZE (repeatable).")
@click.option("--max-lower", help="Lower one VM by at most this much per round.")
@click.option("--max-changes", type=click.IntRange(min=1), help="At most this many changes per round.")
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
    uri: str,
    policy_name: str,
    interval: str,
    dry_run: bool,
    once: bool,
    rounds: int | None,
    host_memory: str | None,
    host_overhead: str,
    host_reserve: str,
    settings_file: str | None,
    exclude: tuple[str, ...],
    self_managed: tuple[str, ...],
    floor: tuple[str, ...],
    ceiling: tuple[str, ...],
    max_lower: str | None,
    max_changes: int | None,
    session_margins: bool,
    strict: bool,
    verbose: bool,
    as_json: bool,
    **kw: Any,
) -> None:
    """Balloon the VMs of URI automatically by a policy, explaining every decision."""
    from hvballoon.policy import Controller, ControllerSettings

    opts = connection(kw)
    data = _load_settings(settings_file)
    seconds = parse_duration(interval, what="interval")
    if seconds <= 0:
        raise InvalidRequestError("--interval must be above zero")
    data["interval_seconds"] = seconds
    if host_memory is not None:
        data["host_memory_bytes"] = parse_size(host_memory, what="host memory")
    data.setdefault("host_overhead_bytes", parse_size(host_overhead, what="host overhead", allow_zero=True))
    data.setdefault("host_reserve_bytes", parse_size(host_reserve, what="host reserve", allow_zero=True))
    if max_lower is not None:
        data["max_lower_bytes_per_round"] = parse_size(max_lower, what="max lower")
    if max_changes is not None:
        data["max_changes_per_round"] = max_changes
    if session_margins:
        data["policy_guard_rails"] = False
    vms: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (data.get("vms") or {}).items()}
    for name in exclude:
        vms.setdefault(name, {})["exclude"] = True
    for name in self_managed:
        vms.setdefault(name, {})["self_managed"] = True
    for name, size in _pairs(floor, "floor").items():
        vms.setdefault(name, {})["floor"] = size
    for name, size in _pairs(ceiling, "ceiling").items():
        vms.setdefault(name, {})["ceiling"] = size
    data["vms"] = vms
    with session(uri, opts) as hv:
        from pydantic import ValidationError

        try:
            settings = ControllerSettings.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InvalidRequestError(f"invalid autoballoon settings: {problems}") from None
        ctl = Controller(hv, policy_name, settings, dry_run=dry_run)
        unfit = ctl.check_settings()
        if unfit and strict:
            raise InvalidRequestError(
                "the settings do not fit this hypervisor (--strict): " + "; ".join(unfit),
                uri=hv.uri,
                details={"problems": unfit},
            )
        for problem in unfit:  # a typo must not leave the intended VM silently unprotected
            click.echo(f"warning: {problem}", err=True)
        count = 1 if once else rounds
        done = changed = 0
        try:
            for decisions in ctl.run(rounds=count):
                with deferred_interrupt():  # an applied round's lines and its count go out whole
                    done += 1
                    changed += sum(1 for d in decisions if d.applied)
                    for d in decisions:
                        if as_json:
                            click.echo(d.model_dump_json())
                        elif verbose or d.action not in ("hold",):
                            click.echo(_line(d))
        except KeyboardInterrupt:
            said = f"after {done} round{'' if done == 1 else 's'}, {changed} targets changed"
            if dry_run:
                said += " (a dry run: nothing was changed)"
            interrupted(said + "; a round under way when interrupted may have been cut short")
