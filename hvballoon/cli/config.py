"""``hvballoon config``: show a VM's memory configuration, or change the fields given."""

from __future__ import annotations

from typing import Any

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
from hvballoon.units import format_size

__all__ = ["config_cmd"]


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
