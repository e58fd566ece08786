"""A policy's own options from text (:mod:`hvballoon.policy.options`): the parser, the
controller rebuilding its policy, ``autoballoon`` / ``simulate --policy-option``, the settings
file's ``policy_options:`` and the docs' table generated from ``HvballoonPolicy.__init__``."""

from __future__ import annotations

import json
import runpy
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon.errors import InvalidRequestError, InvalidSizeError
from hvballoon.policy import Controller, ControllerSettings, get_policy
from hvballoon.policy.adaptive import HvballoonPolicy
from hvballoon.policy.base import policy_options
from hvballoon.policy.options import option_specs, parse_option_pairs
from hvballoon.units import GiB, MiB
from tests.support.cli import Running, invoke, serving

ROOT = Path(__file__).resolve().parents[2]


# -- the parser -----------------------------------------------------------------------------------


def test_values_take_their_options_types() -> None:
    got = policy_options(
        "hvballoon",
        {
            "surge_fraction": "0.8",
            "sigma": 2,
            "calm_seconds": "20m",
            "settle_seconds": 90,
            "min_headroom_bytes": "384MiB",
            "min_deadband_bytes": "1073741824",
            "own_guard_rails": "off",
        },
    )
    assert got == {
        "surge_fraction": 0.8,
        "sigma": 2.0,
        "calm_seconds": 1200.0,
        "settle_seconds": 90.0,
        "min_headroom_bytes": 384 * MiB,
        "min_deadband_bytes": GiB,
        "own_guard_rails": False,
    }
    assert isinstance(got["sigma"], float) and isinstance(got["min_deadband_bytes"], int)
    assert policy_options("mom", {"history": "4"}) == {"history": 4}
    assert policy_options("proxmox", {"default_minimum_fraction": "none", "max_change_bytes": "1GiB"}) == {
        "default_minimum_fraction": None,
        "max_change_bytes": GiB,
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [(t, True) for t in ("true", "yes", "on", "1", "TRUE", True, 1)]
    + [(f, False) for f in ("false", "no", "off", "0", "No", False, 0)],
)
def test_booleans(text: object, value: bool) -> None:
    assert policy_options("hvballoon", {"own_guard_rails": text}) == {"own_guard_rails": value}


def test_the_kinds_come_from_the_signature() -> None:
    specs = option_specs(HvballoonPolicy)
    assert (specs["calm_seconds"].kind, specs["min_headroom_bytes"].kind) == ("duration", "size")
    assert (specs["surge_fraction"].kind, specs["own_guard_rails"].kind) == ("float", "bool")
    assert specs["calm_seconds"].describe() == "calm_seconds (duration, default 10m)"
    from hvballoon.policy.mom import MomPolicy
    from hvballoon.policy.proxmox import ProxmoxPolicy

    assert option_specs(MomPolicy)["history"].kind == "int"
    assert option_specs(MomPolicy)["constants"].kind == "other"
    assert option_specs(ProxmoxPolicy)["default_minimum_fraction"].optional


def test_an_unknown_option_is_named_with_the_known_ones() -> None:
    with pytest.raises(InvalidRequestError) as e:
        policy_options("hvballoon", {"calm": "60"})
    assert "unknown option 'calm' for the hvballoon policy" in e.value.message
    assert "calm_seconds" in e.value.message and "surge_fraction" in e.value.message
    assert e.value.details["option"] == "calm" and "calm_seconds" in e.value.details["known"]
    assert e.value.exit_code == 2


def test_the_static_policy_takes_no_option() -> None:
    with pytest.raises(InvalidRequestError, match=r"the static policy takes no options \(got 'x'\)"):
        get_policy("static", x=1)
    assert get_policy("static").name == "static"


