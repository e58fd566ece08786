"""The ``hvballoon`` command for tests: through its installed entry point in a subprocess, or
in this process with click's runner (the same ``main``, without the ~0.5 s interpreter start).

    >>> r = invoke("scenarios", "--json")
    >>> r.returncode, "seed" in r.stdout
    (0, True)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

__all__ = ["EXE", "Result", "hvballoon_cmd", "invoke", "run"]

#: The installed console script (None when hvballoon is not installed, only importable).
EXE = shutil.which("hvballoon")


def hvballoon_cmd(*args: str) -> list[str]:
    """The command line that runs ``hvballoon ARGS…``: the console script, or ``python -m``."""
    return [EXE, *args] if EXE else [sys.executable, "-m", "hvballoon.cli", *args]


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``hvballoon ARGS…`` in a subprocess, with ``env`` added to this environment."""
    return subprocess.run(
        hvballoon_cmd(*args),
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@dataclass(frozen=True)
class Result:
    """What :func:`invoke` saw: the same three fields a subprocess gives."""

    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str, stdin: str | None = None, env: dict[str, str | None] | None = None) -> Result:
    """``hvballoon ARGS…`` in this process (``env`` set, or unset where None, for the call only).

    An exception the command does not turn into an exit code is raised, not hidden in a result.
    """
    from click.testing import CliRunner

    from hvballoon.cli import main

    result = CliRunner().invoke(main, list(args), input=stdin, env=env, prog_name="hvballoon")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)
