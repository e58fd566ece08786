"""``hvballoon config``: show a VM's memory configuration, or change the fields given."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from hvballoon._results import first_few
from hvballoon.cli.common import (
    NegativeValuesCommand,
    change_lines,
    connection,
    connection_options,
    echo_json,
    echo_results,
    handle_errors,
    interrupted,
    json_option,
    session,
)
from hvballoon.errors import InvalidRequestError
from hvballoon.models import ConfigUpdate, MemoryConfig
from hvballoon.units import format_size

if TYPE_CHECKING:
    from hvballoon.kinds import Kind

__all__ = ["config_cmd", "config_options"]

F = TypeVar("F", bound=Callable[..., Any])


def config_options(fn: F) -> F:
    """One option per field of :class:`~hvballoon.models.ConfigUpdate`, spelled, typed and
    explained as the field declares; each arrives as ``set_config``'s keyword (``None`` when
    not given). Sizes and choices are checked by ``set_config``, so a bad value gets the same
    error (and ``--json`` report) as through the API."""
    for option in reversed(ConfigUpdate.options()):
        decls = (option.cli, option.keyword)
        help_text = option.help_text("cli")
        if option.kind == "bool":
            fn = click.option(*decls, default=None, help=help_text)(fn)
        elif option.kind == "int":
            fn = click.option(*decls, type=int, default=None, help=help_text)(fn)
        else:
            metavar = "SIZE" if option.kind == "size" else f"[{'|'.join(option.choices)}]"
            fn = click.option(*decls, metavar=metavar, default=None, help=help_text)(fn)
    return fn


@click.command(
    "config",
    cls=NegativeValuesCommand,
    epilog="""\b
Examples:
  hvballoon config fake://seed web01                          # show
  hvballoon config 'fake://seed?flavor=hyperv' web01 --maximum 20GiB --buffer-percent 25
  hvballoon config 'fake://seed?flavor=esxi' db01 --reservation 4GiB --limit unlimited
  hvballoon config 'fake://seed?flavor=esxi' db01 --shares-level high --memory-reservation-lock
  hvballoon config 'fake://seed?flavor=hyperv' web01 web02 web03 --buffer-percent 30
""",
)
@click.argument("uri")
@click.argument("vms", metavar="VM…", nargs=-1, required=True)
@config_options
@click.option("--dry-run", is_flag=True)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="With several VMs: change the valid ones even when others are refused (exit 12).",
)
@connection_options
@json_option
@handle_errors
def config_cmd(
    uri: str, vms: tuple[str, ...], dry_run: bool, skip_invalid: bool, as_json: bool, **kw: Any
) -> None:
    """Show VM's memory configuration, or change the fields given; several VMs at once.

    Several VMs are all read in one bulk read and checked first; when one is refused nothing is
    changed (unless --skip-invalid), and when some change and others fail the exit code is 12
    (partial_change). --json then prints a TargetsReport, as `set URI VM=SIZE …` does; shown
    without fields, several VMs' configurations are a list.
    """
    conn = connection(kw)
    fields = {k: v for k, v in kw.items() if v is not None}
    if skip_invalid and len(vms) < 2:
        raise InvalidRequestError("--skip-invalid applies to several VMs: name more than one")
    if skip_invalid and not fields:
        raise InvalidRequestError("--skip-invalid applies to a change: give a field to change")
    if fields and len(set(vms)) < len(vms):
        twice = sorted({v for v in vms if vms.count(v) > 1})
        raise InvalidRequestError(f"VM {', '.join(map(repr, twice))} is named twice: give each VM once")
    with session(uri, conn) as hv:
        if not fields:
            # a read: a VM named twice (or by name and by id) is shown once, as `stats` does
            configs = hv.get_configs(list(vms)) if len(vms) > 1 else [hv.get_config(vms[0])]
            if as_json:
                dumped = [cfg.model_dump(mode="json") for cfg in configs]
                echo_json(dumped if len(vms) > 1 else dumped[0])
                return
            for cfg in configs:
                _echo_config(cfg, hv.backend.kind)
            return
        if len(vms) > 1:
            from hvballoon import TargetsInterrupted

            try:
                results = hv.set_configs(
                    [(vm, fields) for vm in vms], dry_run=dry_run, skip_invalid=skip_invalid
                )
            except TargetsInterrupted as stop:  # Ctrl-C while applying: say what was applied
                echo_results(stop.results, as_json, interrupted=True, waited=False)
                interrupted(_stopped_configuring(stop))
            except KeyboardInterrupt:  # before anything was sent
                interrupted(
                    f"no configuration was changed: stopped before the configurations of {len(vms)} VMs were sent"
                )
        else:
            change = hv.set_config(vms[0], dry_run=dry_run, **fields)
    if len(vms) > 1:
        echo_results(results, as_json)
        return
    if as_json:
        echo_json(change.model_dump(mode="json"))
        return
    for line in change_lines(change):
        click.echo(line)


def _stopped_configuring(stop: Any) -> str:
    """What ``config URI VM VM… --field…`` says when Ctrl-C comes while the configurations are
    changed: whose were changed, whose were not sent, and whose failed."""
    results = stop.results
    made = [k for k in results if k in results.made]
    said = f"the configurations of {len(made)} of {len(results)} VMs were changed"
    said += f" ({first_few(made)})" if made else ""
    said += "; stopped while changing them"
    if stop.not_sent:
        said += f"; not sent: {first_few(stop.not_sent)}"
    if results.errors:
        said += f"; failed: {first_few(list(results.errors))}"
    return said


def _echo_config(cfg: MemoryConfig, kind: Kind | None) -> None:
    click.echo(f"{cfg.vm.name} ({cfg.mechanism.value})")
    for key, value in cfg.model_dump(exclude={"vm", "mechanism", "extra"}).items():
        if value is not None:
            shown = format_size(value) if key.endswith("_bytes") else value
            click.echo(f"  {key.removesuffix('_bytes')}: {shown}")
    # what its configuration means for ballooning it (the kind's rule): a lower that frees nothing
    note = kind.frees_nothing_reason(cfg) if kind is not None else None
    if note:
        click.echo(f"  note: {note}")
