"""Fuzzing: whatever a user types, only typed errors escape.

Each target runs a small budget in the default suite; the long run (10,000 examples per
target) is its own command, documented in docs/reliability.md::

    HVBALLOON_FUZZ=1 python -m pytest tests/hardening -k fuzz -p no:randomly
"""

from __future__ import annotations

import base64
import json
import os
import re
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hvballoon
from hvballoon._uri import parse_uri
from hvballoon.errors import HVBalloonError, InvalidSizeError
from hvballoon.fake.scenario import parse_scenario
from hvballoon.units import format_size, parse_size
from tests.support.ansible import run_module

FUZZ = os.environ.get("HVBALLOON_FUZZ") == "1"
settings.register_profile(
    "fuzz", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False
)
settings.register_profile(
    "hardening", max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
budget = settings(settings.get_profile("fuzz" if FUZZ else "hardening"))
# the inner loop draws a third of the budget; the full suite draws all of it as well (slow)
inner_budget = budget if FUZZ else settings(budget, max_examples=20)


def fuzz(*strategies: Any, **named: Any) -> Callable[[Callable[..., None]], Any]:
    """``@given(...)`` with the inner loop's budget; its ``full`` attribute is the same target
    with the whole budget, marked ``slow`` (bound to a ``test_…_full`` name of its own)."""

    def wrap(test: Callable[..., None]) -> Any:
        short = inner_budget(given(*strategies, **named)(test))
        short.full = pytest.mark.slow(budget(given(*strategies, **named)(test)))
        return short

    return wrap


# -- sizes ---------------------------------------------------------------------------------------

UNITS = [
    "",
    "B",
    "b",
    "k",
    "K",
    "kB",
    "KB",
    "KiB",
    "kib",
    "M",
    "MB",
    "MiB",
    "G",
    "GB",
    "GiB",
    "TiB",
    "T",
    "PB",
    "x",
]
size_text = st.one_of(
    st.text(max_size=20),
    st.builds(
        lambda sign, num, sp, unit: f"{sign}{num}{sp}{unit}",
        st.sampled_from(["", "-", "+", " "]),
        st.one_of(
            st.integers(min_value=0, max_value=2**70).map(str),
            st.floats(allow_nan=True, allow_infinity=True).map(str),
            st.decimals(allow_nan=False, allow_infinity=False).map(str),
        ),
        st.sampled_from(["", " ", "  ", "\t"]),
        st.sampled_from(UNITS),
    ),
)
size_value = st.one_of(
    size_text,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@fuzz(size_value, st.booleans())
def test_fuzz_sizes_parse_or_say_why(value: Any, allow_zero: bool) -> None:
    try:
        n = parse_size(value, allow_zero=allow_zero)
    except InvalidSizeError as exc:
        assert exc.code == "invalid_size" and str(exc)
        return
    assert isinstance(n, int) and not isinstance(n, bool)
    assert n > 0 or (allow_zero and n == 0)


@fuzz(st.integers(min_value=1, max_value=2**60))
def test_fuzz_sizes_round_trip_exactly(n: int) -> None:
    assert parse_size(format_size(n, exact=True)) == n


# -- URIs ----------------------------------------------------------------------------------------

SCHEMES = ["fake", "esxi", "vcenter", "hyperv", "qemu", "qemu+ssh", "test", "FAKE", "bogus", "", "http"]
uri_text = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, user, host, port, path, query: f"{scheme}://{user}{host}{port}{path}{query}",
        st.sampled_from(SCHEMES),
        st.sampled_from(["", "root@", "a:b@", "@", "us%40er@", "x:s3cret@"]),
        st.one_of(
            st.sampled_from(["", "host", "127.0.0.1", "[::1]", "[::1", "h\u00f6st"]), st.text(max_size=10)
        ),
        st.sampled_from(["", ":0", ":443", ":99999", ":x", ":"]),
        st.sampled_from(["", "/", "/system", "//", "/a/b.yaml"]),
        st.one_of(
            st.sampled_from(["", "?", "?flavor=kvm", "?a=1&a=2", "?=x", "?seed=x&state="]),
            st.text(max_size=10),
        ),
    ),
)


@fuzz(st.one_of(uri_text, st.integers(), st.none(), st.binary(max_size=10)))
def test_fuzz_uris_parse_or_say_why_and_never_show_a_password(uri: Any) -> None:
    try:
        parsed = parse_uri(uri)
    except HVBalloonError as exc:
        assert exc.code == "invalid_uri"
        if isinstance(uri, str) and "s3cret@" in uri:
            assert "s3cret" not in str(exc) and "s3cret" not in repr(exc)
        return
    assert "s3cret" not in parsed.redacted and "s3cret" not in repr(parsed)


