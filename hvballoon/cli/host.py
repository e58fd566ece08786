"""``hvballoon host``: the memory picture of every host behind a URI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from hvballoon.cli.common import (
    HOST_COLUMNS,
    NegativeValuesCommand,
    connection,
    connection_options,
    console,
    echo_json,
    handle_errors,
    host_row,
    json_option,
    printable,
    session,
    table,
)
from hvballoon.units import format_size

if TYPE_CHECKING:
    from hvballoon.models import HostStats

__all__ = ["host_cmd", "pool_footnotes"]


def pool_footnotes(hosts: list[HostStats]) -> list[str]:
    """A line under the host table for each host that says it keeps a huge-page pool (the kvm
    backend's ``extra["hugepage_pool_bytes"]``, docs/backends/kvm.md): part of its physical
    memory, never of its free memory, and only huge-page-backed guests draw on it."""
    lines = []
    for h in hosts:
        pool, free = h.extra.get("hugepage_pool_bytes"), h.extra.get("hugepage_pool_free_bytes")
        if isinstance(pool, int) and pool > 0:
            shown_free = f", {format_size(free)} of it free" if isinstance(free, int) else ""
            lines.append(
                f"{printable(h.host)}: a huge-page pool of {format_size(pool)}{shown_free}, in physical "
                "but never in free (only guests backed by huge pages use it)"
            )
    return lines


@click.command(
    "host",
    cls=NegativeValuesCommand,
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
    with session(uri, connection(kw)) as hv:
        hosts = hv.get_host_stats()
    if as_json:
        echo_json([h.model_dump(mode="json") for h in hosts])
        return
    console().print(table(HOST_COLUMNS, [host_row(h) for h in hosts], title=hv.uri))
    for line in pool_footnotes(hosts):
        click.echo(line)
