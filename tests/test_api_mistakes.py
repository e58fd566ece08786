"""What users really pass to the Python API: every mistake is a typed error from
:mod:`hvballoon.errors` that names the argument and what is accepted, and nothing is changed.

The public surface tried here: the names ``hvballoon`` exports (``connect``, ``parse_size``,
``format_size``, ``GuardRails``, ``RetryPolicy``, …), the helpers of :mod:`hvballoon.units`,
and the public methods of a session (``resolve``, ``resolve_many``, ``find_vms``, ``get_stats``,
``get_host_stats``, ``get_config``, ``get_configs``, ``vm_capabilities``, ``get_marks``,
``set_mark``, ``set_target``, ``set_targets``, ``set_config``, ``set_configs``,
``wait_for_target``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import hvballoon
from hvballoon import units
from hvballoon.errors import InvalidRequestError, InvalidSizeError
from hvballoon.policy.model import VMSettings
from hvballoon.policy.options import PolicyOption
from hvballoon.units import GiB, MiB

BAD: dict[str, object] = {
    "none": None,
    "empty": "",
    "object": object(),
    "negative": -1,
    "bool": True,
    "huge": 2**70,
    "float": 1.5,
    "nan": math.nan,
    "bytes": b"web01",
}


@pytest.fixture
def hv() -> Iterator[hvballoon.Hypervisor]:
    with hvballoon.connect("fake://seed?flavor=hyperv") as session:
        yield session


def _state(hv: hvballoon.Hypervisor) -> list[Any]:
    """Every VM's configuration and target, and the marks: what a mistake must leave alone."""
    stats = [(s.vm.name, s.target_bytes, s.current_bytes) for s in hv.get_stats()]
    return [stats, [c.model_dump(mode="json", exclude={"collected_at"}) for c in hv.get_configs()]]


def _refused(hv: hvballoon.Hypervisor, call: Callable[[], object], error: type[Exception], *says: str) -> str:
    before = _state(hv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error) as info:
            call()
    for words in says:
        assert words in str(info.value), str(info.value)
    assert _state(hv) == before
    return str(info.value)


# -- a size string without a unit, as the CLI and Ansible refuse it --------------------------


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("target", lambda hv: hv.set_target("web01", "4")),
        ("target", lambda hv: hv.set_target("web01", " 512 ", dry_run=True)),
        ("target", lambda hv: hv.wait_for_target("web01", target="4", timeout=1)),
        ("tolerance", lambda hv: hv.wait_for_target("web01", tolerance="4096", timeout=1)),
        ("minimum", lambda hv: hv.set_config("web01", minimum="4")),
        ("maximum", lambda hv: hv.set_config("web01", maximum="16")),
        ("startup", lambda hv: hv.set_config("web01", startup="1000")),
        ("margin_bytes", lambda hv: hvballoon.GuardRails(margin_bytes="256")),
    ],
)
def test_a_size_string_without_a_unit_too_small_to_be_memory_is_refused(
    hv: hvballoon.Hypervisor, what: str, call: Callable[[hvballoon.Hypervisor], object]
) -> None:
    said = _refused(hv, lambda: call(hv), InvalidSizeError, f"invalid {what} '", "write the unit, e.g. '")
    assert "a number without a unit is bytes" in said


def test_a_bulk_size_string_without_a_unit_is_that_vm_s_refusal_and_nothing_changes(
    hv: hvballoon.Hypervisor,
) -> None:
    before = _state(hv)
    res = hv.set_targets({"web01": "4", "web02": "6GiB"})
    assert not res.applied and isinstance(res["web01"], InvalidSizeError)
    assert "invalid target of web01 '4': a number without a unit is bytes" in str(res["web01"])
    res = hv.set_configs({"web01": {"maximum": "16"}, "web02": {"buffer_percent": 30}})
    assert not res.applied and isinstance(res["web01"], InvalidSizeError)
    assert _state(hv) == before