@pytest.mark.parametrize(
    ("options", "error", "said"),
    [
        ({"surge_fraction": "lots"}, InvalidRequestError, "not a number"),
        ({"surge_fraction": "nan"}, InvalidRequestError, "finite"),
        ({"sigma": "inf"}, InvalidRequestError, "finite"),
        ({"sigma": float("nan")}, InvalidRequestError, "finite"),
        ({"surge_fraction": "-0.1"}, InvalidRequestError, "negative"),
        ({"surge_fraction": ""}, InvalidRequestError, "not a number"),
        ({"surge_fraction": None}, InvalidRequestError, "not null"),
        ({"surge_fraction": True}, InvalidRequestError, "not a number"),
        ({"min_headroom_bytes": "-1GiB"}, InvalidSizeError, "negative"),
        ({"min_headroom_bytes": "4G"}, InvalidSizeError, "ambiguous"),
        ({"min_headroom_bytes": "lots"}, InvalidSizeError, "policy option min_headroom_bytes"),
        ({"calm_seconds": "-5m"}, InvalidRequestError, "negative"),
        ({"calm_seconds": "nan"}, InvalidRequestError, "finite"),
        ({"calm_seconds": "soon"}, InvalidRequestError, "policy option calm_seconds"),
        ({"own_guard_rails": "maybe"}, InvalidRequestError, "not a boolean"),
        ({"own_guard_rails": 2}, InvalidRequestError, "not a boolean"),
    ],
)
def test_malformed_values_are_typed_errors_naming_the_option(
    options: dict[str, Any], error: type[Exception], said: str
) -> None:
    with pytest.raises(error) as e:
        policy_options("hvballoon", options)
    assert said in str(e.value)
    assert next(iter(options)) in str(e.value)


@pytest.mark.parametrize(
    ("policy", "options", "said"),
    [
        ("mom", {"history": "2.5"}, "not a whole number"),
        ("mom", {"history": 2.0}, "not a whole number"),
        ("mom", {"history": "-3"}, "negative"),
        ("mom", {"constants": "fast"}, "set from Python only"),
    ],
)
def test_malformed_values_of_the_other_policies(policy: str, options: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidRequestError, match=said):
        policy_options(policy, options)


@pytest.mark.parametrize(
    ("policy", "options", "named"),
    [
        ("hvballoon", {"surge_fraction": "1.5", "calm_seconds": "1m"}, "surge_fraction"),
        ("hvballoon", {"band_fraction": 1}, "band_fraction"),
        ("hvballoon", {"max_reserve_fraction": "0.99", "wave_share": "2"}, "wave_share"),
        ("mom", {"history": 0}, "history"),
        ("proxmox", {"target_percent": 150}, "target_percent"),
    ],
)
def test_a_value_the_policy_refuses_is_a_typed_error_naming_the_option(
    policy: str, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidRequestError) as e:
        get_policy(policy, **options)
    assert f"{named}=" in e.value.message and named in e.value.details["options"]
    assert f"for the {policy} policy" in e.value.message


def test_key_value_pairs() -> None:
    assert parse_option_pairs(["a=1", " b = 2GiB ", "c="]) == {"a": "1", "b": "2GiB", "c": ""}
    assert parse_option_pairs(["calm_seconds=1h=x"]) == {"calm_seconds": "1h=x"}
    for bad, said in (
        (["calm_seconds"], "takes KEY=VALUE"),
        (["=60"], "takes KEY=VALUE"),
        ([" =60"], "takes KEY=VALUE"),
        (["calm_seconds=60", "calm_seconds=90"], "'calm_seconds' is given twice"),
    ):
        with pytest.raises(InvalidRequestError, match=said):
            parse_option_pairs(bad)


def test_a_policy_object_takes_no_options_by_name() -> None:
    with pytest.raises(InvalidRequestError, match="policy object given has its own"):
        get_policy(HvballoonPolicy(), calm_seconds=60)


# -- the controller -------------------------------------------------------------------------------


