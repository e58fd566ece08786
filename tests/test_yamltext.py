"""The strict YAML loader reads what ``yaml.safe_load`` reads, with libyaml's parser where PyYAML
has it and PyYAML's own otherwise, and never crashes the process on a deeply nested text."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from hvballoon._yamltext import _load_with, build_loader, load_yaml
from hvballoon.fake.scenario import builtin_scenarios
from tests.support.require import require

_TEXTS = [
    "a: 1\nb: [1, 2.5, -3, 0x1f, 0o17, 1_000, .inf, -.Inf, .nan]\n",
    "flags: [yes, No, on, OFF, true, ~, null, '', '1', \"2\"]\n",
    "when: 2024-02-28\nstamp: 2024-02-28T10:00:00Z\nsexagesimal: 1:30\n",
    "base: &b {memory: 1GiB, cpus: 2}\nvm: {<<: *b, memory: 2GiB}\nlist: [*b, *b]\n",
    "text: |\n  two\n  lines\nfolded: >-\n  one\n  line\nplain: a # comment\n",
    "--- \n- - nested\n  - seq\n- {flow: {in: [flow]}}\n- ? complex key\n  : value\n",
    "unicode: héllo ✓\nescaped: \"tab\\there\"\nsingle: 'it''s'\n",
    "binary: !!binary aGVsbG8=\nset: !!set {a, b}\nomap: !!omap [x: 1, y: 2]\n",
    "",
    "# only a comment\n",
    "just a scalar\n",
]

_BAD = [
    "a: [1, 2\nb: 3\n",
    "a: 1\na: 2\n",
    "{a: 1, a: 2}\n",
    "when: 2024-02-30\n",
    "n: " + "9" * 5000 + "\n",
    "a:\tb\n\tc: 1\n",
    "@x\n",
    "a: &x 1\nb: *y\n",
    "a: !!python/object:os.system ls\n",
    "--- 1\n--- 2\n",
]

_LOADERS = [pytest.param(False, id="pyyaml"), pytest.param(True, id="libyaml")]


def _libyaml(use: bool) -> object:
    if use:
        require(getattr(yaml, "__with_libyaml__", False), "PyYAML built with libyaml (its wheels are)")
    return build_loader(libyaml=use)


@pytest.mark.parametrize("use", _LOADERS)
@pytest.mark.parametrize("text", _TEXTS)
def test_reads_what_safe_load_reads(use: bool, text: str) -> None:
    assert _load_with(_libyaml(use), text) == yaml.load(text, Loader=yaml.SafeLoader)


@pytest.mark.parametrize("use", _LOADERS)
def test_every_builtin_scenario_reads_as_safe_load_reads_it(use: bool) -> None:
    loader = _libyaml(use)
    for name in builtin_scenarios():
        text = resources.files("hvballoon.fake").joinpath(f"scenarios/{name}.yaml").read_text("utf-8")
        assert _load_with(loader, text) == yaml.load(text, Loader=yaml.SafeLoader), name


@pytest.mark.parametrize("use", _LOADERS)
@pytest.mark.parametrize("text", _BAD)
def test_both_parsers_refuse_the_same_texts(use: bool, text: str) -> None:
    with pytest.raises(yaml.YAMLError) as caught:
        _load_with(_libyaml(use), text)
    # a place is always given, on one line
    assert getattr(caught.value, "problem_mark", None) or getattr(caught.value, "context_mark", None)


@pytest.mark.parametrize(
    ("use", "depth"),
    # PyYAML's own scanner is slow on deep flow collections (quadratic): deep enough suffices
    # (700 levels are 1,400 frames of its composer, past the default limit of 1,000; 1,200 in
    # the full suite)
    [(False, 700), pytest.param(False, 1_200, marks=pytest.mark.slow), (True, 1_200), (True, 200_000)],
)
def test_a_deeply_nested_text_is_an_error_not_a_crash(use: bool, depth: int) -> None:
    # complete and well formed: libyaml's own composer recurses in C through it and brings the
    # process down (at about 50,000 levels); the loader composes in Python. (Newer libyaml
    # refuses more than 1,000 levels while scanning, a YAML error.)
    text = "[" * depth + "]" * depth
    with pytest.raises((RecursionError, yaml.YAMLError)):
        _load_with(_libyaml(use), text)
    # however the parser stops, a reader is told the same
    with pytest.raises(RecursionError):
        load_yaml(text)


def test_the_loader_in_use_is_libyamls_where_pyyaml_has_it() -> None:
    from hvballoon._yamltext import _loader

    names = {c.__name__ for c in _loader().__mro__}
    assert ("CParser" in names) is bool(getattr(yaml, "__with_libyaml__", False))
    assert load_yaml("a: [1]\n") == {"a": [1]}


@pytest.mark.parametrize(
    ("text", "data"),
    [
        # libyaml refuses a ':' with no space after it in a flow mapping; PyYAML reads it
        ("{a:{b: 1}}\n", {"a": {"b": 1}}),
        (
            "vm: {name: a, workload: {kind: spike, params:{at: 30}}}\n",
            {"vm": {"name": "a", "workload": {"kind": "spike", "params": {"at": 30}}}},
        ),
        # YAML allows tabs between tokens; PyYAML refused them, libyaml reads them
        ("k: v\t# a comment\n", {"k": "v"}),
        ("- {a: 1,\tb: 2}\n", [{"a": 1, "b": 2}]),
    ],
)
def test_a_text_either_parser_reads_is_read(text: str, data: object) -> None:
    require(getattr(yaml, "__with_libyaml__", False), "PyYAML built with libyaml (its wheels are)")
    assert load_yaml(text) == data


def test_a_text_neither_reads_is_refused_in_pyyamls_words_as_before() -> None:
    with pytest.raises(ValueError) as caught:
        load_yaml("a: [1, 2\nb: 3\n")
    assert str(caught.value) == "expected ',' or ']', but got ':' (line 2, column 2)"