@fuzz(uri_text.filter(lambda u: u.lower().startswith("fake")))
def test_fuzz_fake_uris_connect_or_say_why(uri: str) -> None:
    try:
        with hvballoon.connect(uri) as hv:
            hv.list_vms()
    except HVBalloonError:
        pass


# -- scenario files ------------------------------------------------------------------------------

sizes = st.one_of(
    st.sampled_from(["1GiB", "16GiB", "512MiB", "0", "-1GiB", "1 XB", "120GiB"]), st.integers(-5, 2**40)
)
leaf = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(), st.text(max_size=8), sizes)
vm = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=8), st.sampled_from(["web01", "db01"])),
        "memory": sizes,
        "used": sizes,
        "cache": sizes,
        "swap": sizes,
        "dynamic": leaf,
        "state": st.sampled_from(["running", "stopped", "bogus", ""]),
        "workload": st.one_of(
            leaf,
            st.fixed_dictionaries(
                {"kind": st.sampled_from(["constant", "spike", "diurnal", "jvm", "nope"])},
                optional={"params": st.dictionaries(st.text(max_size=6), st.one_of(leaf, sizes), max_size=3)},
            ),
        ),
    },
)
scenario = st.one_of(
    st.recursive(
        leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=8),
            "flavor": st.sampled_from(["kvm", "esxi", "hyperv", "xen", None]),
            "seed": leaf,
            "host": st.one_of(
                leaf, st.fixed_dictionaries({}, optional={"physical": sizes, "name": leaf, "reserve": sizes})
            ),
            "vms": st.one_of(leaf, st.lists(vm, max_size=4)),
            "faults": st.one_of(
                leaf, st.lists(st.dictionaries(st.sampled_from(["op", "kind", "count"]), leaf), max_size=2)
            ),
        },
    ),
)


@fuzz(data=scenario, form=st.sampled_from(["yaml", "json", "data"]))
def test_fuzz_scenarios_load_or_name_the_problem(data: Any, form: str, tmp_path_factory: Any) -> None:
    from hvballoon.fake.scenario import load_scenario
    from hvballoon.fake.world import World

    try:
        if form == "data":
            sc = parse_scenario(data)
        else:
            path = tmp_path_factory.mktemp("sc") / f"s.{form}"
            if form == "json":
                try:
                    path.write_text(json.dumps(data))
                except ValueError:
                    return
            else:
                import yaml

                path.write_text(yaml.safe_dump(data))
            sc = load_scenario(str(path))
    except HVBalloonError as exc:
        assert exc.code == "invalid_scenario", exc
        return
    World(sc).advance(60.0)


# -- CLI arguments -------------------------------------------------------------------------------

CLI_URIS = [
    "fake://",
    "fake://seed",
    "fake://seed?flavor=hyperv",
    "fake://seed?flavor=esxi",
    "fake://nope",
    "fake:///no/such.yaml",
    "esxi://u@127.0.0.1:1",
    "hyperv://u@127.0.0.1:1/?transport=ntlm",
    "bogus://x",
    "",
]
CLI_WORDS = [
    "vms", "stats", "set", "config", "capabilities", "scenarios", "schema", "backends", "simulate",
    "autoballoon", "fake", "advance", "--json", "--dry-run", "--force", "--wait", "--minimum",
    "--maximum", "--priority", "--buffer", "--once", "--policy", "--duration", "--timeout", "web01",
    "db01", "6GiB", "-1", "0", "1e99", "4 XB", "--help", "-h", "--version", "seed", "java", "1m", "--",
]  # fmt: skip
cli_args = st.lists(
    st.one_of(st.sampled_from(CLI_WORDS), st.sampled_from(CLI_URIS), st.text(max_size=8)), max_size=6
)
# commands that never end on their own, and a simulation of unbounded length
_ENDLESS = {"watch", "exporter"}


@fuzz(cli_args)
def test_fuzz_cli_exits_with_a_code_never_a_traceback(args: list[str]) -> None:
    from click.testing import CliRunner

    from hvballoon.cli import main

    if any(a in _ENDLESS for a in args) or ("autoballoon" in args and "--once" not in args):
        return
    if "simulate" in args and "--duration" not in args:
        args = [*args, "--duration", "10m"]
    if "simulate" in args:
        # a fuzzed duration could be days of simulated time: bound it
        i = args.index("--duration")
        if i + 1 < len(args):
            args[i + 1] = "10m"
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = runner.invoke(main, args, env={"HVBALLOON_PASSWORD": "pw"}, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args!r} raised {result.exception!r}\n{result.output}") from result.exception
    assert result.exit_code in {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}, (args, result.output)
    assert "Traceback" not in result.output


