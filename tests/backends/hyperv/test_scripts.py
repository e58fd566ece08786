"""The fixed scripts: their shape, their size, and that parameters only ever travel as data."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from hvballoon.backends.hyperv._client import timeouts_for
from hvballoon.backends.hyperv._scripts import (
    DATA_MARKER,
    MAX_COMMAND_LINE,
    READ,
    SET_MEMORY,
    TEMPLATES,
    command_line_length,
    data_of,
    data_pattern,
    decode_data,
    encode_command,
    render,
)
from hvballoon.backends.hyperv.backend import MAX_IDS_PER_READ
from tests.support.hyperv.scenarios import HOSTILE_ID, HOSTILE_NAMES
from tests.support.winrm.server import decode_command_line


def test_templates_are_strict_short_and_single_document() -> None:
    for template in TEMPLATES.values():
        text = template.text
        assert text.startswith("$ErrorActionPreference = 'Stop'\n"), template.name
        assert text.count(DATA_MARKER) == 1
        assert len(text) < 2000, f"{template.name}: {len(text)} characters"
        assert text.count("Out-Json $r") == 1 and "exit 0" in text and "exit 1" in text
        assert "Invoke-Expression" not in text and "iex " not in text  # nothing is evaluated


def test_worst_case_command_lines_fit_cmd_exe() -> None:
    ids = [str(uuid.uuid4()) for _ in range(MAX_IDS_PER_READ)]
    big = 2**40
    params = [
        (READ, {"ids": ids}),
        (
            SET_MEMORY,
            {
                "id": ids[0],
                "dynamic": True,
                "startup": big,
                "minimum": big,
                "maximum": big,
                "target": big,
                "buffer": 2000,
                "priority": 100,
            },
        ),
    ]
    for template, p in params:
        script = render(template, p)
        assert len(script) < 3000
        command, arguments = encode_command(script)
        assert command_line_length(command, arguments) < MAX_COMMAND_LINE
        assert decode_command_line(" ".join([command, *arguments])) == script


@given(
    ident=st.text(min_size=1, max_size=64) | st.sampled_from([HOSTILE_ID, *HOSTILE_NAMES]),
    size=st.integers(min_value=0, max_value=2**50),
    flag=st.booleans(),
)
def test_parameters_are_only_data(ident: str, size: int, flag: bool) -> None:
    for template, params in (
        (READ, {"ids": [ident, ident[::-1]]}),
        (SET_MEMORY, {"id": ident, "maximum": size, "dynamic": flag}),
    ):
        script = render(template, params)
        data = data_of(template, script)  # the script is the template plus base64, nothing else
        assert set(data) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
        assert script == template.text.replace(DATA_MARKER, data)
        assert decode_data(data) == params
        assert sum(bool(data_pattern(t).fullmatch(script)) for t in TEMPLATES.values()) == 1


@given(st.floats(min_value=0.01, max_value=3600))
def test_operation_timeout_stays_below_the_read_timeout(timeout: float) -> None:
    read, operation = timeouts_for(timeout)
    assert 1 <= operation < read and read >= timeout


def test_the_probe_quotes_the_command_names() -> None:
    # Get-Command -Name takes strings: bare words work only by PowerShell's argument parsing
    import re

    from hvballoon.backends.hyperv._scripts import PROBE

    (names,) = re.findall(r"Get-Command -Name (.+?) -ErrorAction", PROBE.text)
    assert [n.strip() for n in names.split(",")] == ["'Get-VM'", "'Get-VMMemory'", "'Set-VMMemory'"]


def test_set_memory_changes_nothing_when_dynamic_memory_was_switched() -> None:
    # the target's field (maximum or startup) is chosen from what was read; the script refuses
    # before Set-VMMemory if Dynamic Memory is no longer in that state
    from hvballoon.backends.hyperv._scripts import SET_MEMORY

    guard = SET_MEMORY.text.index("$p.dynamic_is")
    assert guard < SET_MEMORY.text.index("Set-VMMemory @a")
    assert "-ErrorId 'HVBalloonStateChanged'" in SET_MEMORY.text[guard:]
