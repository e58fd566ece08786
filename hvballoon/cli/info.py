"""``hvballoon backends``, ``scenarios`` and ``schema``: what is installed, what the simulator
ships, and the JSON Schema of every ``--json`` output. None of them connects anywhere."""

from __future__ import annotations

import click

from hvballoon.cli.common import NegativeValuesCommand, console, echo_json, handle_errors, json_option, table
from hvballoon.units import format_size

__all__ = ["backends_cmd", "scenarios_cmd", "schema_cmd"]


@click.command(
    "backends",
    cls=NegativeValuesCommand,
    epilog="\b\nExamples:\n  hvballoon backends\n  hvballoon backends --json | jq -r '.[] | select(.status != \"installed\") | .install'",
)
@json_option
@handle_errors
def backends_cmd(as_json: bool) -> None:
    """List the backends and whether each is installed (with the command to install it)."""
    from hvballoon.registry import backends

    rows = backends()
    if as_json:
        from hvballoon.outputs import BackendInfo

        echo_json([BackendInfo.model_validate(r.to_dict()).model_dump(mode="json") for r in rows])
        return
    table_rows = [
        [
            r.name,
            ", ".join(r.schemes),
            r.status,
            r.version or "-",
            r.problem or ("-" if r.status == "installed" else r.install_hint),
        ]
        for r in rows
    ]
    console().print(table(["backend", "schemes", "status", "version", "install / problem"], table_rows))


@click.command(
    "scenarios",
    cls=NegativeValuesCommand,
    epilog="\b\nExamples:\n  hvballoon scenarios\n  hvballoon stats fake://seed-spike",
)
@json_option
@handle_errors
def scenarios_cmd(as_json: bool) -> None:
    """List the fake backend's built-in scenarios (use as fake://NAME; generated wave scenarios are
    fake://waves-SEED[-esxi|-hyperv])."""
    from hvballoon.fake.scenario import builtin_scenarios, load_scenario

    rows = [load_scenario(n) for n in builtin_scenarios()]
    if as_json:
        from hvballoon.outputs import ScenarioInfo

        echo_json(
            [
                ScenarioInfo(
                    name=s.name,
                    flavor=s.flavor,
                    vms=len(s.vms),
                    physical_bytes=s.host.physical,
                    promised_bytes=s.promised_bytes,
                    description=s.description,
                ).model_dump(mode="json")
                for s in rows
            ]
        )
        return
    table_rows = [
        [
            s.name,
            s.flavor,
            str(len(s.vms)),
            format_size(s.host.physical),
            format_size(s.promised_bytes),
            s.description or "-",
        ]
        for s in rows
    ]
    console().print(
        table(["scenario", "flavor", "vms", "host memory", "promised", "description"], table_rows)
    )
    console().print(
        "Generated wave scenarios, by seed: waves-<seed>, waves-<seed>-esxi, waves-<seed>-hyperv "
        "(for example fake://waves-7-esxi).",
        soft_wrap=True,
    )


@click.command(
    "schema",
    cls=NegativeValuesCommand,
    epilog="\b\nExamples:\n  hvballoon schema MemoryStats\n  hvballoon schema > hvballoon-schemas.json",
)
@click.argument("model", required=False)
# every command takes --json: here the output is JSON either way, and so is an error with it
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the schemas are JSON either way).")
def schema_cmd(model: str | None, as_json: bool) -> None:
    """Print the JSON Schema of every --json output (all, or MODEL: MemoryStats, FleetStats,
    WatchSweep, Decision, SimulationSummary, ErrorReport, …)."""
    from hvballoon.outputs import output_schemas

    schemas = output_schemas()
    if model is None:
        echo_json(schemas)
        return
    if model not in schemas:
        raise click.BadParameter(f"choose one of {', '.join(schemas)}", param_hint="MODEL")
    echo_json(schemas[model])