def test_a_policy_size_given_as_a_string_without_a_unit_is_refused_an_int_is_bytes() -> None:
    option = PolicyOption("deadband_bytes", "size", 64 * MiB)
    with pytest.raises(InvalidSizeError, match="write the unit"):
        option.coerce("4", "proxmox")
    assert option.coerce(4, "proxmox") == 4  # a program's integer is bytes
    with pytest.raises(ValueError, match="a number without a unit is bytes"):
        VMSettings(floor="4")
    assert VMSettings(floor=4 * GiB).floor == 4 * GiB


def test_integers_stay_bytes_and_whole_byte_strings_of_memory_are_taken() -> None:
    with hvballoon.connect("fake://seed") as hv:
        assert hv.set_target("web01", 6 * GiB, dry_run=True).after["target_bytes"] == 6 * GiB
        assert hv.set_target("web01", str(6 * GiB), dry_run=True).after["target_bytes"] == 6 * GiB
    assert hvballoon.GuardRails(margin_bytes="512MiB").margin_bytes == 512 * MiB
    assert hvballoon.GuardRails(margin_bytes=0).margin_bytes == 0
    assert (
        hvballoon.GuardRails(max_stats_age_seconds=math.inf).max_stats_age_seconds == math.inf
    )  # never stale


# -- the helpers of hvballoon.units -----------------------------------------------------------


@pytest.mark.parametrize("value", ["4GiB", True, math.nan, math.inf, [], b"4"])
def test_format_size_refuses_what_is_no_number_of_bytes(value: object) -> None:
    with pytest.raises(InvalidSizeError, match=r"format_size takes a (finite )?number of bytes"):
        units.format_size(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidSizeError, match="format_size"):
        units.format_sizes(value)  # type: ignore[arg-type]


def test_format_size_takes_ints_differences_and_none() -> None:
    assert units.format_size(None) == "-"
    assert units.format_size(-GiB) == "-1 GiB"
    assert units.format_size(2.0 * GiB) == "2 GiB"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("4GiB", 1024), "align: n takes a number of bytes (an int), got '4GiB'; parse a size string"),
        ((None, 1024), "align: n takes a number of bytes"),
        ((math.nan, 1024), "align: n takes a number of bytes"),
        ((1.5, 1024), "align: n takes a number of bytes"),
        ((True, 1024), "align: n takes a number of bytes"),
        ((-1, 1024), "align: n: a size cannot be negative"),
        ((1000, "1KiB"), "the alignment (granularity) must be a positive int of bytes"),
        ((1000, None), "the alignment (granularity) must be a positive int of bytes"),
        ((1000, True), "the alignment (granularity) must be a positive int of bytes"),
        ((1000, 0), "the alignment (granularity) must be a positive int of bytes"),
        ((1000, math.nan), "the alignment (granularity) must be a positive int of bytes"),
    ],
)
def test_align_refuses_what_is_no_number_of_bytes(args: tuple[object, object], says: str) -> None:
    with pytest.raises(InvalidSizeError) as info:
        units.align(*args)  # type: ignore[arg-type]
    assert says in str(info.value)


def test_align_refuses_a_bad_direction_even_where_nothing_moves() -> None:
    with pytest.raises(InvalidRequestError, match="direction must be 'up' or 'down'"):
        units.align(1024, 1024, "sideways")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["4s", None, True, math.nan, math.inf, -3600])
def test_format_duration_refuses_what_is_no_number_of_seconds(value: object) -> None:
    with pytest.raises(InvalidRequestError, match="format_duration takes a finite, non-negative number"):
        units.format_duration(value)  # type: ignore[arg-type]


