"""The shared conformance suite, against the Hyper-V backend talking WinRM to the loopback peer
(Basic over HTTP and NTLM over HTTPS), answered from the simulator's ``hyperv`` flavour."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hvballoon.testing.conformance import BackendConformance


class TestHyperVConformance(BackendConformance):
    @pytest.fixture
    def hv(self, hv: Any) -> Iterator[Any]:  # the conftest fixture: fresh world, new session
        yield hv
