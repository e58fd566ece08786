"""What the world changes at run time per VM (a rename, a mark, a stopped balloon driver, frozen
reports, a power change, a deletion) is still so after the world is persisted and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

import hvballoon
from hvballoon.errors import VMNotFoundError
from hvballoon.fake.scenario import load_scenario
from hvballoon.fake.store import WorldStore, world_from_bytes, world_to_bytes
from hvballoon.fake.world import World


def _changed(w: World) -> None:
    w.rename(w.guest("web01").id, "web01-renamed")
    w.rename(w.guest("web02").id, "db01")  # now a name two VMs share
    w.set_mark(w.guest("app01").id, "hvballoon.before", "8GiB")
    w.stop_balloon_driver(w.guest("app02").id)
    w.freeze_reports([w.guest("batch01").id], 600)
    w.power_off(w.guest("ci01").id)


def _picture(w: World) -> dict[str, object]:
    return {
        "names": list(w.names),
        "by_name": {name: [g.id for g in w.named(name)] for name in {*w.names, "web01", "web02"}},
        "guest_names": [g.name for g in w.guests.values()],
        "configs": [dict(g.config) for g in w.guests.values()],
        "power": [g.power_state for g in w.guests.values()],
        "driver": w.state.balloon_driver.tolist(),
        "frozen": w.state.reports_frozen_until.tolist(),
    }


def test_a_world_read_back_from_bytes_keeps_what_changed_at_run_time() -> None:
    w = World(load_scenario("seed"))
    _changed(w)
    w.advance(60)
    again = world_from_bytes(world_to_bytes(w))
    assert _picture(again) == _picture(w)
    assert again.guest("web01-renamed").id == w.guest("web01-renamed").id
    with pytest.raises(KeyError):
        again.guest("web01")


def test_a_vm_renamed_in_a_persisted_world_keeps_its_new_name_in_the_next_session(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    store = WorldStore(db, lambda: World(load_scenario("seed")))
    with store.transaction() as w:
        renamed_id = w.guest("web01").id
        _changed(w)
        before = _picture(w)
    store.close()
    store = WorldStore(db, lambda: World(load_scenario("seed")))
    with store.transaction(write=False) as w:
        assert _picture(w) == before
    store.close()
    with hvballoon.connect(f"fake://seed?state={db}") as hv:
        names = {vm.name: vm.id for vm in hv.list_vms()}
        assert names["web01-renamed"] == renamed_id and "web01" not in names and "web02" not in names
        (st,) = hv.get_stats(["web01-renamed"])
        assert st.vm.id == renamed_id
        with pytest.raises(VMNotFoundError):
            hv.get_stats(["web01"])
        hv.set_target("web01-renamed", "8GiB")  # the new name is the VM's for a change too