def test_the_controller_builds_its_policy_from_the_settings_and_rebuilds_it_keeping_its_state() -> None:
    settings = ControllerSettings(policy_options={"calm_seconds": "5m", "surge_fraction": 0.5})
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, "hvballoon", settings, dry_run=True)
        assert ctl.policy_options == {"calm_seconds": 300.0, "surge_fraction": 0.5}
        assert isinstance(ctl.policy, HvballoonPolicy) and ctl.policy.calm_seconds == 300.0
        ctl.step()
        learned, before = ctl.state, ctl.policy
        assert learned.vms  # the policy remembers each VM it saw
        ctl.reconfigure(settings.model_copy(update={"policy_options": {"surge_fraction": "0.1"}}))
        assert ctl.policy is not before and ctl.policy.surge_fraction == 0.1
        assert ctl.policy.calm_seconds == 600.0  # back to the default: the settings name it no more
        assert ctl.state is learned and ctl.policy_options == {"surge_fraction": 0.1}
        lowered = {d.vm: d.after_bytes for d in ctl.step() if d.action == "lower"}
        assert lowered  # with less headroom for a surge, the VMs are lowered further
        # options the policy refuses change nothing, the settings included
        bad = settings.model_copy(update={"policy_options": {"surge_fraction": 2}, "interval_seconds": 30.0})
        with pytest.raises(InvalidRequestError, match="surge_fraction"):
            ctl.reconfigure(bad)
        assert ctl.policy.surge_fraction == 0.1 and ctl.settings.interval_seconds == 10.0
        # unchanged options keep the policy object
        same = ctl.policy
        ctl.reconfigure(ctl.settings.model_copy(update={"interval_seconds": 20.0}))
        assert ctl.policy is same and ctl.settings.interval_seconds == 20.0


def test_a_policy_object_given_refuses_options_from_the_settings() -> None:
    with hvballoon.connect("fake://seed") as hv:
        with pytest.raises(InvalidRequestError, match="policy_options configure a policy given by name"):
            Controller(hv, HvballoonPolicy(), ControllerSettings(policy_options={"calm_seconds": 60}))
        with pytest.raises(InvalidRequestError, match="unknown option 'calm'"):
            Controller(hv, "hvballoon", ControllerSettings(policy_options={"calm": 60}))


def test_the_settings_hold_the_options_as_scalars() -> None:
    from pydantic import ValidationError

    s = ControllerSettings.model_validate({"policy_options": {"calm_seconds": "10m", "sigma": 2, "x": True}})
    assert s.policy_options == {"calm_seconds": "10m", "sigma": 2, "x": True}
    for bad in ({"": 1}, {"calm_seconds": [1, 2]}, {"calm_seconds": {"a": 1}}):
        with pytest.raises(ValidationError):
            ControllerSettings.model_validate({"policy_options": bad})


# -- autoballoon ----------------------------------------------------------------------------------


def _summary(stderr: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(stderr.strip().splitlines()[-1])
    return summary


def _lowers(stdout: str) -> dict[str, int]:
    rows = [json.loads(line) for line in stdout.strip().splitlines()]
    return {r["vm"]: r["after_bytes"] for r in rows if r["action"] == "lower"}


def test_autoballoon_once_dry_run_with_an_option_takes_it() -> None:
    base = ("autoballoon", "fake://seed", "--once", "--dry-run", "--json")
    r = invoke(*base, "--policy-option", "calm_seconds=60")
    assert r.returncode == 0, r.stderr
    assert _summary(r.stderr)["policy_options"] == {"calm_seconds": 60.0}
    default = invoke(*base)
    tight = invoke(
        *base, "--policy-option", "surge_fraction=0.1", "--policy-option", "min_headroom_bytes=512MiB"
    )
    assert _summary(default.stderr)["policy_options"] == {}
    assert _summary(tight.stderr)["policy_options"] == {
        "surge_fraction": 0.1,
        "min_headroom_bytes": 512 * MiB,
    }
    lowered, tighter = _lowers(default.stdout), _lowers(tight.stdout)
    assert lowered and set(lowered) <= set(tighter)
    assert all(tighter[vm] < lowered[vm] for vm in lowered)


def test_autoballoon_reads_the_options_from_the_settings_file_and_the_command_line_wins(
    tmp_path: Path,
) -> None:
    settings = tmp_path / "s.yaml"
    settings.write_text("policy_options:\n  surge_fraction: 0.1\n  calm_seconds: 5m\n")
    base = ("autoballoon", "fake://seed", "--once", "--dry-run", "--json", "--settings", str(settings))
    r = invoke(*base)
    assert r.returncode == 0, r.stderr
    assert _summary(r.stderr)["policy_options"] == {"surge_fraction": 0.1, "calm_seconds": 300.0}
    r = invoke(*base, "--policy-option", "surge_fraction=0.3")
    assert _summary(r.stderr)["policy_options"] == {"surge_fraction": 0.3, "calm_seconds": 300.0}
    check = invoke("autoballoon", "fake://seed", "--settings", str(settings), "--check", "--json")
    assert json.loads(check.stdout)["policy_options"] == {"surge_fraction": 0.1, "calm_seconds": 300.0}
    text = invoke("autoballoon", "fake://seed", "--settings", str(settings), "--check")
    assert "ready (hvballoon policy with surge_fraction=0.1, calm_seconds=5m, journal" in text.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--policy-option", "calm_seconds"], "takes KEY=VALUE"),
        (["--policy-option", "=5"], "takes KEY=VALUE"),
        (["--policy-option", "calm_seconds=1m", "--policy-option", "calm_seconds=2m"], "given twice"),
        (["--policy-option", "calm=1m"], "unknown option 'calm'"),
        (["--policy-option", "surge_fraction=1.5"], "surge_fraction"),
        (["--policy-option", "min_headroom_bytes=-1GiB"], "negative"),
        (["--policy", "static", "--policy-option", "calm_seconds=1m"], "takes no options"),
    ],
)
def test_autoballoon_refuses_bad_options_before_anything_starts(args: list[str], said: str) -> None:
    r = invoke("autoballoon", "fake://seed", "--once", "--json", *args)
    error = json.loads(r.stdout)  # the error alone: not one decision
    assert r.returncode == 2 and error["code"] in ("invalid_request", "invalid_size")
    assert said in error["message"]


