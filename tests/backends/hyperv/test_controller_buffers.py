"""The controller's Dynamic Memory buffers through the real Hyper-V backend (the loopback WinRM
peer): the same call, the same decision and the same refusal as on the fake backend
(tests/policy/test_buffers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from hvballoon.policy import Controller, ControllerSettings
from tests.support.hyperv.fakehost import hyperv_world
from tests.support.hyperv.peer import Peer
from tests.support.policies import Buffers

pytestmark = pytest.mark.peer

GiB = 1024**3


def test_the_controller_sets_a_buffer_over_winrm_and_a_refused_one_changes_nothing(basic_peer: Peer) -> None:
    basic_peer.host.world = world = hyperv_world()
    with basic_peer.connect() as hv:
        ctl = Controller(
            hv, Buffers({"web01": 150, "web02": 5000}), ControllerSettings(host_memory_bytes=128 * GiB)
        )
        by_vm: dict[str, Any] = {d.vm: d for d in ctl.step() if d.rule == "buffers.set"}
        assert by_vm["web01"].action == "raise" and by_vm["web01"].applied
        assert by_vm["web01"].inputs["buffer_percent_before"] == 20
        assert by_vm["web02"].action == "error" and by_vm["web02"].error_code == "invalid_request"
        # the host itself has them: Set-VMMemory -Buffer reached it for one VM only
        assert hv.get_config("web01").buffer_percent == 150
        assert hv.get_config("web02").buffer_percent == 20
        assert world.guest("web01").config["buffer_percent"] == 150
        assert world.state.dm_buffer_percent[world.guest("web01").index] == 150
