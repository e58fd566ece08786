"""Every config option is declared once, on :class:`~hvballoon.models.ConfigUpdate`'s fields, and
everything else comes from there: ``set_config``'s keywords, the CLI's ``config`` options, the
Ansible ``config`` module's documentation and argument spec (generated text, checked here), the
CLI docs' table and the conformance suite's samples."""

from __future__ import annotations

import ast
import inspect
import json
import re
import runpy
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

import hvballoon
from hvballoon.cli import main
from hvballoon.cli.config import config_cmd
from hvballoon.errors import InvalidRequestError, InvalidSizeError
from hvballoon.models import CONFIG_FIELDS, MAX_INT32, ConfigOption, ConfigUpdate, MemoryConfig
from hvballoon.testing.conformance import _SAMPLE_CONFIG

ROOT = Path(__file__).resolve().parents[1]
GEN = runpy.run_path(str(ROOT / "scripts" / "config_fields.py"))
REGENERATE = "regenerate with: python scripts/config_fields.py --write"
OPTIONS = ConfigUpdate.options()
BY_KEYWORD = {o.keyword: o for o in OPTIONS}


def _module() -> tuple[dict[str, Any], dict[str, Any]]:
    """The Ansible module's DOCUMENTATION (parsed) and FIELDS argument spec, read without
    importing Ansible."""
    source = Path(GEN["MODULE"]).read_text("utf-8")
    tree = ast.parse(source)
    doc = next(
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "DOCUMENTATION"
    )
    block = re.search(r"# BEGIN generated fields by [^\n]*\n(.*?)# END generated fields", source, re.DOTALL)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(block[1], namespace)  # the generated `FIELDS = dict(...)`
    return yaml.safe_load(doc), namespace["FIELDS"]


def test_every_field_declares_how_it_is_set() -> None:
    assert [o.field for o in OPTIONS] == [f for f in ConfigUpdate.model_fields if f != "unlimited_limit"]
    assert sorted(o.field for o in OPTIONS) == list(CONFIG_FIELDS)
    assert len({o.keyword for o in OPTIONS}) == len(OPTIONS) == 15
    for o in OPTIONS:
        # each option sets the MemoryConfig field of the same name and type
        assert MemoryConfig.model_fields[o.field].annotation == ConfigUpdate.model_fields[o.field].annotation
        assert o.help and o.help.endswith(".") and o.cli.startswith(f"--{o.keyword.replace('_', '-')}")
    assert BY_KEYWORD["minimum"].lowest == 1 and BY_KEYWORD["reservation"].lowest == 0
    assert BY_KEYWORD["shares_level"].choices == ("low", "normal", "high", "custom")
    assert [o.keyword for o in OPTIONS if o.unlimited] == ["limit"]
    assert BY_KEYWORD["dynamic"].cli == "--dynamic/--static"


def test_help_text_is_worded_for_each_interface() -> None:
    shares = BY_KEYWORD["shares"]
    assert "V(custom)" in shares.help_text("ansible") and "O(shares_level)" in shares.help_text("ansible")
    assert "'custom'" in shares.help_text("cli") and "--shares-level" in shares.help_text("cli")
    assert "`custom`" in shares.help_text("docs") and "`--shares-level`" in shares.help_text("docs")
    assert "shares_level=" in shares.help_text("api")
    assert not re.search(r"[`{}]", shares.help_text("cli"))
    assert BY_KEYWORD["limit"].accepts() == "a size or 'unlimited'"
    assert BY_KEYWORD["shares_level"].accepts("docs") == "one of `low`, `normal`, `high`, `custom`"
    assert BY_KEYWORD["dynamic"].accepts("api") == "true or false"
    assert BY_KEYWORD["dynamic"].accepts("cli") == "a flag (on / off)"


# -- one source: the API ----------------------------------------------------------------------

_ANNOTATION = {"size": "int | str | None", "int": "int | None", "bool": "bool | None", "choice": "str | None"}


