"""Ctrl-C: a real SIGINT to the real command. Every long-running command stops with exit code 130
(128 + SIGINT, the shell's convention; in the exit-code table) and says what was done. Linux
(the command's CPU time is read from /proc)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

EXE = shutil.which("hvballoon")


class Running:
    """The command in a subprocess, its stdout lines collected as they come."""

    def __init__(self, *args: str) -> None:
        cmd = [EXE, *args] if EXE else [sys.executable, "-m", "hvballoon.cli", *args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # a shell's background job ignores SIGINT, and an ignored signal stays ignored in
            # children: give the command the default, as it has in a terminal
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line)

    def wait_for(self, ready: Callable[[list[str]], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not ready(self.seen):
            left = deadline - time.monotonic()
            assert left > 0 and self.proc.poll() is None, (self.seen, self.proc.poll())
            try:
                self.seen.append(self.lines.get(timeout=min(left, 0.5)))
            except queue.Empty:
                pass

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def interrupt(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.proc.returncode, "".join(self.seen) + out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def running() -> object:
    started: list[Running] = []

    def start(*args: str) -> Running:
        r = Running(*args)
        started.append(r)
        return r

    yield start
    for r in started:
        r.kill()


def test_watch_stops_with_130_and_a_summary(running: Callable[..., Running]) -> None:
    cmd = running("watch", "fake://seed", "fake://seed?flavor=esxi", "--interval", "0.2s", "--json")
    cmd.wait_for(lambda lines: len(lines) >= 2)
    code, out, err = cmd.interrupt()
    assert code == 130, err
    sweeps = [json.loads(line) for line in out.splitlines()]
    assert len(sweeps) >= 2 and all(s["ok"] for s in sweeps)
    assert f"interrupted: {len(sweeps)} sweeps of 2 hosts" in err, err
    assert "Traceback" not in err and "Aborted" not in err


def test_autoballoon_stops_with_130_and_says_what_it_changed(running: Callable[..., Running]) -> None:
    cmd = running("autoballoon", "fake://seed", "--json")  # virtual clock: rounds come fast
    cmd.wait_for(lambda lines: len(lines) >= 30)
    code, out, err = cmd.interrupt()
    assert code == 130, err
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    applied = sum(1 for r in rows if r["applied"])
    assert applied > 0
    assert "interrupted: after " in err and f"{applied} targets changed" in err, err
    assert "Traceback" not in err


def test_set_wait_stops_with_130_and_says_the_target_was_applied(running: Callable[..., Running]) -> None:
    # a clock a thousand times slower than real time: the balloon takes hours to arrive
    cmd = running("set", "fake://seed?speed=0.001", "web01", "8GiB", "--wait")
    cmd.wait_for(lambda lines: any("waiting" in line for line in lines))
    code, out, err = cmd.interrupt()
    assert code == 130, err
    assert "web01: changed (balloon)" in out and "16 GiB -> 8 GiB" in out
    assert "interrupted: the target of web01 was set to 8 GiB" in err and "stopped waiting" in err, err
    assert "Traceback" not in err and "Aborted" not in err


@pytest.mark.slow
def test_simulate_stops_with_130_and_reports_the_part_simulated(running: Callable[..., Running]) -> None:
    cmd = running("simulate", "dense", "--duration", "3650d", "--json")
    # interrupted once it is simulating: starting up costs it about 0.5 s of its own CPU time
    cmd.wait_for(lambda _lines: cmd.cpu_seconds() >= 1.5)
    code, out, err = cmd.interrupt()
    assert code == 130, err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert 0 < summary["duration_seconds"] < 3650 * 86400
    assert summary["scenario"] == "dense" and len(summary["vms"]) == 14
    assert "interrupted: simulated " in err and "of 3650d" in err, err
    assert "Traceback" not in err and "Aborted" not in err
