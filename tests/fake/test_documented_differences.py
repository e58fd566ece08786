"""The defaults docs/fake.md names as the fake's own, where a real host's differ: each side's
default is checked here, so that a change to either shows (and the page is revisited)."""

from __future__ import annotations

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.fake.scenario import parse_scenario


def test_free_page_reporting_is_on_in_a_scenario_and_off_in_a_domain_that_does_not_say() -> None:
    libvirt_domain = pytest.importorskip("hvballoon.backends.kvm._domain")
    scenario = parse_scenario(
        {
            "name": "fpr",
            "host": {"physical": "8GiB"},
            "vms": [{"name": "a", "memory": "1GiB", "used": "256MiB"}],
        }
    )
    with fake.world(scenario) as w, hvballoon.connect("fake://", world=w) as hv:
        assert hv.get_config("a").free_page_reporting is True
    # libvirt passes QEMU's free-page-reporting only when the XML sets it; QEMU's default is off
    xml = (
        "<domain type='kvm'><name>a</name><memory unit='KiB'>1048576</memory>"
        "<devices><memballoon model='virtio'/></devices></domain>"
    )
    assert libvirt_domain.parse_domain_xml(xml).free_page_reporting is False
