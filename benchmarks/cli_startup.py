"""What a run of the ``hvballoon`` command costs before and around its work, in new processes.

Each command below runs ``--repeat`` times in a process of its own (``python -m hvballoon.cli``,
as the console script does), interleaved with the references, so a busy machine slows them all
alike; the medians are reported:

- references: the interpreter alone (``python -c pass``) and the package's import
  (``python -c "import hvballoon"``), which every command pays;
- commands: the group's help, one command's help, and the commands a script runs most on the
  simulator (``stats``, ``vms``, ``autoballoon --check``).

Each command's figure is also given as a ratio to the package's import, with how many modules
the command loads and whether it loads the controller's package (``hvballoon.policy``), which
only ``autoballoon``, ``release``, ``watch``, ``exporter`` and ``simulate`` need. Run from the
repository root::

    python benchmarks/cli_startup.py [--repeat 10] [--out result.json]

It prints (and writes) one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from _report import emit  # noqa: E402 - the benchmarks' own helper, beside this script

REFERENCES = {
    "python": ["-c", "pass"],
    "import hvballoon": ["-c", "import hvballoon"],
}

COMMANDS = {
    "hvballoon --help": ["--help"],
    "hvballoon set --help": ["set", "--help"],
    "hvballoon stats fake://seed web01 --json": ["stats", "fake://seed", "web01", "--json"],
    "hvballoon vms fake://seed --json": ["vms", "fake://seed", "--json"],
    "hvballoon autoballoon fake://seed --check --json": ["autoballoon", "fake://seed", "--check", "--json"],
}

# runs a command in this process as the console script would, then names the modules it loaded
_MODULES = (
    "import json, sys\n"
    "from hvballoon.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
)


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def _once(args: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, *args], env=_env(), capture_output=True, check=True, timeout=120)
    return time.perf_counter() - began


def _modules(args: list[str]) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-c", _MODULES, *args], env=_env(), capture_output=True, text=True, timeout=120
    )
    return list(json.loads(run.stderr.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="runs of each (default 10)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    runs = {name: [*REFERENCES[name]] for name in REFERENCES}
    runs.update({name: ["-m", "hvballoon.cli", *argv] for name, argv in COMMANDS.items()})
    _once(runs["import hvballoon"])  # warm: the compiled modules, the file cache
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, argv in runs.items():
            times[name].append(_once(argv))
    median = {name: statistics.median(values) for name, values in times.items()}
    reference = median["import hvballoon"]

    commands = {}
    for name, argv in COMMANDS.items():
        modules = _modules(argv)
        commands[name] = {
            "seconds": round(median[name], 4),
            "ratio_to_import": round(median[name] / reference, 2),
            "modules": len(modules),
            "loads_the_controller": "hvballoon.policy" in modules,
        }
    return emit(
        "cli_startup",
        args.out,
        repeat=args.repeat,
        references={name: {"seconds": round(median[name], 4)} for name in REFERENCES},
        commands=commands,
    )


if __name__ == "__main__":
    sys.exit(main())
