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
