"""The host's OOM killer: when what the guests hold outgrows the host's memory and swap, it kills
VMs until the rest fits, whatever pieces the world is advanced in (found by the random scenarios
probe, seed 3032: one VM died per call of ``advance``, so a controller reading every second saw
the host kill six VMs in six seconds, one reading every ten seconds saw it kill one every ten
seconds, and a world advanced a minute at once lost one VM where it needed to lose six)."""

from __future__ import annotations

import pytest

from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World

GiB = 1024**3


def _short_host() -> World:
    # 5 VMs holding 3 GiB each on a host of 8 GiB without swap: three must go
    return World(
        parse_scenario(
            {
                "name": "short-host",
                "flavor": "kvm",
                "host": {"physical": 8 * GiB, "swap": 0},
                "vms": [{"name": f"vm{k}", "memory": 4 * GiB, "used": 3 * GiB} for k in range(5)],
            }
        )
    )


@pytest.mark.parametrize("piece", [60.0, 10.0, 1.0])
def test_the_host_kills_until_the_rest_fits_whatever_the_pieces(piece: float) -> None:
    world = _short_host()
    while world.now < 60 - 1e-9:
        world.advance(piece)
    killed = [e for e in world.events if e["kind"] == "host_oom"]
    assert len(killed) == 3, [(e["t"], e["vm"]) for e in killed]
    assert all(e["t"] <= piece for e in killed)  # at the end of the first piece, all of them
    assert world.host_free_bytes >= 0


@pytest.mark.parametrize("power_state", ["paused", "suspended"])
def test_a_paused_vm_is_killed_when_no_running_one_is_left_to_kill(power_state: str) -> None:
    # a paused (or, on KVM, suspended to RAM) VM's QEMU process holds its memory as a running
    # one's does: with no running VM left, the host's OOM killer kills it rather than leave the
    # host's swap holding more than its size (and every step of the clock a block of its own)
    world = World(
        parse_scenario(
            {
                "name": "paused-over",
                "flavor": "kvm",
                "step": 0.01,
                "host": {"physical": 4 * GiB, "swap": GiB},
                "vms": [{"name": "big", "memory": 8 * GiB, "cache": 8 * GiB, "power_state": power_state}],
            }
        ),
        strict=True,
    )
    world.advance(1)
    assert [e["kind"] for e in world.events if e["vm"] == "big"] == ["host_oom"]
    acc = world.accounting()["host"]
    assert acc["swapped"] <= GiB and acc["conserved"]
