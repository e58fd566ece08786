"""The host's memory picture on libvirt's test driver, and the mapping of each libvirt call.

libvirt's test driver (``test:///default``) has ``getInfo`` (3 GiB: ``nodeInfo.memory`` is
3,145,728 KiB) and ``getFreeMemory`` (the sum of its two cells' free figures, 3,145,728, which
the API documents as bytes), but neither node memory stats nor node memory parameters (KSM):
those answer ``VIR_ERR_NO_SUPPORT``. A custom node file's ``<memory>`` (KiB) sets ``getInfo``.
The embedded QEMU driver's answers (``getMemoryStats`` of all cells: ``/proc/meminfo``'s total,
free, buffers and cached in KiB; KSM's ``shm_*`` parameters) are read by the real-guest tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import hvballoon
from hvballoon.backends.kvm._errors import fake_error
from hvballoon.backends.kvm._host import _base_page_bytes, _optional, host_figures
from hvballoon.cli import main
from hvballoon.hoststats import host_stats
from tests.support.libvirt_xml import domain_xml

libvirt = pytest.importorskip("libvirt")

KiB, MiB, GiB = 2**10, 2**20, 2**30


def test_default_host_of_the_test_driver() -> None:
    with hvballoon.connect("test:///default") as hv:
        (h,) = hv.get_host_stats()
        (vm,) = hv.get_stats()
    assert h.backend == "kvm" and h.host == vm.vm.host
    assert h.physical_bytes == 3 * GiB  # getInfo: 3,145,728 KiB, read in whole MiB
    assert h.free_bytes == 3_145_728  # getFreeMemory, bytes
    assert h.used_bytes == h.physical_bytes - h.free_bytes
    assert h.extra["source"] == "getInfo+getFreeMemory" and h.extra["numa_cells"] == 2
    assert h.shared_bytes is None  # no KSM parameters on this driver: unknown, not 0
    assert h.swap_total_bytes is None and h.swap_used_bytes is None  # libvirt has no host swap
    assert h.vms_running == 1 and h.vm_configured_bytes == 8 * GiB and h.vm_current_bytes == 2 * GiB
    assert h.ballooned_bytes == vm.ballooned_bytes == 6 * GiB
    assert h.overcommit_ratio == round(8 / 3, 4)


def test_a_node_file_sets_the_hosts_memory_and_its_vms(tmp_path: Path) -> None:
    domains = [
        domain_xml("web01", memory_mib=4096, current_mib=3072),
        domain_xml("db01", memory_mib=8192, current_mib=6144),
        domain_xml("off01", memory_mib=16384, running=False),
        domain_xml("plain01", memory_mib=1024, balloon="none"),
    ]
    path = tmp_path / "node.xml"
    path.write_text(
        "<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads>"
        "<active>4</active><mhz>2000</mhz><model>x86_64</model></cpu>"
        f"<memory>{12 * GiB // KiB}</memory>\n" + "\n".join(domains) + "\n</node>\n"
    )
    with hvballoon.connect(f"test://{path}") as hv:
        (h,) = hv.get_host_stats()
        stats = hv.get_stats()
    assert h.physical_bytes == 12 * GiB
    assert h.free_bytes == 0  # a node file defines no NUMA cells: libvirt says 0 free
    running = [s for s in stats if s.vm.power_state.value == "running"]
    assert h.vms_running == len(running) == 3
    assert h.vm_configured_bytes == (4096 + 8192 + 1024) * MiB  # off01 promises nothing now
    assert h.ballooned_bytes == sum(s.ballooned_bytes or 0 for s in running) == (1024 + 2048) * MiB
    assert h.overcommit_ratio == round(13312 / 12288, 4)


# what the embedded QEMU driver answered on a test machine (KiB for the node memory stats)
EMBED_STATS = {"total": 24684084, "free": 22480360, "buffers": 29268, "cached": 977248}
EMBED_KSM = {
    "shm_pages_to_scan": 100,
    "shm_sleep_millisecs": 20,
    "shm_pages_shared": 12,
    "shm_pages_sharing": 300,
    "shm_pages_unshared": 0,
    "shm_pages_volatile": 0,
    "shm_full_scans": 3,
    "shm_merge_across_nodes": 1,
}


def raw(**over: Any) -> dict[str, Any]:
    base = {
        "info": ["x86_64", 6490, 2, 2596, 1, 1, 2, 1],  # MiB: here NUMA node 0 only
        "memory_stats": EMBED_STATS,
        "cells_free": 4548907008,
        "ksm": EMBED_KSM,
        "page_bytes": 4 * KiB,
    }
    base.update(over)
    return base


def test_node_memory_stats_win_over_getinfo_and_keep_their_units() -> None:
    f = host_figures(raw())
    assert f["physical_bytes"] == 24684084 * KiB
    assert f["free_bytes"] == (22480360 + 29268 + 977248) * KiB  # free + buffers + cached
    assert (
        f["extra"]["unused_bytes"] == 22480360 * KiB and f["extra"]["cache_bytes"] == (29268 + 977248) * KiB
    )
    assert f["extra"]["source"] == "getMemoryStats"
    assert f["extra"]["node_info_memory_bytes"] == 6490 * MiB and f["extra"]["cells_free_bytes"] == 4548907008
    assert f["shared_bytes"] == 300 * 4 * KiB  # KSM's pages_sharing: the pages it saves
    assert f["extra"]["ksm_pages_shared"] == 12 and f["extra"]["ksm_full_scans"] == 3


def test_free_with_the_cache_beyond_the_total_is_capped_at_physical() -> None:
    # MemFree + Buffers + Cached can exceed MemTotal (Cached counts shmem and swap cache pages)
    f = host_figures(raw(memory_stats={"total": 1000, "free": 600, "buffers": 100, "cached": 500}))
    h = host_stats([], host="node", backend="kvm", **f)
    assert (h.physical_bytes, h.used_bytes, h.free_bytes) == (1000 * KiB, 0, 1000 * KiB)
    assert h.extra["unused_bytes"] == 600 * KiB and h.extra["cache_bytes"] == 600 * KiB  # as read


@pytest.mark.parametrize(
    ("over", "physical", "free", "shared"),
    [
        ({"memory_stats": None}, 6490 * MiB, 4548907008, 300 * 4 * KiB),
        ({"memory_stats": {"free": 1}}, 6490 * MiB, 4548907008, 300 * 4 * KiB),  # no total: unusable
        ({"memory_stats": None, "cells_free": None}, 6490 * MiB, None, 300 * 4 * KiB),
        ({"ksm": None}, 24684084 * KiB, (22480360 + 29268 + 977248) * KiB, None),
        ({"page_bytes": None}, 24684084 * KiB, (22480360 + 29268 + 977248) * KiB, None),
        ({"ksm": {"shm_pages_shared": 1}}, 24684084 * KiB, (22480360 + 29268 + 977248) * KiB, None),
        ({"memory_stats": {"total": 1000, "free": 10}}, 1000 * KiB, 10 * KiB, 300 * 4 * KiB),  # no cache keys
    ],
)
def test_missing_answers_leave_their_figures_unknown(
    over: dict[str, Any], physical: int, free: int | None, shared: int | None
) -> None:
    f = host_figures(raw(**over))
    assert (f["physical_bytes"], f["free_bytes"], f.get("shared_bytes")) == (physical, free, shared)


def test_base_page_size_from_the_capabilities() -> None:
    xml = (
        "<capabilities><host><cpu><arch>x86_64</arch><pages unit='KiB' size='2048'/>"
        "<pages unit='KiB' size='4'/><pages unit='KiB' size='1048576'/></cpu></host></capabilities>"
    )
    assert _base_page_bytes(xml) == 4 * KiB
    assert _base_page_bytes("<capabilities><host><cpu/></host></capabilities>") is None
    assert (
        _base_page_bytes("<capabilities><host><cpu><pages unit='MiB' size='x'/></cpu></host></capabilities>")
        is None
    )
    with hvballoon.connect("test:///default") as hv:
        assert _base_page_bytes(hv.native.getCapabilities()) == 4 * KiB


def test_only_unsupported_calls_are_optional() -> None:
    def unsupported() -> None:
        raise fake_error(libvirt.VIR_ERR_NO_SUPPORT, "this function is not supported")

    def denied() -> None:
        raise fake_error(libvirt.VIR_ERR_OPERATION_DENIED, "denied")

    assert _optional(unsupported) is None
    assert _optional(lambda: 5) == 5
    with pytest.raises(libvirt.libvirtError):
        _optional(denied)


def test_autoballoon_on_the_test_driver_needs_no_host_memory() -> None:
    r = CliRunner().invoke(main, ["autoballoon", "test:///default", "--once", "--dry-run", "-v"])
    assert r.exit_code == 0, r.output
    assert "[0] test:" in r.output
    r = CliRunner().invoke(main, ["autoballoon", "test:///default", "--once", "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    assert '"vm":"test"' in r.output.replace(" ", "")
