"""The ``hvballoon`` group: every command module's commands, under one entry point.

Nothing imports this module but :mod:`hvballoon.cli` (and ``python -m hvballoon.cli``): what the
commands share lives in :mod:`hvballoon.cli.common`. A command's module is imported when the
command is looked up: ``hvballoon stats URI`` loads the commands on targets, not the controller
and the exporter behind ``autoballoon`` and ``watch`` (about 0.15 s of every run).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from hvballoon.cli.common import install_warning_lines, output_closed, output_watched

__all__ = ["main"]

#: each command's name → the module and the attribute that define it
COMMANDS: dict[str, tuple[str, str]] = {
    "backends": ("hvballoon.cli.info", "backends_cmd"),
    "vms": ("hvballoon.cli.targets", "vms_cmd"),
    "stats": ("hvballoon.cli.targets", "stats_cmd"),
    "set": ("hvballoon.cli.targets", "set_cmd"),
    "config": ("hvballoon.cli.config", "config_cmd"),
    "capabilities": ("hvballoon.cli.targets", "capabilities_cmd"),
    "host": ("hvballoon.cli.host", "host_cmd"),
    "scenarios": ("hvballoon.cli.info", "scenarios_cmd"),
    "schema": ("hvballoon.cli.info", "schema_cmd"),
    "watch": ("hvballoon.cli.fleet", "watch_cmd"),
    "exporter": ("hvballoon.cli.fleet", "exporter_cmd"),
    "autoballoon": ("hvballoon.cli.autoballoon", "autoballoon_cmd"),
    "release": ("hvballoon.cli.release", "release_cmd"),
    "simulate": ("hvballoon.cli.simulate", "simulate_cmd"),
    "fake": ("hvballoon.cli.simulate", "fake_group"),
}


class _Commands(click.Group):
    """A group whose commands are imported when they are looked up (to run, to show their help,
    to complete them), each once."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        self._argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        with output_watched():
            return super().main(args, *rest, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `hvballoon vms URI --json | head -1`: the reader has gone
            output_closed()
        except click.UsageError as exc:
            if "--json" not in getattr(self, "_argv", ()):
                raise
            # with --json every failure is an ErrorReport, a usage error's too
            from hvballoon.cli.common import echo_json, error_report
            from hvballoon.errors import InvalidRequestError

            echo_json(error_report(InvalidRequestError(exc.format_message())))
            sys.exit(exc.exit_code)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """An option of a command written before it (``hvballoon --json stats URI``) is named
        as such, with where it goes, instead of click's "no such option"."""
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            name = next((a for a in args if not a.startswith("-")), None)
            command = self.get_command(ctx, name) if name is not None else None
            if command is None:
                raise
            opts = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            option = exc.option_name
            if option.split("=", 1)[0] not in opts:
                raise
            raise click.UsageError(
                f"{option.split('=', 1)[0]} is an option of '{name}': write it after the command "
                f"(hvballoon {name} {option.split('=', 1)[0]} …)",
                ctx,
            ) from None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)


@click.group(
    cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
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
