"""``hvballoon config``: show a VM's memory configuration, or change the fields given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from hvballoon.cli.common import (
    NegativeValuesCommand,
    change_lines,
    connection,
    connection_options,
    echo_json,
    handle_errors,
    json_option,
    session,
)
from hvballoon.models import ConfigUpdate
from hvballoon.units import format_size

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
  hvballoon config 'fake://seed?flavor=hyperv' web01 --maximum 12GiB --buffer-percent 20
  hvballoon config 'fake://seed?flavor=esxi' db01 --reservation 4GiB --limit unlimited
  hvballoon config 'fake://seed?flavor=esxi' db01 --shares-level high --memory-reservation-lock
""",
)
@click.argument("uri")
@click.argument("vm")
@config_options
@click.option("--dry-run", is_flag=True)
@connection_options
@json_option
@handle_errors
def config_cmd(uri: str, vm: str, dry_run: bool, as_json: bool, **kw: Any) -> None:
    """Show VM's memory configuration, or change the fields given."""
    conn = connection(kw)
    fields = {k: v for k, v in kw.items() if v is not None}
    with session(uri, conn) as hv:
        if not fields:
            cfg = hv.get_config(vm)
            if as_json:
                echo_json(cfg.model_dump(mode="json"))
                return
            click.echo(f"{cfg.vm.name} ({cfg.mechanism.value})")
            for key, value in cfg.model_dump(exclude={"vm", "mechanism", "extra"}).items():
                if value is not None:
                    shown = format_size(value) if key.endswith("_bytes") else value
                    click.echo(f"  {key.removesuffix('_bytes')}: {shown}")
            return
        change = hv.set_config(vm, dry_run=dry_run, **fields)
    if as_json:
        echo_json(change.model_dump(mode="json"))
        return
    for line in change_lines(change):
        click.echo(line)
