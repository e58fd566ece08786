"""``python -m hvballoon.cli``: the same as the ``hvballoon`` command."""

from __future__ import annotations

from hvballoon.cli.app import main

if __name__ == "__main__":  # pragma: no cover - run as a program
    main(prog_name="hvballoon")
