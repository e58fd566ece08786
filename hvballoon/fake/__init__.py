"""The fake backend: a simulated hypervisor for tests, demos and CI (``fake://``).

Use it as a context manager that resets when the block ends; inside it, every
``connect("fake://NAME")`` shares the same world::

    >>> import hvballoon
    >>> from hvballoon import fake
    >>> with fake.world("seed") as w:
    ...     with hvballoon.connect("fake://seed") as hv:
    ...         _ = hv.set_target("web01", "10GiB")
    ...     w.advance(60)
    ...     with hvballoon.connect("fake://seed") as hv:
    ...         hv.get_stats(["web01"])[0].current_bytes // 2**30
    10
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hvballoon.fake import _registry
from hvballoon.fake.catalog import load_scenario
from hvballoon.fake.scenario import Scenario, builtin_scenarios
from hvballoon.fake.world import World

__all__ = ["Scenario", "World", "builtin_scenarios", "load_scenario", "world"]


@contextmanager
def world(
    scenario: str | Path | Scenario = "seed", *, flavor: str | None = None, seed: int | None = None
) -> Iterator[World]:
    """A fresh world that ``fake://<scenario>`` connects to until the block ends."""
    spec = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    w = World(spec, flavor=flavor, seed=seed)
    key = str(scenario) if not isinstance(scenario, Scenario) else spec.name
    _registry.push(key, w)
    try:
        yield w
    finally:
        _registry.pop(key, w)
