"""``hvballoon release``: give back what the auto-balloon controller lowered, from its journal
and, on ESXi and KVM, from the marks it leaves on the VMs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from hvballoon.cli.common import (
    OptionsCommand,
    connection,
    connection_options,
    echo_json,
    handle_errors,
    json_option,
)
from hvballoon.cli.controller_session import check_journal_path, session_factory
from hvballoon.errors import InvalidRequestError
from hvballoon.units import format_size

__all__ = ["release_cmd"]

RELEASE_EPILOG = """\b
Examples:
  hvballoon release qemu:///system
  hvballoon release esxi://root@esx01 --password-stdin --json < password.txt
  hvballoon release esxi://root@esx01 --from-marks --to-maximum
  hvballoon release 'fake://seed?state=/tmp/w.db' --journal /tmp/j.db --dry-run
\b
Every VM the controller's journal holds lowered goes back to what it had before (--to-maximum:
its maximum; an ESXi VM that had no limit gets none). On ESXi and KVM (libvirt) the controller
also marks the VMs it lowers (ESXi: extraConfig hvballoon.controller.before; KVM: the running
domain's metadata, for its run), so they are found without the journal: both are read by
default, --from-marks reads only the marks. A VM already at or above what it
would get back is left alone. Refused while a controller runs on the journal.
Exit: 0 when every VM was given back (or needed nothing), 12 (partial_change) when some were and
others failed, otherwise the failure's code.
"""


# -- release ------------------------------------------------------------------------------------


@click.command("release", cls=OptionsCommand, epilog=RELEASE_EPILOG)
@click.argument("uri")
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False),
    help="The controller's journal (default: the URI's, under the state directory).",
)
@click.option("--to-maximum", is_flag=True, help="Give each VM its maximum, not what it had before.")
@click.option("--from-marks", is_flag=True, help="Only the VMs' marks (ESXi, KVM), not the journal.")
@click.option("--dry-run", is_flag=True, help="Say what would be given back, change nothing.")
@json_option
@connection_options
@handle_errors
def release_cmd(
    uri: str,
    journal_path: str | None,
    to_maximum: bool,
    from_marks: bool,
    dry_run: bool,
    as_json: bool,
    **kw: Any,
) -> None:
    """Give back what the auto-balloon controller of URI lowered (its journal, and marks on ESXi and KVM)."""
    from hvballoon.policy.journal import Journal, default_journal_path
    from hvballoon.policy.release import release

    check_journal_path(journal_path)
    opts = connection(kw)
    hv = session_factory(uri, opts)()
    journal = None
    try:
        marks = hv.capabilities.marks
        if from_marks:
            if not marks:
                raise InvalidRequestError(
                    f"--from-marks: the {hv.backend_name} backend keeps no marks on VMs; release from the journal",
                    uri=hv.uri,
                )
        else:
            path = Path(journal_path) if journal_path else default_journal_path(hv.uri)
            if path.exists() or journal_path or not marks:
                journal = Journal.open(path, uri=hv.uri, create=False)
        report = release(hv, journal=journal, marks=marks, to_maximum=to_maximum, dry_run=dry_run)
    finally:
        if journal is not None:
            journal.close()
        hv.close()
    if as_json:
        echo_json(report.model_dump(mode="json"))
    else:
        if not report.vms:
            source = "its journal" + (" or the VMs' marks" if report.marks else "")
            click.echo(f"{report.uri}: nothing to release ({source} holds no lowered VM)")
        for r in report.vms:
            click.echo(_release_line(r))
    error = report.error()
    if error is not None:
        if not as_json:
            click.echo(f"error: {error.describe('cli')}", err=True)
        sys.exit(error.exit_code)


def _release_line(r: Any) -> str:
    def shown(value: int | None, unlimited: bool = False) -> str:
        return "unlimited" if unlimited or value is None else format_size(value)

    would = " (dry run)" if r.dry_run and r.action == "released" else ""
    head = f"{r.vm}: {r.action}{would}"
    if r.action == "released":
        return f"{head} {shown(r.from_bytes)} -> {shown(r.to_bytes, r.unlimited)} [{r.source}]" + "".join(
            f"\n  warning: {w}" for w in r.warnings
        )
    if r.action == "error":
        return f"{head}: {r.reason} [{r.source}]"
    return f"{head}: {r.reason} [{r.source}]"
