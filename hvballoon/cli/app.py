"""The ``hvballoon`` group: every command module's commands, under one entry point.

Nothing imports this module but :mod:`hvballoon.cli` (and ``python -m hvballoon.cli``): what the
commands share lives in :mod:`hvballoon.cli.common`.
"""

from __future__ import annotations

import click

from hvballoon.cli.autoballoon import autoballoon_cmd, release_cmd
from hvballoon.cli.common import install_warning_lines
from hvballoon.cli.config import config_cmd
from hvballoon.cli.fleet import exporter_cmd, watch_cmd
from hvballoon.cli.host import host_cmd
from hvballoon.cli.info import backends_cmd, scenarios_cmd, schema_cmd
from hvballoon.cli.simulate import fake_group, simulate_cmd
from hvballoon.cli.targets import capabilities_cmd, set_cmd, stats_cmd, vms_cmd

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hvballoon", prog_name="hvballoon")
def main() -> None:
    """Read guest memory statistics and move balloon / dynamic-memory targets on KVM, ESXi,
    Hyper-V — or on the built-in simulator (fake://seed).

    \b
    Quick look:
      hvballoon stats fake://seed
      hvballoon set fake://seed web01 6GiB --dry-run
    """
    install_warning_lines()


for _command in (
    backends_cmd,
    vms_cmd,
    stats_cmd,
    set_cmd,
    config_cmd,
    capabilities_cmd,
    host_cmd,
    scenarios_cmd,
    schema_cmd,
    watch_cmd,
    exporter_cmd,
    autoballoon_cmd,
    release_cmd,
    simulate_cmd,
    fake_group,
):
    main.add_command(_command)
