"""A Hyper-V VM's target is its Dynamic Memory maximum, or a static VM's startup size (the
Hyper-V kind's target field): switching Dynamic Memory on or off on a stopped VM moves the
target the fake shows to the other field, as Get-VM shows it through the hyperv backend."""

from __future__ import annotations

import hvballoon
from hvballoon import fake
from hvballoon.fake.scenario import parse_scenario
from hvballoon.units import MiB


def test_switching_dynamic_memory_moves_the_target_to_the_variants_field() -> None:
    scenario = parse_scenario(
        {
            "name": "variant",
            "flavor": "hyperv",
            "host": {"physical": "12GiB"},
            "vms": [
                {
                    "name": "v",
                    "memory": "2048MiB",
                    "used": "256MiB",
                    "power_state": "stopped",
                    "dynamic": True,
                    "startup": "512MiB",
                    "minimum": "32MiB",
                }
            ],
        }
    )
    with fake.world(scenario) as w, hvballoon.connect("fake://", world=w) as hv:
        assert hv.get_stats("v")[0].target_bytes == 2048 * MiB  # the maximum
        hv.set_config("v", dynamic=False)
        (st,) = hv.get_stats("v")
        assert st.target_bytes == st.configured_bytes == 512 * MiB  # the startup size
        hv.set_config("v", dynamic=True)
        assert hv.get_stats("v")[0].target_bytes == 2048 * MiB
