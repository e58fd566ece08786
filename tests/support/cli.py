"""The ``hvballoon`` command for tests: through its installed entry point in a subprocess, or
in this process with click's runner (the same ``main``, without the ~0.5 s interpreter start).

    >>> r = invoke("scenarios", "--json")
    >>> r.returncode, "seed" in r.stdout
    (0, True)
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["EXE", "Result", "Running", "hvballoon_cmd", "invoke", "run", "serving", "stats_frees_nothing"]

#: The installed console script (None when hvballoon is not installed, only importable).
EXE = shutil.which("hvballoon")


def hvballoon_cmd(*args: str, module: bool = False) -> list[str]:
    """The command line that runs ``hvballoon ARGS…``: the console script (when installed and
    not ``module``), else ``python -m hvballoon.cli``."""
    return [EXE, *args] if EXE and not module else [sys.executable, "-m", "hvballoon.cli", *args]


def run(
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    module: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``hvballoon ARGS…`` in a subprocess (``python -m hvballoon.cli ARGS…`` with ``module``),
    with ``env`` added to this environment."""
    return subprocess.run(
        hvballoon_cmd(*args, module=module),
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
    What the command sets up for its process's lifetime, hvballoon's log handlers and level
    (``--log-format``), is undone after it, as the end of a process would: the next test's
    records go nowhere near this call's captured stderr.
    """
    from click.testing import CliRunner

    from hvballoon.cli import main

    library_log = logging.getLogger("hvballoon")
    handlers, level = list(library_log.handlers), library_log.level
    try:
        result = CliRunner().invoke(main, list(args), input=stdin, env=env, prog_name="hvballoon")
    finally:
        library_log.handlers[:] = handlers
        library_log.setLevel(level)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


class Running:
    """``hvballoon ARGS…`` running in a subprocess, its stdout and stderr lines collected as they
    come (for what only a real process shows: signals, a SIGKILL, a service left running).

    A shell's background job ignores SIGINT and an ignored signal stays ignored in children: the
    command gets the default, as it has in a terminal."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            hvballoon_cmd(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream, q), daemon=True)
            for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream: Any, q: queue.Queue[str]) -> None:
        for line in stream:
            q.put(line)

    def _drain(self) -> None:
        while not self.out.empty():
            self.stdout.append(self.out.get())
        while not self.err.empty():
            self.stderr.append(self.err.get())

    def wait_for(self, ready: Callable[[Running], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            if ready(self):
                return
            assert time.monotonic() < deadline and self.proc.poll() is None, (
                self.proc.poll(),
                "".join(self.stderr[-20:]),
            )
            time.sleep(0.05)

    def signal(self, sig: int) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self._finish()
        return code

    def _finish(self) -> None:
        """Once the process has ended: its last lines read, its pipes closed."""
        for t in self._readers:
            t.join(timeout=30)  # each ends at its stream's end
        self._drain()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def cpu_seconds(self) -> float:
        """The CPU time the process has used so far (Linux: read from /proc)."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def asleep(self, seconds: float = 0.5) -> bool:
        """Whether the process has been sleeping (state ``S``, no CPU time used) for the last
        ``seconds``, as far as the calls so far have seen (for :meth:`wait_for`: a command
        that prints nothing before it waits, caught in its wait). Linux, as :meth:`cpu_seconds`."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        used, now = self.cpu_seconds(), time.monotonic()
        if state != "S" or used != getattr(self, "_cpu_seen", None):
            self._cpu_seen, self._idle_since = used, now
        return now - self._idle_since >= seconds

    def json_log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr]

    def kill(self) -> None:
        """SIGKILL (when still running), then its pipes closed."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._finish()


def serving(tmp_path: Path, running: Callable[..., Running], *extra: str) -> tuple[Path, Running]:
    """``autoballoon --serve`` on a persisted fake (20× its clock) with a settings file (the
    host's memory, a 10 s interval), JSON logs and decisions; ``extra``: more options."""
    settings = tmp_path / "settings.yaml"
    settings.write_text("interval_seconds: 10\nhost_memory_bytes: 120GiB\n")
    uri = f"fake://seed?state={tmp_path / 'w.db'}&speed=20"
    ctl = running(
        "autoballoon", uri, "--serve", "--settings", str(settings), "--log-format", "json",
        "--journal", str(tmp_path / "j.db"), "--json", *extra,
    )  # fmt: skip
    return settings, ctl


def stats_frees_nothing(*args: str) -> tuple[dict[str, str], list[str], dict[str, str | None]]:
    """A stats view (``hvballoon stats URI``, by default; ``stats URI1 URI2``, ``watch URI
    --count 1``) as a user reads it: each VM's row of the stats table (its cells joined; a VM
    named on two hosts: its first row), the lines outside the tables but titles and the summary
    (the footnotes), and each VM's ``frees_nothing_note`` in ``--json`` (``None``: none; a
    fleet's hosts, or a watch's first sweep, flattened)."""
    args = args if len(args) != 1 or "://" not in args[0] else ("stats", args[0])
    shown = invoke(*args)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    rows: dict[str, str] = {}
    after: list[str] = []
    vm_cell: int | None = None  # the "vm" column of the stats table being read
    for line in shown.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃").split("│" if line.startswith("│") else "┃")]
        if line.startswith("┃") and "vm" in cells:
            vm_cell = cells.index("vm")
        elif line.startswith("└"):
            vm_cell = None
        elif line.startswith("│") and vm_cell is not None:
            rows.setdefault(cells[vm_cell], " | ".join(cells))
        elif line.strip() and not line.startswith((" ", "┏", "┡", "├", "│", "┃")) and " VMs, " not in line:
            after.append(line.strip())
    listed = invoke(*args, "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    try:
        data = json.loads(listed.stdout)
    except json.JSONDecodeError:  # one JSON line per sweep
        data = json.loads(listed.stdout.splitlines()[0])
    stats = data if isinstance(data, list) else [s for h in data["hosts"] for s in h["stats"]]
    notes: dict[str, str | None] = {}
    for r in stats:
        notes.setdefault(r["vm"]["name"], r["extra"].get("frees_nothing_note"))
    return rows, after, notes