def test_set_config_takes_exactly_the_declared_keywords() -> None:
    params = inspect.signature(hvballoon.Hypervisor.set_config).parameters
    keywords = [
        p for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "dry_run"
    ]
    assert [p.name for p in keywords] == [o.keyword for o in OPTIONS]
    for p in keywords:
        assert p.default is None and p.annotation == _ANNOTATION[BY_KEYWORD[p.name].kind], p.name


@pytest.mark.parametrize("option", OPTIONS, ids=[o.keyword for o in OPTIONS])
def test_the_sample_of_each_option_is_accepted_and_sets_its_field(option: ConfigOption) -> None:
    assert _SAMPLE_CONFIG[option.field] == {option.keyword: option.sample}
    assert ConfigUpdate.from_keywords({option.keyword: option.sample}).fields() == {
        option.field: option.sample
    }


def test_values_are_read_as_people_type_them() -> None:
    update = ConfigUpdate.from_keywords(
        {"minimum": "512MiB", "maximum": "8GB", "reservation": 0, "shares_level": " High ", "dynamic": False}
    )
    assert update.fields() == {
        "minimum_bytes": 512 * 2**20,
        "maximum_bytes": 8 * 10**9,
        "dynamic": False,
        "reservation_bytes": 0,
        "shares_level": "high",
    }
    for spelling in ("unlimited", "UNLIMITED", "-1"):
        assert ConfigUpdate.from_keywords({"limit": spelling}).fields() == {"limit_bytes": None}
    assert ConfigUpdate.from_keywords({"priority": None, "limit": None}).fields() == {}