# -- keywords a call does not take --------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda hv: hv.set_config("web01", bogus=1), "set_config() takes no keyword bogus; accepted: "),
        (
            lambda hv: hv.set_config("web01", minimun="2GiB"),
            "set_config() takes no keyword minimun (did you mean 'minimum'?)",
        ),
        (
            lambda hv: hv.set_target("web01", "6GiB", dryrun=True),
            "set_target() takes no keyword dryrun (did you mean 'dry_run'?)",
        ),
        (
            lambda hv: hv.set_targets({"web01": "6GiB"}, skip_invalids=True),
            "set_targets() takes no keyword skip_invalids (did you mean 'skip_invalid'?)",
        ),
        (
            lambda hv: hv.set_configs({"web01": {"buffer_percent": 30}}, dryrun=True),
            "set_configs() takes no keyword dryrun",
        ),
        (
            lambda hv: hv.set_configs({"web01": {"bufer_percent": 30}}).raise_for_errors(),
            "unknown config option(s) bufer_percent (did you mean 'buffer_percent'?); accepted: ",
        ),
        (
            lambda hv: hv.wait_for_target("web01", timout=5),
            "wait_for_target() takes no keyword timout (did you mean 'timeout'?)",
        ),
        (lambda hv: hv.get_stats(["web01"], retries=1), "get_stats() takes no keyword retries"),
    ],
)
def test_a_keyword_a_call_does_not_take_is_named_with_what_it_takes(
    hv: hvballoon.Hypervisor, call: Callable[[hvballoon.Hypervisor], object], says: str
) -> None:
    said = _refused(hv, lambda: call(hv), InvalidRequestError, says)
    assert "accepted: " in said


def test_connect_names_a_misspelt_keyword_of_its_own() -> None:
    with pytest.raises(InvalidRequestError) as info:
        hvballoon.connect("fake://seed", timout=5)
    said = str(info.value)
    assert "unknown option(s) for the fake backend: timout (did you mean 'timeout'?)" in said
    assert "accepted: stats_period, world, and connect()'s own password, timeout" in said


# -- the class: each public call given what it does not take -----------------------------------


_FLAG_CALLS: dict[str, Callable[[hvballoon.Hypervisor, object], object]] = {
    "dry_run": lambda hv, v: hv.set_target("web01", "6GiB", dry_run=v),  # type: ignore[arg-type]
    "force": lambda hv, v: hv.set_targets({"web01": "6GiB"}, force=v),  # type: ignore[arg-type]
    "skip_invalid": lambda hv, v: hv.set_targets({"web01": "6GiB"}, skip_invalid=v),  # type: ignore[arg-type]
    "wait": lambda hv, v: hv.set_targets({"web01": "6GiB"}, wait=v),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("value", [None, "", "no", 0, 1, "yes"])
@pytest.mark.parametrize("flag", sorted([*_FLAG_CALLS, "set_config dry_run", "set_configs dry_run"]))
def test_a_flag_takes_true_or_false_only(hv: hvballoon.Hypervisor, flag: str, value: object) -> None:
    # dry_run=None or "" was read as false: the VM was changed
    calls = {
        **_FLAG_CALLS,
        "set_config dry_run": lambda hv, v: hv.set_config("web01", buffer_percent=30, dry_run=v),
        "set_configs dry_run": lambda hv, v: hv.set_configs({"web01": {"buffer_percent": 30}}, dry_run=v),
    }
    name = flag.split()[-1]
    _refused(
        hv, lambda: calls[flag](hv, value), InvalidRequestError, f"{name} takes True or False, got {value!r}"
    )


@pytest.mark.parametrize("value", [None, "", 0, "no"])
def test_connect_refuses_a_verify_that_is_not_a_bool(value: object) -> None:
    # verify=None or "" turned TLS certificate verification off
    with pytest.raises(InvalidRequestError, match=f"verify takes True or False, got {value!r}"):
        hvballoon.connect("fake://seed", verify=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"password": 1234}, "password takes a string or a SecretStr, got int"),
        ({"password": ["x"]}, "password takes a string or a SecretStr, got list"),
        ({"ca_file": 1}, "ca_file takes the path of a CA bundle, got int"),
    ],
)
def test_connect_refuses_a_password_or_ca_file_of_another_type(kw: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidRequestError, match=says):
        hvballoon.connect("fake://seed", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [v for k, v in BAD.items() if k != "none"] + [{}, "strict"])
