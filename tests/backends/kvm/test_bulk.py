"""The KVM backend's bulk paths: native look-ups, definitions in one call, many targets in one."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hvballoon.backend import TargetRequest
from hvballoon.errors import UnsupportedOperationError, VMNotFoundError
from hvballoon.models import PowerState
from hvballoon.session import Hypervisor
from hvballoon.units import MiB


def count_link_calls(hv: Hypervisor) -> Counter[str]:
    calls: Counter[str] = Counter()
    link = hv.backend.link  # type: ignore[attr-defined]
    original = link.call

    def counted(what: str, fn: Any, **kw: Any) -> Any:
        calls[what] += 1
        return original(what, fn, **kw)

    link.call = counted
    return calls


def test_names_and_uuids_are_looked_up_natively(node_hv: Hypervisor) -> None:
    backend = node_hv.backend
    web01 = next(v for v in node_hv.list_vms() if v.name == "web01")
    found = backend.lookup_vms(["web01", web01.id, "db01", "nosuch", "0000-not-a-uuid"])
    assert found is not None
    assert sorted(v.name for v in found) == ["db01", "web01"]
    assert {v.name: v.power_state for v in found} == {"web01": PowerState.RUNNING, "db01": PowerState.RUNNING}
    assert backend.lookup_vms(["off01"])[0].power_state is PowerState.STOPPED  # type: ignore[index]


def test_a_new_session_resolves_a_name_without_listing(node_hv: Hypervisor) -> None:
    calls = count_link_calls(node_hv)
    assert node_hv.set_target("web01", "3.5GiB", force=True).changed
    assert "list domains" not in calls and calls["look domains up"] == 1
    assert calls["set the balloon target to 3.5 GiB"] == 1


def test_configs_of_every_domain_in_one_call(node_hv: Hypervisor) -> None:
    calls = count_link_calls(node_hv)
    configs = node_hv.get_configs()
    assert sorted(c.vm.name for c in configs) == ["db01", "off01", "plain01", "web01", "web02"]
    assert calls == Counter({"read the domain definitions": 1})
    by_name = {c.vm.name: c for c in configs}
    assert by_name["db01"].maximum_bytes == 16384 * MiB
    assert by_name["off01"].vm.power_state is PowerState.STOPPED
    assert by_name["plain01"].extra["balloon_model"] == "none"
    # the same figures as one by one
    assert node_hv.get_config("db01") == by_name["db01"]


def test_many_targets_in_one_call_each_domain_on_its_own(node_hv: Hypervisor) -> None:
    node_hv.list_vms()
    calls = count_link_calls(node_hv)
    res = node_hv.set_targets(
        {"web01": "3.5GiB", "db01": "11GiB", "off01": "2GiB", "plain01": "512MiB"},
        force=True,
        skip_invalid=True,
    )
    assert isinstance(res["plain01"], UnsupportedOperationError)  # no balloon: refused before sending
    assert res.made == {"web01", "db01", "off01"}
    assert calls["set 3 balloon targets"] == 1
    after = {s.vm.name: s for s in node_hv.get_stats(["web01", "db01"])}
    assert after["web01"].target_bytes == 3584 * MiB and after["db01"].target_bytes == 11264 * MiB
    assert node_hv.get_config("off01").startup_bytes == 2048 * MiB


def test_a_vanished_domain_fails_alone(node_hv: Hypervisor) -> None:
    backend = node_hv.backend
    web01, db01 = node_hv.resolve_many(["web01", "db01"])
    ghost = db01.model_copy(update={"id": "00000000-0000-0000-0000-000000000000", "name": "ghost"})
    answers = backend.apply_targets(
        [
            TargetRequest(web01, 3 * 1024 * MiB),
            TargetRequest(ghost, 4096 * MiB),
            TargetRequest(db01, 8192 * MiB),
        ]
    )
    assert answers[0] is None and answers[2] is None
    assert isinstance(answers[1], VMNotFoundError) and answers[1].vm == "ghost"
    assert node_hv.get_stats(["db01"])[0].target_bytes == 8192 * MiB
