"""A "did you mean" is a pass over every name the session knows: only the first few names a
call finds missing get one (1,000 unknown names on a 10,000-VM host took two minutes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon._vmindex import SUGGESTED_MISSES, VMIndex
from hvballoon.errors import VMNotFoundError
from tests.support.cli import invoke

MISSING = 3 * SUGGESTED_MISSES


@pytest.fixture
def host(tmp_path: Path) -> str:
    vms = [{"name": f"vm{i:03d}", "memory": "4GiB", "used": "1GiB"} for i in range(40)]
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"name": "many", "host": {"physical": "256GiB"}, "vms": vms}))
    return f"fake://{path}"


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The refs ``VMIndex.close_names`` was asked about."""
    asked: list[str] = []
    original = VMIndex.close_names

    def counted(self: VMIndex, ref: str, **kw: Any) -> list[str]:
        asked.append(ref)
        return original(self, ref, **kw)

    monkeypatch.setattr(VMIndex, "close_names", counted)
    return asked


def test_a_call_missing_many_names_suggests_for_the_first_few(host: str, passes: list[str]) -> None:
    unknown = [f"vm{i:03d}x" for i in range(MISSING)]
    with hvballoon.connect(host) as hv:
        found, missing = hv.find_vms(["vm001", *unknown])
        assert [v.name for v in found] == ["vm001"] and missing == unknown
        assert len(passes) <= SUGGESTED_MISSES, len(passes)
        passes.clear()
        results = hv.set_targets({name: "2GiB" for name in unknown})
    errors = [results[name] for name in unknown]
    assert all(isinstance(e, VMNotFoundError) for e in errors)
    assert len(passes) <= SUGGESTED_MISSES, len(passes)
    # the first few as before: the close names said; the others without
    first, last = errors[0], errors[-1]
    assert isinstance(first, VMNotFoundError) and isinstance(last, VMNotFoundError)
    assert "vm000" in first.details["close_matches"] and "did you mean 'vm000'" in str(first)
    assert last.details["close_matches"] == [] and "did you mean" not in str(last)


def test_stats_names_the_first_few_missing_and_counts_the_others(host: str, passes: list[str]) -> None:
    unknown = [f"vm{i:03d}x" for i in range(MISSING)]
    r = invoke("stats", host, "vm001", *unknown)
    assert r.returncode == 7
    assert r.stderr.count("did you mean") == SUGGESTED_MISSES
    assert f"'vm{SUGGESTED_MISSES - 1:03d}x' (did you mean 'vm{SUGGESTED_MISSES - 1:03d}'" in r.stderr
    assert f"?), and {MISSING - SUGGESTED_MISSES} more on" in r.stderr
    assert len(passes) <= 2 * SUGGESTED_MISSES, len(passes)
    r = invoke("stats", host, "vm001", *unknown, "--json")
    report = json.loads(r.stderr)
    assert report["details"]["missing_vms"] == unknown


def test_few_missing_names_are_each_suggested(host: str) -> None:
    r = invoke("stats", host, "vm001", "vm002x", "zzz")
    assert r.returncode == 7
    assert "'vm002x' (did you mean 'vm002', " in r.stderr and "'zzz' on" in r.stderr


def test_the_controllers_settings_suggest_for_the_first_few_unknown_vms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import difflib

    from hvballoon.policy import Controller, ControllerSettings

    asked: list[str] = []
    original = difflib.get_close_matches

    def counted(word: str, *a: Any, **kw: Any) -> list[str]:
        asked.append(word)
        return original(word, *a, **kw)

    monkeypatch.setattr(difflib, "get_close_matches", counted)
    unknown = [f"web{i:02d}x" for i in range(MISSING)]
    settings = ControllerSettings(
        host_memory_bytes="120GiB", vms={name: {"exclude": True} for name in unknown}
    )
    with hvballoon.connect("fake://seed") as hv:
        problems = Controller(hv, "hvballoon", settings, dry_run=True).check_settings()
    assert len(problems) == MISSING and len(asked) == SUGGESTED_MISSES
    assert "'web01x'" in problems[1] and "did you mean 'web01'" in problems[1]
    assert "did you mean" not in problems[-1] and f"'{unknown[-1]}'" in problems[-1]