def test_guard_rails_of_another_type_are_refused_before_anything(
    hv: hvballoon.Hypervisor, value: object
) -> None:
    for call in (
        lambda: hv.set_target("web01", "6GiB", guard_rails=value),  # type: ignore[arg-type]
        lambda: hv.set_targets({"web01": "6GiB"}, guard_rails=value),  # type: ignore[arg-type]
    ):
        _refused(hv, call, InvalidRequestError, "guard_rails takes a GuardRails, got ")


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"margin_bytes": -1}, "invalid margin_bytes -1: a size cannot be negative"),
        ({"margin_bytes": math.nan}, "invalid margin_bytes nan"),
        ({"margin_bytes": None}, "invalid margin_bytes None"),
        ({"margin_bytes": True}, "invalid margin_bytes True: a boolean is not a size"),
        ({"margin_fraction": "0.1"}, "margin_fraction must be a number from 0 up to (not including) 1"),
        ({"margin_fraction": math.nan}, "margin_fraction must be a number"),
        ({"margin_fraction": None}, "margin_fraction must be a number"),
        ({"max_stats_age_seconds": "2m"}, "max_stats_age_seconds must be a number of seconds"),
        ({"max_stats_age_seconds": math.nan}, "max_stats_age_seconds must be a number of seconds"),
        ({"max_stats_age_seconds": -1}, "max_stats_age_seconds must be a number of seconds"),
    ],
)
def test_guard_rails_refuse_a_bad_field_naming_it(kw: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        hvballoon.GuardRails(**kw)  # type: ignore[arg-type]
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"max_attempts": None}, "RetryPolicy.max_attempts must be a whole number from 1"),
        ({"max_attempts": "3"}, "RetryPolicy.max_attempts must be a whole number from 1"),
        ({"max_attempts": True}, "RetryPolicy.max_attempts must be a whole number from 1"),
        ({"max_attempts": 2.5}, "RetryPolicy.max_attempts must be a whole number from 1"),
        (
            {"max_attempts": 2**70},
            "RetryPolicy.max_attempts must be a whole number from 1",
        ),  # drew 2**70 waits
        ({"initial_delay": math.nan}, "RetryPolicy.initial_delay must be a finite number, got nan"),
        ({"max_delay": "8"}, "RetryPolicy.max_delay must be a finite number, got '8'"),
        ({"jitter": None}, "RetryPolicy.jitter must be a finite number"),
        ({"max_delay": 1e20}, "RetryPolicy.max_delay must be at most"),
    ],
)
def test_a_retry_policy_refuses_a_bad_field_naming_it(kw: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        hvballoon.RetryPolicy(**kw)  # type: ignore[arg-type]
    assert says in str(info.value)


@pytest.mark.parametrize("value", [v for k, v in BAD.items() if k not in ("none", "empty", "bytes")])
def test_host_stats_refuse_a_sweep_that_is_not_a_list_of_stats(
    hv: hvballoon.Hypervisor, value: object
) -> None:
    _refused(
        hv, lambda: hv.get_host_stats(vm_stats=value), InvalidRequestError, "vm_stats takes the MemoryStats"
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("argument", ["target", "tolerance"])
@pytest.mark.parametrize("value", [v for k, v in BAD.items() if k != "none"] + ["4"])
def test_a_wait_checks_its_sizes_even_where_the_target_cannot_be_observed(
    hv: hvballoon.Hypervisor, argument: str, value: object
) -> None:
    # Hyper-V Dynamic Memory: the wait returns at once, and took any target or tolerance
    _refused(
        hv,
        lambda: hv.wait_for_target("web01", timeout=1, **{argument: value}),
        InvalidSizeError,
        f"invalid {argument} ",
    )


@pytest.mark.parametrize("flavor", ["kvm", "esxi", "hyperv"])
@pytest.mark.parametrize("targets", [{"web01": "7GiB"}, {"web01": "7GiB", "web02": "nonsense"}])
def test_a_bulk_dry_run_asked_to_wait_is_refused_before_any_backend_call(
    flavor: str, targets: dict[str, str]
) -> None:
    # as the CLI refuses --wait --dry-run: the caller meant to wait, and a dry run moves nothing
    from tests.support.calls import counted

    with hvballoon.connect(f"fake://seed?flavor={flavor}") as hv:
        before = _state(hv)
        calls = counted(hv)
        with pytest.raises(InvalidRequestError, match=r"wait=True with dry_run=True.*nothing to wait for"):
            hv.set_targets(targets, dry_run=True, wait=True)
        assert not calls, dict(calls)  # refused before anything was read or sent
        assert _state(hv) == before
        # each alone is taken
        assert hv.set_targets({"web01": "7GiB"}, dry_run=True).applied is False


_VM_CALLS: dict[str, Callable[[hvballoon.Hypervisor, object], object]] = {
    "resolve": lambda hv, v: hv.resolve(v),  # type: ignore[arg-type]
    "get_config": lambda hv, v: hv.get_config(v),  # type: ignore[arg-type]
    "vm_capabilities": lambda hv, v: hv.vm_capabilities(v),  # type: ignore[arg-type]
    "set_target": lambda hv, v: hv.set_target(v, "6GiB"),  # type: ignore[arg-type]
    "set_config": lambda hv, v: hv.set_config(v, buffer_percent=30),  # type: ignore[arg-type]
    "wait_for_target": lambda hv, v: hv.wait_for_target(v, timeout=1),  # type: ignore[arg-type]
    "set_mark": lambda hv, v: hv.set_mark(v, "hvballoon.note", "x"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize(
    "value", [*BAD.values(), [], ["web01", "web01"], "web99"], ids=[*BAD, "list", "dups", "unknown"]
)
@pytest.mark.parametrize("call", sorted(_VM_CALLS))
def test_one_vm_named_by_what_is_no_vm_is_a_typed_error_and_nothing_changes(call: str, value: object) -> None:
    with hvballoon.connect("fake://seed?flavor=esxi") as hv:  # marks: the ESXi flavour keeps them
        said = _refused(hv, lambda: _VM_CALLS[call](hv, value), hvballoon.HVBalloonError)
    assert any(w in said for w in ("a VM is named by", "no VM", "VMs are named by")), said


@pytest.mark.parametrize(
    ("call", "value", "says"),
    [
        ("set_targets", {}, "set_targets"),
        ("set_targets", [], "set_targets"),
        ("set_targets", None, "set_targets takes a mapping"),
        ("set_targets", "web01", "set_targets takes a mapping"),
        ("set_targets", [("web01", "6GiB"), ("web01", "7GiB")], "web01"),
        ("set_configs", {}, "set_configs"),
        ("set_configs", None, "set_configs takes a mapping"),
        ("set_configs", [("web01", {"buffer_percent": 30}), ("web01", {"buffer_percent": 40})], "web01"),
    ],
)
def test_a_bulk_change_of_no_vms_or_a_vm_twice_is_refused_and_nothing_changes(
    hv: hvballoon.Hypervisor, call: str, value: object, says: str
) -> None:
    def run() -> None:
        res = getattr(hv, call)(value)
        res.raise_for_errors()

    _refused(hv, run, InvalidRequestError, says)


@pytest.mark.parametrize(
    ("args", "kw", "says"),
    [
        (("fake://seed",), {}, "a fleet takes a list of URIs (e.g. ['qemu+ssh://kvm01/system']), got str"),
        ((None,), {}, "a fleet takes a list of URIs"),
        (([],), {}, "a fleet needs at least one URI"),
        (
            (["fake://seed"],),
            {"concurrency": "4"},
            "concurrency must be a whole number of at least 1, got '4'",
        ),
        ((["fake://seed"],), {"concurrency": True}, "concurrency must be a whole number of at least 1"),
        ((["fake://seed"],), {"verify": None}, "verify takes True or False, got None"),
        ((["fake://seed"],), {"keep_sessions": "no"}, "keep_sessions takes True or False"),
        ((["fake://seed"],), {"host_stats": 1}, "host_stats takes True or False"),
    ],
)
def test_a_fleet_refuses_what_it_cannot_take_before_querying_any_host(
    args: tuple[object, ...], kw: dict[str, object], says: str
) -> None:
    from hvballoon.fleet import Fleet

    with pytest.raises(InvalidRequestError) as info:
        Fleet(*args, **kw)  # type: ignore[arg-type]
    assert says in str(info.value)


# -- hvballoon.backends() given what it does not take -------------------------------------------


@pytest.mark.parametrize(
    ("args", "kw", "says"),
    [
        ((False,), {}, "backends() takes backend names and load= by keyword (backends(load=False))"),
        ((["kvm"],), {}, "backends() takes backend names (e.g. backends('kvm')), got list"),
        (("kmv",), {}, "no backend named 'kmv' (did you mean 'kvm'?); known: "),
        (("",), {}, "no backend named ''; known: "),
        ((), {"lod": False}, "backends() takes no keyword lod; accepted: load"),
        ((), {"load": None}, "load takes True or False, got None"),
        ((), {"load": "no"}, "load takes True or False, got 'no'"),
    ],
)
def test_backends_refuses_what_is_no_backend_name_with_a_typed_error(
    args: tuple[object, ...], kw: dict[str, object], says: str
) -> None:
    # was Python's TypeError: backends() takes 1 positional argument
    with pytest.raises(InvalidRequestError) as info:
        hvballoon.backends(*args, **kw)  # type: ignore[arg-type]
    assert says in str(info.value)


def test_backends_given_names_or_schemes_lists_those_backends_once_in_that_order() -> None:
    assert [b.name for b in hvballoon.backends("kvm", load=False)] == ["kvm"]
    assert [b.name for b in hvballoon.backends("vcenter", "qemu+ssh", "esxi", load=False)] == ["esxi", "kvm"]
    assert {b.name for b in hvballoon.backends(load=False)} >= {"esxi", "fake", "kvm"}


# -- a mapping where a read takes VMs ------------------------------------------------------------


_READS: dict[str, Callable[[hvballoon.Hypervisor, object], object]] = {
    "get_stats() vms": lambda hv, v: hv.get_stats(v),  # type: ignore[arg-type]
    "get_configs() vms": lambda hv, v: hv.get_configs(v),  # type: ignore[arg-type]
    "find_vms() refs": lambda hv, v: hv.find_vms(v),  # type: ignore[arg-type]
    "resolve_many() refs": lambda hv, v: hv.resolve_many(v),  # type: ignore[arg-type]
}


@pytest.mark.parametrize(
    "value", [{"web01": "6GiB"}, {"web01": {"buffer_percent": 30}}], ids=["targets", "configs"]
)
@pytest.mark.parametrize("call", sorted(_READS))
def test_a_mapping_given_to_a_read_is_refused_naming_the_argument(
    hv: hvballoon.Hypervisor, call: str, value: object
) -> None:
    # set_targets' argument given to get_stats was read as its keys: the stats of web01
    _refused(
        hv, lambda: _READS[call](hv, value), InvalidRequestError, f"{call}: VMs are named by", "got dict"
    )


def test_one_name_alone_is_still_one_vm_for_every_read(hv: hvballoon.Hypervisor) -> None:
    for call in _READS.values():
        answer = call(hv, "web01")
        rows = answer[0] if isinstance(answer, tuple) else answer
        assert len(rows) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"web01": "6GiB"}, "sweep() vms: VMs are named by a name or an id, or a list of them"),
        (42, "sweep() vms: VMs are named by a name or an id"),
        (b"web01", "sweep() vms: VMs are named by a name or an id"),
        ([1], "sweep() vms: a VM is named by a non-empty name or id (a string), got 1"),
        ([""], "sweep() vms: a VM is named by a non-empty name or id (a string), got ''"),
    ],
)
def test_a_fleet_sweep_refuses_what_names_no_vms_before_querying_any_host(value: object, says: str) -> None:
    from hvballoon.fleet import Fleet

    with Fleet(["fake://seed"]) as fleet:
        with pytest.raises(InvalidRequestError) as info:
            fleet.sweep(value)  # type: ignore[arg-type]
        assert says in str(info.value)
        (one,) = fleet.sweep("web01")  # one name alone is one VM, not five one-letter names
        assert [s.vm.name for s in one.stats] == ["web01"]


