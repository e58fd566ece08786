"""pytest plugin (registered through the ``pytest11`` entry point): fixtures for the fake.

``hvballoon_world`` is a fresh ``seed`` world per test; ``hvballoon_session`` a session on it.
Use the ``hvballoon_scenario`` marker to pick another scenario or flavour::

    @pytest.mark.hvballoon_scenario("seed", flavor="hyperv")
    def test_my_automation(hvballoon_session):
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from hvballoon.fake.world import World
    from hvballoon.session import Hypervisor


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hvballoon_scenario(name, flavor=None, seed=None): the fake world a test gets"
    )


@pytest.fixture
def hvballoon_world(request: pytest.FixtureRequest) -> Iterator[World]:
    """A fresh fake world for one test; ``fake://<scenario>`` connects to it meanwhile."""
    from hvballoon.fake import world

    marker = request.node.get_closest_marker("hvballoon_scenario")
    args: tuple[Any, ...] = marker.args if marker else ("seed",)
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker else {}
    with world(*args, **kwargs) as w:
        yield w


@pytest.fixture
def hvballoon_session(hvballoon_world: World) -> Iterator[Hypervisor]:
    """A session on :func:`hvballoon_world` with instant retries."""
    import hvballoon
    from hvballoon.retry import RetryPolicy

    with hvballoon.connect("fake://", world=hvballoon_world, retry=RetryPolicy(sleep=lambda _s: None)) as hv:
        yield hv
