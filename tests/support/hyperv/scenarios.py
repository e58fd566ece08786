"""Scenarios for the Hyper-V tests: hostile names, the live-change rules, and sweeps of N VMs."""

from __future__ import annotations

from typing import Any

from hvballoon.fake.scenario import Scenario, parse_scenario

#: VM names a naive script builder would turn into code: quotes (ASCII and the typographic ones
#: PowerShell also treats as quotes), sub-expressions, backticks, statement separators,
#: newlines, and non-ASCII text including a character outside the BMP.
HOSTILE_NAMES = [
    "plain",
    "it's",
    'say "hi"',
    "\u2018left\u2019 \u201alow\u201b",
    "$(Remove-VM -Name * -Force)",
    "back`tick`n `$x",
    "a; Stop-Computer -Force; b",
    "line\r\nbreak\nhere",
    "'; Remove-VM *; '",
    "Überprüfung \u2013 \u0432\u043c-1 \u2713 東京 \U0001f600",
    "@HVB_DATA@",
    "'@ $p = 1 @'",
]
#: An id that is not a GUID and is hostile too (ids travel as data like everything else).
HOSTILE_ID = "id'); Remove-VM * -Force; ('"


def hostile() -> Scenario:
    vms: list[dict[str, Any]] = [
        {"name": name, "memory": "8GiB", "used": f"{1 + i % 3}GiB", "dynamic": i % 2 == 0}
        for i, name in enumerate(HOSTILE_NAMES)
    ]
    vms.append({"name": "id-is-hostile", "id": HOSTILE_ID, "memory": "4GiB", "used": "1GiB"})
    return parse_scenario(
        {"name": "hostile", "flavor": "hyperv", "host": {"name": "hv01", "physical": "256GiB"}, "vms": vms}
    )


def rules() -> Scenario:
    """One VM per case of the live-change rules."""
    vms = [
        {"name": "dm-on", "memory": "16GiB", "used": "4GiB", "dynamic": True},
        {"name": "dm-off", "memory": "16GiB", "used": "4GiB", "dynamic": True, "power_state": "stopped"},
        {"name": "static-on", "memory": "8GiB", "used": "2GiB", "dynamic": False},
        {"name": "static-off", "memory": "8GiB", "used": "2GiB", "dynamic": False, "power_state": "stopped"},
        {"name": "dm-paused", "memory": "8GiB", "used": "2GiB", "dynamic": True, "power_state": "paused"},
        # static, started below its scenario memory: startup 4 GiB, leftover maximum 8 GiB
        {"name": "static-small", "memory": "8GiB", "startup": "4GiB", "used": "1GiB", "dynamic": False},
    ]
    return parse_scenario(
        {"name": "rules", "flavor": "hyperv", "host": {"name": "hv01", "physical": "64GiB"}, "vms": vms}
    )


def squeezed() -> Scenario:
    """A Dynamic Memory VM whose demand outgrows its 2 GiB maximum ten seconds in (it pages the
    rest), beside one that has room."""
    spike = {"kind": "spike", "params": {"at": "10s", "duration": "1h", "size": "2GiB", "rise": "5s"}}
    vms = [
        {
            "name": "capped",
            "memory": "8GiB",
            "minimum": "1GiB",
            "startup": "2GiB",
            "maximum": "2GiB",
            "used": "1GiB",
            "swap": "4GiB",
            "workload": spike,
        },
        {"name": "roomy", "memory": "8GiB", "used": "2GiB"},
    ]
    return parse_scenario(
        {"name": "squeezed", "flavor": "hyperv", "host": {"name": "hv01", "physical": "64GiB"}, "vms": vms}
    )


def sweep(count: int) -> Scenario:
    """``count`` VMs of 16 GiB, half of them with Dynamic Memory."""
    vms = [
        {"name": f"vm{i:04d}", "memory": "16GiB", "used": f"{1 + i % 8}GiB", "dynamic": i % 2 == 0}
        for i in range(count)
    ]
    return parse_scenario(
        {
            "name": f"sweep{count}",
            "flavor": "hyperv",
            "host": {"name": "hv01", "physical": "4096GiB"},
            "vms": vms,
        }
    )


def idle() -> Scenario:
    """Static and Dynamic Memory VMs that do not run (off, paused, saved), and one that runs."""
    vms = [
        {
            "name": f"{kind}-{state}",
            "memory": "8GiB",
            "used": "2GiB",
            "dynamic": kind == "dm",
            "power_state": state,
        }
        for kind in ("static", "dm")
        for state in ("stopped", "paused", "suspended")
    ]
    vms.append({"name": "static-on", "memory": "8GiB", "used": "2GiB", "dynamic": False})
    return parse_scenario(
        {"name": "idle", "flavor": "hyperv", "host": {"name": "hv01", "physical": "64GiB"}, "vms": vms}
    )


def silent() -> Scenario:
    """Guests that tell the host nothing (no integration services): a Dynamic Memory VM whose
    use (5 GiB) is above its startup memory (2 GiB), a static one, and a Dynamic Memory VM
    whose guest reports, beside them."""
    vms = [
        {"name": "dm-silent", "memory": "8GiB", "startup": "2GiB", "used": "5GiB", "swap": "4GiB",
         "dynamic": True, "balloon_driver": False},
        {"name": "static-silent", "memory": "4GiB", "used": "1GiB", "dynamic": False, "balloon_driver": False},
        {"name": "dm-talks", "memory": "8GiB", "startup": "2GiB", "used": "3GiB", "dynamic": True},
    ]  # fmt: skip
    return parse_scenario(
        {"name": "silent", "flavor": "hyperv", "host": {"name": "hv01", "physical": "64GiB"}, "vms": vms}
    )