@pytest.mark.parametrize("uris", [{"fake://seed": 1}, [42], [""], ["fake://seed", None]])
def test_a_fleet_refuses_uris_that_are_not_a_list_of_strings(uris: object) -> None:
    from hvballoon.fleet import Fleet

    with pytest.raises(InvalidRequestError, match="a fleet"):
        Fleet(uris)  # type: ignore[arg-type]


# -- an empty password ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "fake://seed",
        "qemu+tcp://kvm01/system",  # handed to libvirt's credential callback
        "esxi://root@esx01",
        "vcenter://admin@vc01/?datacenter=DC1",
        "hyperv://admin@hv01",
        "qmp:///var/run/qemu-server",
    ],
)
@pytest.mark.parametrize("password", ["", "secret-str-empty"])
def test_an_empty_password_is_refused_before_any_backend_loads(
    monkeypatch: pytest.MonkeyPatch, uri: str, password: str
) -> None:
    from pydantic import SecretStr

    from hvballoon import registry

    def no_backend(name: str) -> object:
        raise AssertionError(f"the {name} backend was loaded: a connection was attempted")

    monkeypatch.setattr(registry, "load_backend", no_backend)
    given = SecretStr("") if password == "secret-str-empty" else password
    with pytest.raises(InvalidRequestError) as info:
        hvballoon.connect(uri, password=given)
    assert "password is empty: give the password, or leave password out (None)" in str(info.value)
    assert info.value.hint is not None and info.value.hint.kind == "password"


