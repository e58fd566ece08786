"""The ESXi backend against the vSphere simulator: figures, units, limits, paging, TLS, sessions."""

from __future__ import annotations

import gc
import math
from typing import Any

import pytest

import hvballoon
from hvballoon.backends.esxi.backend import CAPABILITIES, STATS_PATHS
from hvballoon.errors import (
    AuthenticationError,
    HVConnectionError,
    InvalidRequestError,
    InvalidURIError,
    SessionExpiredError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.models import VM, Mechanism, PowerState
from hvballoon.units import KiB, MiB
from tests.support.vsphere.fleet import FLEET, connect, vm_figures
from tests.support.vsphere.harness import VcsimServer

pytestmark = pytest.mark.peer

FIGURES = {vm["name"]: vm for vm in FLEET}


# -- the ESXi kind declares both this backend and the fake's esxi flavour -----------------------


def test_capabilities_match_the_fake_esxi_flavour() -> None:
    from hvballoon.backends.esxi.backend import ESXiBackend
    from hvballoon.kinds import ESXI

    assert ESXiBackend.kind is ESXI
    with hvballoon.connect("fake://?flavor=esxi") as hv:
        fake = hv.capabilities
    for field in ("mechanism", "bulk_stats", "readable", "set_live", "set_offline", "alignment_bytes"):
        assert getattr(CAPABILITIES, field) == getattr(fake, field), field
    assert CAPABILITIES.target_observable is fake.target_observable is False


def test_sweep_asks_for_exactly_the_paths_it_uses() -> None:
    assert len(STATS_PATHS) == len(set(STATS_PATHS))
    assert "summary.quickStats" not in STATS_PATHS  # the memory fields only, not the whole object
    assert "summary.quickStats.compressedMemory" in STATS_PATHS
    assert "summary.quickStats.guestHeartbeatStatus" in STATS_PATHS


# -- reading ------------------------------------------------------------------------------------


def test_stats_equal_the_figures_written(shared_peer: VcsimServer, fast_sweep: bool) -> None:
    with connect(shared_peer, fast_sweep=fast_sweep) as hv:
        stats = {s.vm.name: s for s in hv.get_stats()}
    assert sorted(stats) == sorted(FIGURES)

    web = stats["web01"]
    assert web.vm.power_state is PowerState.RUNNING and web.mechanism is Mechanism.LIMIT
    assert web.vm.host is not None and web.vm.host.startswith("DC0_")
    assert web.configured_bytes == 16384 * MiB
    assert web.guest_used_bytes == web.demand_bytes == 4096 * MiB
    assert web.host_consumed_bytes == 8300 * MiB
    assert web.ballooned_bytes == 512 * MiB
    assert web.current_bytes == (16384 - 512) * MiB
    assert web.swapped_bytes == 64 * MiB
    assert web.compressed_bytes == 2048 * KiB  # KB on the wire, unlike the rest
    assert web.shared_bytes == 100 * MiB
    assert web.extra["private_bytes"] == 8000 * MiB
    assert web.extra["overhead_bytes"] == 90 * MiB
    assert web.target_bytes == web.configured_bytes  # unlimited: the target is all of it
    assert not web.stale

    assert stats["db01"].target_bytes == 24576 * MiB  # the limit
    assert stats["db01"].configured_bytes == 32768 * MiB
    assert stats["web02"].ballooned_bytes == 0

    idle = stats["idle01"]
    assert idle.vm.power_state is PowerState.STOPPED and idle.stale
    assert idle.configured_bytes == 16384 * MiB
    assert idle.guest_used_bytes is None and idle.current_bytes is None

    # guestMemoryUsage 0 on a running VM: no figure, so "used" is unknown
    notools = stats["notools01"]
    assert notools.guest_used_bytes is None and notools.stale
    assert notools.host_consumed_bytes == 3000 * MiB
    # and says why from its guest heartbeat (the simulator's default: gray), as the fake's esxi
    # flavour does for a guest without VMware Tools
    assert notools.extra["guest_heartbeat"] == "gray"
    assert "VMware Tools is not installed or not running" in notools.extra["stats_note"]
    assert "stats_note" not in web.extra


@pytest.mark.parametrize(
    ("heartbeat", "said"),
    [
        ("gray", "VMware Tools is not installed or not running"),
        ("red", "may have stopped responding"),
        ("green", "no active-memory figure for it yet"),
    ],
)
def test_a_zero_guest_memory_usage_is_explained_by_the_guest_heartbeat(
    heartbeat: str, said: str, fast_sweep: bool
) -> None:
    """guestMemoryUsage 0 is no figure whatever the heartbeat (the stats stale, the use
    unknown); the heartbeat says why: gray is VMware Tools not running, not green."""
    qs = {"guestMemoryUsage": 0, "hostMemoryUsage": 3000, "guestHeartbeatStatus": heartbeat}
    with VcsimServer([vm_figures("vm01", quickStats=qs)]) as peer, connect(peer, fast_sweep=fast_sweep) as hv:
        (st,) = hv.get_stats(["vm01"])
    assert st.guest_used_bytes is None and st.demand_bytes is None and st.stale
    assert st.extra["guest_heartbeat"] == heartbeat
    assert said in st.extra["stats_note"]
    if heartbeat == "green":
        assert "not installed" not in st.extra["stats_note"]


def test_config_reads_the_allocation(shared_peer: VcsimServer) -> None:
    with connect(shared_peer) as hv:
        web, db = hv.get_config("web01"), hv.get_config("db01")
    assert web.maximum_bytes == 16384 * MiB
    assert (web.reservation_bytes, web.limit_bytes) == (1024 * MiB, None)
    assert (web.shares, web.shares_level) == (163840, "normal")
    assert web.balloon_cap_bytes is None
    assert (db.reservation_bytes, db.limit_bytes, db.shares, db.shares_level) == (
        0,
        24576 * MiB,
        5000,
        "custom",
    )


def test_a_limit_above_the_memory_size_is_no_target_above_it(fast_sweep: bool) -> None:
    # a limit set before the memory was made smaller stays; the VM can have its memory, no more
    above = {"reservation": 0, "limit": 65536, "shares": {"level": "normal", "shares": 163840}}
    vms = [
        vm_figures("over01", memoryAllocation=above),
        vm_figures("over02", memoryAllocation=above, powerState="poweredOff", quickStats={}),
    ]
    with VcsimServer(vms) as peer, connect(peer, fast_sweep=fast_sweep) as hv:
        for st in hv.get_stats():
            assert st.target_bytes == st.configured_bytes == 16384 * MiB, st.vm.name
            assert st.extra["limit_bytes"] == 65536 * MiB
        assert hv.get_config("over01").limit_bytes == 65536 * MiB  # the setting as it is
        assert not hv.set_target("over01", "16GiB").changed
        change = hv.set_target("over01", "8GiB", dry_run=True)
        assert change.before == {"target_bytes": 16384 * MiB}


def test_balloon_cap_is_read_from_extra_config() -> None:
    vms = [vm_figures("pinned01", extraConfig={"sched.mem.maxmemctl": "1330"})]
    with VcsimServer(vms) as peer, connect(peer) as hv:
        assert hv.get_config("pinned01").balloon_cap_bytes == 1330 * MiB


def test_a_sweep_is_one_round_trip_and_reads_no_attribute(shared_peer: VcsimServer, fast_sweep: bool) -> None:
    with connect(shared_peer, fast_sweep=fast_sweep) as hv:
        shared_peer.reset_counts()
        stats = hv.get_stats()
        assert shared_peer.counts() == {"RetrievePropertiesEx": 1}
        assert len(stats) == len(FLEET)

        shared_peer.reset_counts()
        hv.list_vms()
        assert shared_peer.counts() == {"RetrievePropertiesEx": 1}

        # per VM: the same retrieval restricted to those objects (hosts are cached)
        vms = [s.vm for s in stats[:3]]
        shared_peer.reset_counts()
        assert [s.vm.id for s in hv.get_stats(vms)] == [v.id for v in vms]
        assert shared_peer.counts() == {"RetrievePropertiesEx": 1}


def test_per_vm_stats_equal_bulk_stats(shared_peer: VcsimServer, fast_sweep: bool) -> None:
    with connect(shared_peer, fast_sweep=fast_sweep) as hv:
        bulk = {s.vm.id: s.model_dump(exclude={"collected_at"}) for s in hv.get_stats()}
        for vm in hv.list_vms():
            (one,) = hv.get_stats([vm])
            assert one.model_dump(exclude={"collected_at"}) == bulk[vm.id]


def test_a_vm_given_without_its_moref_is_found_by_id(shared_peer: VcsimServer, fast_sweep: bool) -> None:
    with connect(shared_peer, fast_sweep=fast_sweep) as hv:
        known = hv.resolve("web01")
    with connect(shared_peer, fast_sweep=fast_sweep) as hv:  # a new session: nothing cached
        bare = VM(id=known.id, name="web01", backend="esxi")
        assert hv.get_stats([bare])[0].vm.extra["moref"] == known.extra["moref"]


def test_paging_returns_every_vm_once(fast_sweep: bool) -> None:
    vms = [vm_figures(f"vm{i:02d}", quickStats={"guestMemoryUsage": 100 + i}) for i in range(23)]
    with VcsimServer(vms, hosts=3) as peer, connect(peer, page_size=5, fast_sweep=fast_sweep) as hv:
        peer.reset_counts()
        stats = hv.get_stats()
        objects = len(vms) + 3  # the hosts' names come in the same sweep
        assert peer.counts() == {
            "RetrievePropertiesEx": 1,
            "ContinueRetrievePropertiesEx": math.ceil(objects / 5) - 1,
        }
        assert sorted(s.vm.name for s in stats) == sorted(v["name"] for v in vms)
        assert {s.vm.name: s.guest_used_bytes for s in stats}["vm17"] == 117 * MiB
        assert all(s.vm.host for s in stats)


def test_server_side_page_cap_is_followed(fast_sweep: bool) -> None:
    vms = [vm_figures(f"vm{i:02d}") for i in range(9)]
    with VcsimServer(vms, page_size=4) as peer, connect(peer, fast_sweep=fast_sweep) as hv:
        assert len(hv.get_stats()) == 9


def test_perf_counter_balloon_target_is_one_query_and_degrades_to_none(
    shared_peer: VcsimServer, fast_sweep: bool
) -> None:
    """The 0.24 simulator serves the counter but no samples for it: the figure stays None."""
    with connect(shared_peer, perf_counters=True, fast_sweep=fast_sweep) as hv:
        hv.get_stats()  # looks the counter id up once
        shared_peer.reset_counts()
        stats = hv.get_stats()
        assert shared_peer.counts() == {"RetrievePropertiesEx": 1, "QueryPerf": 1}
    for st in stats:
        target = st.extra.get("balloon_target_bytes")
        assert target is None or (isinstance(target, int) and target >= 0)


# -- changing -----------------------------------------------------------------------------------


def test_set_target_sets_the_limit_and_keeps_reservation_and_shares(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        change = hv.set_target("web01", "6GiB")
        assert change.changed and change.mechanism is Mechanism.LIMIT
        assert peer.vm("web01")["memoryAllocation"] == {
            "reservation": 1024,
            "limit": 6144,
            "shares": {"level": "normal", "shares": 163840},
        }
        assert hv.get_stats(["web01"])[0].target_bytes == 6 * 1024 * MiB
        assert hv.set_target("web01", "6GiB").changed is False

        # release: unlimited again, nothing else touched
        hv.set_config("web01", limit="unlimited")
        assert peer.vm("web01")["memoryAllocation"]["limit"] == -1
        assert peer.vm("web01")["memoryAllocation"]["reservation"] == 1024
        assert hv.get_config("web01").limit_bytes is None


def test_a_target_is_aligned_up_to_a_mib(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        hv.set_target("web01", 6 * 1024 * MiB + 1)
    assert peer.vm("web01")["memoryAllocation"]["limit"] == 6145


def test_set_target_round_trips(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        vm = hv.resolve("web01")
        peer.reset_counts()
        hv.set_target(vm, "6GiB")
        counts = peer.counts()
    # stats and config (with the host's name) in one read + fresh allocation + one read of the
    # task's state; one reconfigure; no Fetch ever
    assert counts == {"RetrievePropertiesEx": 3, "ReconfigVM_Task": 1}


def test_set_config_changes_reservation_limit_and_shares_in_one_task(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        peer.reset_counts()
        change = hv.set_config("web01", reservation="2GiB", limit="12GiB", shares=4000)
        assert change.changed
        assert peer.counts().get("ReconfigVM_Task") == 1
        assert peer.vm("web01")["memoryAllocation"] == {
            "reservation": 2048,
            "limit": 12288,
            "shares": {"level": "custom", "shares": 4000},
        }
        cfg = hv.get_config("web01")
        assert (cfg.reservation_bytes, cfg.limit_bytes, cfg.shares) == (2048 * MiB, 12288 * MiB, 4000)


def test_shares_level_is_sent_as_a_level_with_esxi_s_count_and_read_back(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        assert hv.get_config("web01").shares_level == "normal"
        change = hv.set_config("web01", shares_level="high")
        assert change.after == {"shares_level": "high", "shares": 20 * 16384}
        assert peer.vm("web01")["memoryAllocation"]["shares"] == {"level": "high", "shares": 327680}
        cfg = hv.get_config("web01")
        assert (cfg.shares_level, cfg.shares) == ("high", 327680)
        assert hv.set_config("web01", shares_level="high").changed is False
        hv.set_config("web01", shares_level="low")
        assert peer.vm("web01")["memoryAllocation"]["shares"] == {"level": "low", "shares": 5 * 16384}
        with pytest.raises(InvalidRequestError) as info:
            hv.set_config("web01", shares_level="medium")
        assert "low, normal, high, custom" in info.value.message


def test_memory_reservation_lock_is_sent_and_read_back(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        assert hv.get_config("web01").memory_reservation_lock is False
        peer.reset_counts()
        change = hv.set_config("web01", memory_reservation_lock=True)
        assert peer.counts().get("ReconfigVM_Task") == 1
        # memoryReservationLockedToMax keeps the reservation at the memory size: sent with it
        assert change.after == {"memory_reservation_lock": True, "reservation_bytes": 16384 * MiB}
        assert peer.vm("web01")["memoryAllocation"]["reservation"] == 16384
        cfg = hv.get_config("web01")
        assert (cfg.memory_reservation_lock, cfg.reservation_bytes) == (True, 16384 * MiB)
        with pytest.raises(InvalidRequestError) as info:
            hv.set_config("web01", reservation="1GiB")
        assert info.value.details["rule"] == "reservation_locked_to_max"
        hv.set_config("web01", memory_reservation_lock=False, reservation="1GiB")
        cfg = hv.get_config("web01")
        assert (cfg.memory_reservation_lock, cfg.reservation_bytes) == (False, 1024 * MiB)


def test_reservation_above_the_limit_is_refused_before_sending(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        peer.reset_counts()
        with pytest.raises(InvalidRequestError, match="above the limit"):
            hv.set_config("db01", reservation="30GiB")
        assert "ReconfigVM_Task" not in peer.counts()


def test_a_target_below_the_reservation_is_refused(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        hv.set_config("web01", reservation="8GiB")
        with pytest.raises(InvalidRequestError, match="below the reservation"):
            hv.set_target("web01", "6GiB")
    assert peer.vm("web01")["memoryAllocation"]["limit"] == -1


def test_balloon_cap_and_memory_size_are_offline_changes() -> None:
    vms = [vm_figures("off01", powerState="poweredOff"), vm_figures("on01")]
    with VcsimServer(vms) as peer, connect(peer) as hv:
        with pytest.raises(hvballoon.errors.InvalidStateError, match="power it off"):
            hv.set_config("on01", balloon_cap="2GiB")
        hv.set_config("off01", balloon_cap="2GiB", maximum="8GiB")
        cfg = hv.get_config("off01")
        assert (cfg.balloon_cap_bytes, cfg.maximum_bytes) == (2048 * MiB, 8192 * MiB)
        assert peer.vm("off01")["memoryMB"] == 8192


def test_unsupported_fields_are_refused() -> None:
    with VcsimServer([vm_figures("on01")]) as peer, connect(peer) as hv:
        with pytest.raises(UnsupportedOperationError):
            hv.set_config("on01", buffer_percent=20)


# -- TLS ----------------------------------------------------------------------------------------


def test_verification_is_on_by_default_and_fails_on_the_self_signed_simulator(peer: VcsimServer) -> None:
    uri = f"esxi://{peer.username}@{peer.host}:{peer.port}"
    with pytest.raises(HVConnectionError, match="TLS certificate verification failed") as info:
        hvballoon.connect(uri, password=peer.password)
    assert info.value.retryable is False  # trusting a certificate does not happen by itself
    assert info.value.native_code == "SSLCertVerificationError"
    assert peer.password not in str(info.value)


def test_verification_succeeds_with_the_ca_file(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        assert hv.native is not None and len(hv.list_vms()) == len(FLEET)


def test_verify_false_is_explicit_and_warned(peer: VcsimServer) -> None:
    uri = f"esxi://{peer.username}@{peer.host}:{peer.port}"
    with pytest.warns(UserWarning, match="verification is OFF"):
        hv = hvballoon.connect(uri, password=peer.password, verify=False)
    with hv:
        assert len(hv.list_vms()) == len(FLEET)


def test_a_missing_ca_file_is_a_clear_error(peer: VcsimServer, tmp_path: Any) -> None:
    with pytest.raises(InvalidRequestError, match="CA file"):
        connect(peer, ca_file=str(tmp_path / "nope.pem"))


# -- sessions -----------------------------------------------------------------------------------


def test_an_expired_session_is_re_established_once(shared_peer: VcsimServer, fast_sweep: bool) -> None:
    with connect(shared_peer, fast_sweep=fast_sweep) as hv:
        assert len(hv.get_stats()) == len(FLEET)
        assert shared_peer.expire_sessions() >= 1
        shared_peer.reset_counts()
        assert len(hv.get_stats()) == len(FLEET)
        counts = shared_peer.counts()
        assert counts["Login"] == 1 and counts["CreateContainerView"] == 1
        assert counts["RetrievePropertiesEx"] == 2  # the failed one, then the retry
        assert hv.backend.client.relogins == 1  # type: ignore[attr-defined]


def test_a_session_that_stays_dead_is_a_retryable_session_expired(
    shared_peer: VcsimServer, monkeypatch: pytest.MonkeyPatch, fast_sweep: bool
) -> None:
    from pyVmomi import vim

    with connect(shared_peer, retry=hvballoon.RetryPolicy(max_attempts=1), fast_sweep=fast_sweep) as hv:
        client = hv.backend.client  # type: ignore[attr-defined]

        def dead(*args: Any, **kwargs: Any) -> Any:
            raise vim.fault.NotAuthenticated(msg="The session is not authenticated.")

        shared_peer.expire_sessions()  # really expired, so logging in again succeeds...
        monkeypatch.setattr(client, "retrieve", dead)  # ...yet the retried call still fails
        monkeypatch.setattr(client, "retrieve_view_fast", dead)
        with pytest.raises(SessionExpiredError) as info:
            hv.get_stats()
        assert info.value.retryable and client.relogins == 1
        assert isinstance(info.value.__cause__, vim.fault.NotAuthenticated)


# -- connecting ---------------------------------------------------------------------------------


def test_connect_round_trips(shared_peer: VcsimServer) -> None:
    shared_peer.reset_counts()
    with connect(shared_peer):
        assert shared_peer.counts() == {
            "RetrieveServiceContent": 1,
            "Login": 1,
            "CreateContainerView": 1,
        }


def test_wrong_password_is_an_authentication_error(shared_peer: VcsimServer) -> None:
    uri = f"esxi://{shared_peer.username}@{shared_peer.host}:{shared_peer.port}/?scheme=http"
    with pytest.raises(AuthenticationError) as info:
        hvballoon.connect(uri, password="not-the-password")
    assert "not-the-password" not in str(info.value) and "not-the-password" not in repr(info.value)


def test_a_refused_login_leaves_no_connection_open(shared_peer: VcsimServer) -> None:
    uri = f"esxi://{shared_peer.username}@{shared_peer.host}:{shared_peer.port}/?scheme=http"
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            hvballoon.connect(uri, password="not-the-password")
    gc.collect()  # an unclosed socket would warn now: ResourceWarning is an error in this suite


def test_vcenter_uri_narrows_to_a_datacenter_and_cluster(shared_peer: VcsimServer) -> None:
    base = f"vcenter://{shared_peer.username}@{shared_peer.host}:{shared_peer.port}/?scheme=http"
    with hvballoon.connect(f"{base}&datacenter=DC0&cluster=DC0_C0", password=shared_peer.password) as hv:
        assert len(hv.list_vms()) == len(FLEET)
    with pytest.raises(InvalidURIError, match=r"no cluster named 'nope'.*DC0_C0"):
        hvballoon.connect(f"{base}&datacenter=DC0&cluster=nope", password=shared_peer.password)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("esxi://host.example", "user name"),
        ("esxi://root@host.example/?datacenter=DC0", "unknown esxi:// parameter"),
        ("esxi://root@host.example/?scheme=ftp", "scheme= must be https or http"),
        ("vcenter://root@vc.example/?cluster=A&folder=B", "either cluster= or folder="),
    ],
)
def test_bad_uris_are_refused_before_connecting(uri: str, message: str) -> None:
    with pytest.raises(InvalidURIError, match=message):
        hvballoon.connect(uri, password="x")


def test_a_password_is_required() -> None:
    with pytest.raises(InvalidRequestError, match="needs a password"):
        hvballoon.connect("esxi://root@host.example")


def test_unknown_vm_is_not_found(shared_peer: VcsimServer) -> None:
    with connect(shared_peer) as hv:
        ghost = VM(id="no-such-uuid", name="ghost", backend="esxi", extra={"moref": "vm-999999"})
        with pytest.raises(VMNotFoundError):
            hv.get_stats([ghost])