def test_bad_options_in_the_settings_file(tmp_path: Path) -> None:
    settings = tmp_path / "s.yaml"
    settings.write_text("policy_options:\n  surge_fraction: lots\n")
    r = invoke("autoballoon", "fake://seed", "--once", "--settings", str(settings))
    assert r.returncode == 2 and "surge_fraction" in r.stderr and r.stdout == ""
    r = invoke("autoballoon", "--check-settings", str(settings))
    assert r.returncode == 2 and "not a number" in r.stderr
    settings.write_text("policy_options:\n  calm_seconds: 20m\n")
    assert invoke("autoballoon", "--check-settings", str(settings)).returncode == 0
    r = invoke("autoballoon", "--check-settings", str(settings), "--policy", "static")
    assert r.returncode == 2 and "the static policy takes no options" in r.stderr
    settings.write_text("policy_options: [surge_fraction]\n")
    r = invoke("autoballoon", "--check-settings", str(settings))
    assert r.returncode == 2 and "policy_options" in r.stderr


# -- simulate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", ["3m", pytest.param("10m", marks=pytest.mark.slow)])
def test_simulate_with_an_option(duration: str) -> None:
    base = ("simulate", "seed", "--duration", duration, "--policy", "hvballoon", "--json")
    default = json.loads(invoke(*base).stdout)
    r = invoke(*base, "--policy-option", "surge_fraction=0.1", "--policy-option", "free_fraction=0.5")
    assert r.returncode == 0, r.stderr
    tight = json.loads(r.stdout)
    assert tight["policy"] == "hvballoon" and tight["policy_options"] == {
        "surge_fraction": 0.1,
        "free_fraction": 0.5,
    }
    assert default["policy_options"] == {}
    for vm, v in default["vms"].items():
        assert tight["vms"][vm]["min_current_bytes"] <= v["min_current_bytes"]
    assert sum(v["min_current_bytes"] for v in tight["vms"].values()) < sum(
        v["min_current_bytes"] for v in default["vms"].values()
    )
    text = invoke(*base[:-1], "--policy-option", "calm_seconds=90")
    assert "the hvballoon policy with calm_seconds=1m30s;" in text.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--policy-option", "surge_fraction=0.1"], "give --policy too"),
        (["--policy", "hvballoon", "--policy-option", "surge_fraction=nan"], "finite"),
        (["--policy", "hvballoon", "--policy-option", "surge"], "takes KEY=VALUE"),
        (["--policy", "static", "--policy-option", "a=1"], "takes no options"),
    ],
)
def test_simulate_refuses_bad_options(args: list[str], said: str) -> None:
    r = invoke("simulate", "seed", "--duration", "10m", *args)
    assert r.returncode == 2 and said in r.stderr