@pytest.mark.parametrize(
    ("uri", "library"), [("esxi://root@esx01", "pyVmomi"), ("hyperv://admin@hv01", "winrm")]
)
def test_an_empty_password_variable_is_named_where_a_password_is_needed(
    monkeypatch: pytest.MonkeyPatch, uri: str, library: str
) -> None:
    pytest.importorskip(library)
    monkeypatch.setenv("HVBALLOON_PASSWORD", "")
    with pytest.raises(InvalidRequestError) as info:
        hvballoon.connect(uri)
    assert "needs a password (HVBALLOON_PASSWORD is set but empty, so no password was given)" in str(
        info.value
    )


def test_an_empty_password_variable_is_no_password_where_none_is_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HVBALLOON_PASSWORD", "")
    with hvballoon.connect("fake://seed") as hv:
        assert hv.list_vms()


def test_a_uri_given_where_a_vm_goes_is_said_to_look_like_one() -> None:
    # `capabilities fake://seed fake://dense`: the second URI is read as a VM of the first session
    with hvballoon.connect("fake://seed") as hv:
        with pytest.raises(hvballoon.VMNotFoundError) as caught:
            hv.get_stats("fake://dense")
        assert "looks like a URI" in caught.value.message and "fake://seed" in caught.value.message
        with pytest.raises(hvballoon.VMNotFoundError) as caught:
            hv.get_stats("web1")
        assert "looks like a URI" not in caught.value.message  # a name: its close matches
