"""Every scenario by its name: the built-ins, the generated wave scenarios, files.

:func:`load_scenario` is what a ``fake://`` URI, :func:`hvballoon.fake.world` and the command
line use to find a scenario: a built-in by name (``seed``), a generated wave scenario by the
name it has (``waves-7``, ``waves-7-esxi``: :func:`hvballoon.fake.waves.wave_scenario` of that
seed and flavor, its waves within 12 hours), or a YAML/JSON file by path (a file of that name
wins over a generated scenario).

>>> load_scenario("waves-7-esxi").flavor
'esxi'
"""

from __future__ import annotations

import re
from pathlib import Path

from hvballoon.errors import ScenarioError
from hvballoon.fake import scenario as _files
from hvballoon.fake.scenario import Scenario
from hvballoon.fake.waves import FLAVORS, wave_scenario

__all__ = ["load_scenario"]

#: a generated wave scenario by name: ``waves-<seed>`` or ``waves-<seed>-<flavor>``
_GENERATED = re.compile(r"waves-(?P<seed>[0-9]{1,9})(?:-(?P<flavor>[a-z0-9]+))?")


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, a generated wave scenario by its name, or a file by path."""
    generated = _GENERATED.fullmatch(name_or_path) if isinstance(name_or_path, str) else None
    if generated is None or name_or_path in _files.builtin_scenarios() or Path(name_or_path).is_file():
        return _files.load_scenario(name_or_path)
    flavor = generated["flavor"] or "kvm"
    if flavor not in FLAVORS:
        raise ScenarioError(
            f"no scenario {name_or_path!r}: unknown flavor {flavor!r} (accepted: {', '.join(FLAVORS)})",
            details={"source": str(name_or_path)},
        )
    return wave_scenario(int(generated["seed"]), flavor=flavor)
