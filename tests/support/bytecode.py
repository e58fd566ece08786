"""Where the suite keeps its compiled modules, set before pytest loads any plugin.

Where the environment asks Python not to write bytecode (PYTHONDONTWRITEBYTECODE), every run of
the suite would compile and assertion-rewrite ~250 test modules and the package again in every
process: about 6 s of an inner-loop run. The suite keeps its compiled modules in one git-ignored
directory of its own instead (nothing is written beside the sources or into site-packages);
HVBALLOON_TEST_BYTECODE=0 keeps the environment's choice.

pyproject's ``addopts`` loads this module with ``-p``, before the plugins installed in the
environment: the package itself (imported by its own pytest plugin, whose modules pytest
rewrites) and those plugins are then read from there too, in the controller and in each
worker, instead of being compiled again before the first ``conftest.py`` is read.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if sys.dont_write_bytecode and os.environ.get("HVBALLOON_TEST_BYTECODE", "1") != "0":
    sys.pycache_prefix = str(Path(__file__).resolve().parents[2] / ".cache" / "pycache")
    sys.dont_write_bytecode = False