@pytest.mark.parametrize(
    ("values", "error", "says"),
    [
        ({"minimum": "lots"}, InvalidSizeError, "minimum"),
        ({"minimum": "4G"}, InvalidSizeError, "ambiguous"),
        ({"minimum": -1}, InvalidSizeError, "negative"),
        ({"minimum": 0}, InvalidSizeError, "minimum"),
        ({"maximum": True}, InvalidSizeError, "boolean"),
        ({"maximum": "unlimited"}, InvalidSizeError, "maximum"),
        ({"balloon_cap": [1]}, InvalidSizeError, "balloon_cap"),
        ({"priority": "60"}, InvalidRequestError, "priority must be an integer, got '60'"),
        ({"priority": 6.0}, InvalidRequestError, "priority must be an integer"),
        ({"stats_period": True}, InvalidRequestError, "stats_period must be an integer"),
        (
            {"buffer_percent": -5},
            InvalidRequestError,
            "buffer_percent: Input should be greater than or equal to 0",
        ),
        (
            {"stats_period": -1},
            InvalidRequestError,
            "stats_period: Input should be greater than or equal to 0",
        ),
        ({"shares": 0}, InvalidRequestError, "shares: Input should be greater than 0"),
        # what the hypervisors take in 32 bits: libvirt's stats period, vSphere's SharesInfo.shares
        (
            {"stats_period": 2**32},
            InvalidRequestError,
            "stats_period: Input should be less than or equal to 2147483647",
        ),
        (
            {"shares": 99999999999999999999},
            InvalidRequestError,
            "shares: Input should be less than or equal to 2147483647",
        ),
        ({"dynamic": "yes"}, InvalidRequestError, "dynamic must be true or false, got 'yes'"),
        ({"deflate_on_oom": 1}, InvalidRequestError, "deflate_on_oom must be true or false"),
        ({"shares_level": "extreme"}, InvalidRequestError, "shares_level must be one of low, normal, high"),
        ({"shares_level": 20}, InvalidRequestError, "shares_level must be one of"),
        ({"sharez": 5}, InvalidRequestError, "unknown config option(s) sharez"),
    ],
)
def test_malformed_values_are_refused_naming_the_option(
    values: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as info:
        ConfigUpdate.from_keywords(values)
    assert says in str(info.value)


def test_counts_up_to_what_the_hypervisors_take_are_accepted() -> None:
    assert MAX_INT32 == 2**31 - 1
    update = ConfigUpdate.from_keywords({"stats_period": MAX_INT32, "shares": MAX_INT32})
    assert update.fields() == {"shares": MAX_INT32, "stats_period_seconds": MAX_INT32}
    assert BY_KEYWORD["stats_period"].highest == BY_KEYWORD["shares"].highest == MAX_INT32
    assert BY_KEYWORD["priority"].highest is None and BY_KEYWORD["priority"].accepts() == "an integer"
    assert BY_KEYWORD["stats_period"].accepts("docs") == "an integer from 0 to 2147483647"
    assert BY_KEYWORD["shares"].accepts("docs") == "an integer from 1 to 2147483647"


def test_a_malformed_value_changes_nothing() -> None:
    with hvballoon.connect("fake://seed?flavor=esxi") as hv:
        before = hv.get_config("db01")
        with pytest.raises(InvalidRequestError) as info:
            hv.set_config("db01", reservation="4GiB", shares_level="extreme")
        assert info.value.details["value"] == "extreme"
        assert hv.get_config("db01") == before
        assert hv.set_config("db01", reservation="4GiB", shares_level="high").changed


# -- one source: the CLI ----------------------------------------------------------------------


def test_the_config_command_has_one_option_per_field() -> None:
    params = {p.name: p for p in config_cmd.params if isinstance(p, click.Option)}
    others = {"dry_run", "skip_invalid", "timeout", "no_verify", "ca_file", "password_stdin", "as_json"}
    assert set(params) == {o.keyword for o in OPTIONS} | others
    for o in OPTIONS:
        p = params[o.keyword]
        assert "/".join([*p.opts, *p.secondary_opts]) == o.cli
        assert p.help == o.help_text("cli")
        assert p.default is None
        if o.kind == "bool":
            assert p.is_flag and isinstance(p.type, click.types.BoolParamType), o.keyword
        else:
            assert p.type is (click.INT if o.kind == "int" else click.STRING), o.keyword


def test_the_cli_hands_each_option_to_set_config() -> None:
    args = [
        "config",
        "fake://seed?flavor=esxi",
        "db01",
        "--reservation",
        "2GiB",
        "--shares-level",
        "high",
        "--no-memory-reservation-lock",
        "--dry-run",
        "--json",
    ]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    change = json.loads(r.output)
    assert change["requested"] == {
        "reservation_bytes": 2 * 2**30,
        "shares_level": "high",
        "memory_reservation_lock": False,
    }
    assert change["dry_run"] is True


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (
            ["--shares-level", "extreme"],
            "invalid_request",
            "shares_level must be one of low, normal, high, custom",
        ),
        (["--minimum", "lots"], "invalid_size", "invalid minimum 'lots'"),
        (["--limit", "-5GiB"], "invalid_size", "invalid limit '-5GiB'"),
    ],
)
def test_the_cli_refuses_a_malformed_value_with_exit_2(args: list[str], code: str, says: str) -> None:
    r = CliRunner().invoke(main, ["config", "fake://seed?flavor=hyperv", "web01", *args, "--json"])
    assert r.exit_code == 2, r.output
    report = json.loads(r.output)
    assert report["code"] == code and says in report["message"]


@pytest.mark.parametrize(
    ("flavor", "option", "field"),
    [("kvm", "--stats-period", "stats_period_seconds"), ("esxi", "--shares", "shares")],
)
def test_the_cli_refuses_a_count_the_hypervisor_cannot_take_and_keeps_nothing(
    tmp_path: Path, flavor: str, option: str, field: str
) -> None:
    uri = f"fake://seed?flavor={flavor}&state={tmp_path / 'world.db'}"
    with hvballoon.connect(uri) as hv:
        before = getattr(hv.get_config("web01"), field)
    for extra in ([], ["--json"]):
        r = CliRunner().invoke(main, ["config", uri, "web01", option, "99999999999999999999999", *extra])
        assert r.exit_code == 2, r.output
        assert "less than or equal to 2147483647" in r.output
    report = json.loads(r.output)
    assert (
        report["code"] == "invalid_request"
        and option.removeprefix("--").replace("-", "_") in report["message"]
    )
    with hvballoon.connect(uri) as hv:  # the persisted world kept what it had
        assert getattr(hv.get_config("web01"), field) == before


