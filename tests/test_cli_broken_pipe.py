"""A closed output (``hvballoon … | head -1``): the command ends quietly, with no traceback and
no message, and exit code 141 (128 + SIGPIPE, what a shell reports for a program a broken
pipe killed; in the exit-code table). Real pipes, closed by their reader after one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import hvballoon_cmd


def first_line_then_close(*args: str) -> tuple[int, bytes, str]:
    """``hvballoon ARGS… | head -1``: its exit code, the line read, and its standard error."""
    proc = subprocess.Popen(hvballoon_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        return proc.wait(timeout=60), line, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def many_vms(tmp_path: Path, count: int = 2000) -> str:
    """A scenario of ``count`` VMs: its ``vms`` and ``stats`` say far more than a pipe holds
    (64 KiB), so the reader cannot have had it all before it closes."""
    path = tmp_path / "many.yaml"
    vms = "".join(f"  - {{name: vm{i:04d}, memory: 4GiB, used: 1GiB}}\n" for i in range(count))
    path.write_text(f"name: many\nhost: {{physical: {count * 4}GiB}}\nvms:\n{vms}")
    return f"fake://{path}"


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_stats_into_a_closed_pipe_ends_quietly_with_141(tmp_path: Path, as_json: bool) -> None:
    # the whole output goes out in one write, which the reader closes part way through
    code, line, err = first_line_then_close("stats", many_vms(tmp_path), *(["--json"] if as_json else []))
    assert line.strip() == (b"[" if as_json else b"fake://" + str(tmp_path / "many.yaml").encode())
    assert (code, err) == (141, ""), err


def test_vms_json_into_a_closed_pipe_ends_quietly_with_141(tmp_path: Path) -> None:
    code, line, err = first_line_then_close("vms", many_vms(tmp_path), "--json")
    assert line == b"[\n"
    assert (code, err) == (141, ""), err


@pytest.mark.slow
def test_watch_into_a_closed_pipe_ends_quietly_with_141() -> None:
    # a line per sweep until stopped: the next sweep's write finds the pipe closed
    code, line, err = first_line_then_close("watch", "fake://seed", "--interval", "0.1s", "--json")
    assert line.startswith(b'{"ok": true')
    assert (code, err) == (141, ""), err
