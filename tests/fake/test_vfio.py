"""A KVM domain with a device assigned through VFIO, in the fake as on libvirt: QEMU maps all
its memory for the device's DMA, pinned, and turns off discarding guest RAM, so its balloon
takes memory from the guest and gives the host none, and the host never swaps it out. The
fake's configuration says so as the kvm backend reads it (``extra["vfio_devices"]``), and the
controller holds such a VM as it does on libvirt's test driver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World
from tests.support.cli import invoke, stats_frees_nothing

GiB = 2**30


_VMS: list[dict[str, Any]] = [
    {"name": "gpu01", "memory": "8GiB", "used": "2GiB", "vfio_devices": 1},
    {"name": "web01", "memory": "8GiB", "used": "2GiB"},
]


def _world(physical: str = "32GiB", swap: str = "8GiB") -> World:
    vms = [dict(v) for v in _VMS]
    host = {"physical": physical, "overhead": "1GiB", "swap": swap}
    return World(parse_scenario({"name": "vfio", "flavor": "kvm", "host": host, "vms": vms}), strict=True)


def test_the_fake_says_which_domains_have_vfio_devices() -> None:
    with hvballoon.connect("fake://", world=_world()) as hv:
        configs = {c.vm.name: c for c in hv.get_configs()}
    assert configs["gpu01"].extra["vfio_devices"] == 1
    assert configs["web01"].extra["vfio_devices"] == 0


def _scenario_uri(tmp_path: Path) -> str:
    path = tmp_path / "vfio.yaml"
    host = {"physical": "32GiB", "overhead": "1GiB", "swap": "8GiB"}
    path.write_text(json.dumps({"name": "vfio", "flavor": "kvm", "host": host, "vms": _VMS}))
    return f"fake://{path}"


def _marks_gpu01_only(rows: dict[str, str], footnotes: list[str], notes: dict[str, str | None]) -> None:
    assert "frees nothing*" in rows["gpu01"] and "frees nothing" not in rows["web01"], rows
    assert len(footnotes) == 1 and footnotes[0].startswith("* frees nothing:") and "VFIO" in footnotes[0]
    assert notes["web01"] is None and notes["gpu01"] is not None and "VFIO" in notes["gpu01"]


def test_hvballoon_stats_marks_a_pinned_domain(tmp_path: Path) -> None:
    """A user reading ``hvballoon stats`` sees which balloon frees nothing (a marked cell and a
    footnote saying why; ``extra["frees_nothing_note"]`` in ``--json``), as on libvirt."""
    _marks_gpu01_only(*stats_frees_nothing(_scenario_uri(tmp_path)))


def test_fleet_stats_mark_a_pinned_domain_as_one_host_stats_do(tmp_path: Path) -> None:
    """``hvballoon stats`` of several hosts marks the same VMs, in the same words, as of one
    host; the other host's VMs (a Hyper-V kind: no such rule) are not marked."""
    rows, footnotes, notes = stats_frees_nothing(
        "stats", _scenario_uri(tmp_path), "fake://seed?flavor=hyperv"
    )
    _marks_gpu01_only(rows, footnotes, notes)
    assert all("frees nothing" not in rows[vm] for vm in ("db01", "jvm01")) and notes["db01"] is None
    assert footnotes == stats_frees_nothing(_scenario_uri(tmp_path))[1]


def test_watch_marks_a_pinned_domain_as_stats_does(tmp_path: Path) -> None:
    """``hvballoon watch`` (its table, and each sweep's JSON line) marks a VM whose balloon frees
    nothing as ``hvballoon stats`` does."""
    _marks_gpu01_only(*stats_frees_nothing("watch", _scenario_uri(tmp_path), "--count", "1"))


def test_a_fleet_notes_its_sweeps_when_asked(tmp_path: Path) -> None:
    """``Fleet(…, frees_nothing_notes=True)``: the note ``hvballoon stats`` shows, from the same
    rule; by default (the exporter's sweeps) the configurations are not read."""
    from hvballoon.fleet import Fleet

    def notes(**options: Any) -> dict[str, object]:
        with Fleet([_scenario_uri(tmp_path)], host_timeout=30, **options) as fleet:
            (result,) = fleet.sweep()
        assert result.ok, result.error
        return {s.vm.name: s.extra.get("frees_nothing_note") for s in result.stats}

    noted = notes(frees_nothing_notes=True)
    assert (
        noted["web01"] is None and noted["gpu01"] == stats_frees_nothing(_scenario_uri(tmp_path))[2]["gpu01"]
    )
    assert notes() == {"gpu01": None, "web01": None}


@pytest.mark.parametrize("view", [("stats", "fake://seed?flavor=hyperv"), ("watch", "--count", "1")])
def test_a_fleet_view_puts_the_footnote_right_under_the_stats_table(
    tmp_path: Path, view: tuple[str, ...]
) -> None:
    """As ``hvballoon stats`` of one host: the footnote says what the stats table's mark means
    right under it, before the hosts' tables."""
    command, *rest = view
    lines = invoke(command, _scenario_uri(tmp_path), *rest).stdout.splitlines()
    note = next(i for i, line in enumerate(lines) if line.startswith("* frees nothing"))
    hosts = next(i for i, line in enumerate(lines) if line.strip() == "hosts")
    assert lines[note - 1].startswith("└") and note < hosts