# -- Ansible module arguments --------------------------------------------------------------------

ANSIBLE_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(allow_infinity=False), st.text(max_size=8),  # not inf: ansible-core int-check bug
    st.sampled_from(["6GiB", "web01", "db01", "fake://seed", "fake://seed?flavor=hyperv", "bogus://", "yes", "-1"]),
    st.lists(st.sampled_from(["web01", "db01", "nope", ""]), max_size=3),
)  # fmt: skip
OPTIONS = {
    "target": ["uri", "vm", "vms", "size", "force", "wait", "wait_timeout", "timeout", "validate_certs", "password"],
    "config": ["uri", "vm", "minimum", "maximum", "priority", "buffer_percent", "reservation", "limit", "shares",
               "dynamic", "startup", "stats_period", "password", "timeout"],
    "memory_info": ["uri", "vm", "vms", "password", "timeout"],
}  # fmt: skip


@fuzz(
    st.sampled_from(sorted(OPTIONS)).flatmap(
        lambda name: st.tuples(
            st.just(name),
            st.dictionaries(st.sampled_from(OPTIONS[name]), ANSIBLE_VALUE, max_size=6),
            st.booleans(),
        )
    )
)
def test_fuzz_ansible_modules_fail_cleanly(case: tuple[str, dict[str, Any], bool]) -> None:
    pytest.importorskip("ansible")
    name, args, check_mode = case
    if isinstance(args.get("uri"), str) and not args["uri"].startswith(("fake", "bogus")):
        args["uri"] = "fake://seed"  # no real hypervisor: fuzz the arguments, not the network
    result = run_module(name, args, check_mode=check_mode)
    if result.get("failed"):
        # either Ansible's own argument validation, or a typed hvballoon error with its code
        assert "code" in result or "exception" not in result, result
        assert "Traceback" not in result.get("msg", ""), result
    if "password" in args and isinstance(args["password"], str) and len(args["password"]) > 3:
        assert args["password"] not in json.dumps({k: v for k, v in result.items() if k != "invocation"})


# -- the Hyper-V parameter carrier -----------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)


@fuzz(
    st.dictionaries(st.text(max_size=12), json_values, max_size=4),
    st.sampled_from(["PROBE", "READ", "SET_MEMORY"]),
)
def test_fuzz_hyperv_parameters_travel_as_data_only(params: dict[str, Any], which: str) -> None:
    scripts = pytest.importorskip("hvballoon.backends.hyperv._scripts")
    template = getattr(scripts, which)
    script = scripts.render(template, params)
    data = scripts.data_of(template, script)
    assert re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", data)
    assert scripts.decode_data(data) == params
    # the script is the template with only the base64 line changed: no user text in the source
    assert script.replace(data, scripts.DATA_MARKER) == template.text
    _command, arguments = scripts.encode_command(script)
    assert base64.b64decode(arguments[-1]).decode("utf-16-le") == script


# the whole budget of each target, in the full suite (the long run draws it in the targets above)
if not FUZZ:
    test_fuzz_sizes_parse_or_say_why_full = test_fuzz_sizes_parse_or_say_why.full
    test_fuzz_sizes_round_trip_exactly_full = test_fuzz_sizes_round_trip_exactly.full
    test_fuzz_uris_parse_or_say_why_and_never_show_a_password_full = (
        test_fuzz_uris_parse_or_say_why_and_never_show_a_password.full
    )
    test_fuzz_fake_uris_connect_or_say_why_full = test_fuzz_fake_uris_connect_or_say_why.full
    test_fuzz_scenarios_load_or_name_the_problem_full = test_fuzz_scenarios_load_or_name_the_problem.full
    test_fuzz_cli_exits_with_a_code_never_a_traceback_full = (
        test_fuzz_cli_exits_with_a_code_never_a_traceback.full
    )
    test_fuzz_ansible_modules_fail_cleanly_full = test_fuzz_ansible_modules_fail_cleanly.full
    test_fuzz_hyperv_parameters_travel_as_data_only_full = (
        test_fuzz_hyperv_parameters_travel_as_data_only.full
    )