# -- the docs ------------------------------------------------------------------------------------

GEN = runpy.run_path(str(ROOT / "scripts" / "policy_options.py"))


def test_the_docs_table_is_generated_from_the_signature() -> None:
    page = (ROOT / "docs" / "policies.md").read_text("utf-8")
    assert page == GEN["render_docs"](page), "regenerate with: python scripts/policy_options.py --write"
    table = page.split("<!-- policy-options -->")[1].split("<!-- /policy-options -->")[0]
    for name, spec in option_specs(HvballoonPolicy).items():
        assert f"| `{name}` | {spec.kind} | `{spec.shown_default()}` |" in table


def test_an_undocumented_option_fails_the_generator() -> None:
    class Extra(HvballoonPolicy):
        def __init__(self, *, new_knob_seconds: float = 1.0, **kw: Any) -> None:
            """A new knob.

            Args:
                new_knob_seconds: A knob.
            """
            super().__init__(**kw)

    class Undocumented(HvballoonPolicy):
        def __init__(self, *, new_knob_seconds: float = 1.0) -> None:
            """A new knob.

            Args:
                other: Not an option.
            """
            super().__init__()

    assert "new_knob_seconds" in GEN["render_table"](Extra)
    with pytest.raises(SystemExit, match=r"undocumented \['new_knob_seconds'\].*not options \['other'\]"):
        GEN["render_table"](Undocumented)


# -- SIGHUP --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sighup_applies_changed_options_keeping_the_command_lines_on_top(
    tmp_path: Path, running: Callable[..., Running]
) -> None:
    settings, ctl = serving(tmp_path, running, "--policy-option", "calm_seconds=5m")

    def events(name: str) -> list[dict[str, Any]]:
        return [e for e in ctl.json_log() if e.get("event") == name]

    ctl.wait_for(lambda r: len(r.stdout) >= 20)  # two rounds
    assert events("started")[0]["policy_options"] == {"calm_seconds": 300.0}
    first = {d["vm"]: d["after_bytes"] for d in map(json.loads, ctl.stdout) if d["action"] == "lower"}
    assert first
    settings.write_text(
        "interval_seconds: 10\nhost_memory_bytes: 120GiB\n"
        "policy_options: {surge_fraction: 0.1, calm_seconds: 1h}\n"
    )
    seen = len(ctl.stdout)  # the decisions before the reload (the round after it may come at once)
    ctl.proc.send_signal(signal.SIGHUP)
    ctl.wait_for(lambda r: bool(events("reloaded")))
    assert events("reloaded")[0]["policy_options"] == {"surge_fraction": 0.1, "calm_seconds": 300.0}

    def lowered_further(r: Running) -> bool:
        # with a sixth of the headroom for a surge a VM is lowered well below what it was left
        # before (once rounds come on time: a loaded machine makes the fake's 20x clock see
        # late rounds)
        later = [json.loads(line) for line in r.stdout[seen:]]
        return any(d["action"] == "lower" and d["after_bytes"] < 0.75 * first.get(d["vm"], 0) for d in later)

    ctl.wait_for(lowered_further)
    # an option the policy refuses keeps the options in force, and the controller running
    settings.write_text(
        "interval_seconds: 10\nhost_memory_bytes: 120GiB\npolicy_options: {surge_fraction: 3}\n"
    )
    ctl.proc.send_signal(signal.SIGHUP)
    ctl.wait_for(lambda r: bool(events("reload_failed")))
    failed = events("reload_failed")[0]
    assert "surge_fraction" in failed["message"] and failed["code"] == "invalid_request"
    seen = len(ctl.stdout)
    ctl.wait_for(lambda r: len(r.stdout) >= seen + 20)
    assert ctl.signal(signal.SIGTERM) == 0
    assert events("summary")[0]["policy_options"] == {"surge_fraction": 0.1, "calm_seconds": 300.0}