# -- one source: the Ansible module and the docs ----------------------------------------------


def test_the_ansible_module_is_generated_from_the_model() -> None:
    committed = Path(GEN["MODULE"]).read_text("utf-8")
    assert committed == GEN["render_module"](committed), REGENERATE


def test_the_ansible_documentation_and_argument_spec_agree_with_the_model() -> None:
    doc, fields = _module()
    assert list(doc["options"]) == list(fields) == [o.keyword for o in OPTIONS]
    types = {"size": "raw", "int": "int", "bool": "bool", "choice": "str"}
    for o in OPTIONS:
        documented = doc["options"][o.keyword]
        assert documented["type"] == fields[o.keyword]["type"] == types[o.kind]
        assert documented.get("choices", []) == fields[o.keyword].get("choices", []) == list(o.choices)
        assert documented["description"][0] == o.help_text("ansible")
    # the sentence naming each hypervisor's options names what the kinds declare settable
    (which,) = [d for d in doc["description"] if d.startswith("Which options")]
    assert "KVM O(maximum), O(deflate_on_oom), O(free_page_reporting), O(stats_period);" in which
    assert "O(memory_reservation_lock)" in which.split("ESXi", 1)[1].split(";")[0]


def test_a_stale_generated_block_is_noticed() -> None:
    committed = Path(GEN["MODULE"]).read_text("utf-8")
    stale = committed.replace('    stats_period=dict(type="int"),\n', "")
    assert stale != committed and GEN["render_module"](stale) == committed
    with pytest.raises(ValueError, match="no generated block"):
        GEN["render_module"](re.sub(r"# BEGIN generated fields[^\n]*\n", "", committed))


def test_the_cli_docs_table_is_generated_from_the_model() -> None:
    committed = Path(GEN["CLI_DOCS"]).read_text("utf-8")
    assert committed == GEN["render_cli_docs"](committed), REGENERATE
    for o in OPTIONS:
        assert f"| `{o.cli}` |" in committed


def test_an_integer_minus_one_removes_the_limit_as_the_text_does_and_vsphere_writes_it() -> None:
    # community.vmware's mem_limit: -1 in YAML is an integer, not the text "-1"
    assert ConfigUpdate.from_keywords({"limit": -1}).fields() == {"limit_bytes": None}
    with pytest.raises(InvalidSizeError, match="negative"):
        ConfigUpdate.from_keywords({"limit": -2})
    with pytest.raises(InvalidSizeError, match="negative"):
        ConfigUpdate.from_keywords({"reservation": -1})  # only the limit has "no limit"
    from tests.support.ansible import run_module

    r = run_module("config", {"uri": "fake://seed?flavor=esxi", "vm": "web01", "limit": -1}, True)
    assert not r.get("failed") and r["changes"][0]["after"] == {"limit_bytes": None}, r


@pytest.mark.parametrize("word", ["none", "None", "null"])
def test_a_none_word_for_the_limit_is_refused_not_taken_as_no_limit(word: str) -> None:
    # a None leaves an option alone, so the word must not remove a limit (Ansible renders an
    # unset variable's None as "None")
    with pytest.raises(InvalidSizeError, match="say 'unlimited'") as info:
        ConfigUpdate.from_keywords({"limit": word})
    assert info.value.details["option"] == "limit"
    result = CliRunner().invoke(main, ["config", "fake://seed?flavor=esxi", "web01", "--limit", word])
    assert result.exit_code == 2 and "say 'unlimited' (or -1)" in result.output, result.output
    from tests.support.ansible import run_module

    r = run_module("config", {"uri": "fake://seed?flavor=esxi", "vm": "web01", "limit": word}, False)
    assert r.get("failed") and "say 'unlimited'" in r["msg"] and not r.get("changed"), r
