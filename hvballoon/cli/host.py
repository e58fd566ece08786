"""``hvballoon host``: the memory picture of every host behind a URI."""

from __future__ import annotations

from typing import Any

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
    session,
    table,
)

__all__ = ["host_cmd"]


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
