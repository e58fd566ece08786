"""Generate what the Ansible ``config`` module and the CLI docs say about each config option,
from the fields of :class:`hvballoon.models.ConfigUpdate`.

    python scripts/config_fields.py            # print the generated blocks
    python scripts/config_fields.py --write    # update the module and docs/cli.md

An Ansible module's ``DOCUMENTATION`` and ``argument_spec`` must be static text (ansible-test's
sanity tests read them without importing the SDK), so they are written here, between the
``# BEGIN generated …`` / ``# END generated`` lines of
``ansible_collections/hvballoon/memory/plugins/modules/config.py``: the options (their
description, type and choices), the sentence saying which options each hypervisor has (from
:mod:`hvballoon.kinds`), and the ``FIELDS`` argument spec. docs/cli.md gets the table of the
``config`` command's options between ``<!-- config-options -->`` and ``<!-- /config-options -->``.
A test (tests/test_config_fields.py) fails when a committed file differs from this output.
"""

from __future__ import annotations

import argparse
import json
import re
import textwrap
from pathlib import Path

from hvballoon.kinds import KINDS
from hvballoon.models import ConfigOption, ConfigUpdate

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "ansible_collections" / "hvballoon" / "memory" / "plugins" / "modules" / "config.py"
CLI_DOCS = ROOT / "docs" / "cli.md"

_SOURCE = "scripts/config_fields.py from hvballoon.models.ConfigUpdate: do not edit"
_BLOCK = re.compile(
    r"(?P<indent>[ \t]*)# BEGIN generated (?P<name>[\w-]+) by [^\n]*\n.*?(?P=indent)# END generated (?P=name)\n",
    re.DOTALL,
)
_DOCS_BLOCK = re.compile(r"<!-- config-options -->\n.*?<!-- /config-options -->", re.DOTALL)
#: What an Ansible option of each kind is declared as.
_ANSIBLE_TYPE = {"size": "raw", "int": "int", "bool": "bool", "choice": "str"}
_SIZE_NOTE = (
    "A size: a string such as V(16GiB) (IEC, powers of 1024) or V(16GB) (SI, powers of 1000), or an "
    "integer of bytes; a number without a unit below 1 MiB (V(4), meant as V(4GiB)) fails the task "
    "with code V(invalid_size)."
)
_PLAIN_YAML = re.compile(r"^[A-Za-z0-9(][^\n]*$")


def _yaml_item(text: str, indent: str) -> list[str]:
    """``text`` as a YAML list item at ``indent``: a plain scalar where YAML reads it back
    unchanged, else double-quoted; wrapped at 100 columns (YAML folds the line breaks back into
    spaces)."""
    plain = _PLAIN_YAML.match(text) and ": " not in text and " #" not in text and not text.endswith(":")
    scalar = text if plain else json.dumps(text, ensure_ascii=False)
    lines = textwrap.wrap(scalar, width=100 - len(indent) - 2, break_long_words=False, break_on_hyphens=False)
    return [f"{indent}- {lines[0]}", *(f"{indent}  {line}" for line in lines[1:])]


def _options() -> tuple[ConfigOption, ...]:
    return ConfigUpdate.options()


def options_yaml() -> list[str]:
    """The ``options:`` entries of the module's DOCUMENTATION (indented two spaces)."""
    out = []
    for o in _options():
        lines = [o.help_text("ansible")] + ([_SIZE_NOTE] if o.kind == "size" else [])
        out.append(f"  {o.keyword}:")
        out.append("    description:")
        for line in lines:
            out.extend(_yaml_item(line, "      "))
        out.append(f"    type: {_ANSIBLE_TYPE[o.kind]}")
        if o.choices:
            out.append(f"    choices: [{', '.join(o.choices)}]")
    return out


def per_kind_yaml() -> list[str]:
    """The description item naming the options each hypervisor kind can change."""
    parts = []
    for kind in KINDS.values():
        settable: set[str] = set()
        for variant in kind.variants:
            caps = kind.capabilities(backend=kind.name, variant=variant.name)
            settable |= caps.set_live | caps.set_offline
        names = [f"O({o.keyword})" for o in _options() if o.field in settable]
        parts.append(f"{kind.title} {', '.join(names)}")
    return _yaml_item("Which options each hypervisor has: " + "; ".join(parts) + ".", "  ")


def fields_python() -> list[str]:
    """The module's ``FIELDS`` argument spec."""
    out = ["FIELDS = dict("]
    for o in _options():
        choices = f", choices={json.dumps(list(o.choices))}" if o.choices else ""
        out.append(f'    {o.keyword}=dict(type="{_ANSIBLE_TYPE[o.kind]}"{choices}),')
    out.append(")")
    return out


def render_module(text: str) -> str:
    """``text`` (the module's source) with its generated blocks regenerated."""
    blocks = {"per-kind": per_kind_yaml(), "options": options_yaml(), "fields": fields_python()}
    seen: set[str] = set()

    def fill(m: re.Match[str]) -> str:
        name, indent = m["name"], m["indent"]
        if name not in blocks:
            raise ValueError(f"unknown generated block {name!r}")
        seen.add(name)
        body = "".join(f"{line}\n" for line in blocks[name])
        return f"{indent}# BEGIN generated {name} by {_SOURCE}\n{body}{indent}# END generated {name}\n"

    out = _BLOCK.sub(fill, text)
    missing = sorted(set(blocks) - seen)
    if missing:
        raise ValueError(f"the module has no generated block(s) {', '.join(missing)}")
    return out


def cli_table() -> str:
    """The Markdown table of the ``config`` command's options."""
    lines = ["| option | takes | sets |", "|---|---|---|"]
    for o in _options():
        lines.append(f"| `{o.cli}` | {o.accepts('docs')} | {o.help_text('docs')} |")
    return "\n".join(lines)


def render_cli_docs(text: str) -> str:
    """``text`` (docs/cli.md) with its ``<!-- config-options -->`` block regenerated."""
    if "<!-- config-options -->" not in text:
        raise ValueError("the page has no <!-- config-options --> block")
    block = f"<!-- config-options -->\n{cli_table()}\n<!-- /config-options -->"
    return _DOCS_BLOCK.sub(lambda _m: block, text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.write:
        MODULE.write_text(render_module(MODULE.read_text("utf-8")), "utf-8")
        CLI_DOCS.write_text(render_cli_docs(CLI_DOCS.read_text("utf-8")), "utf-8")
    else:
        print("\n".join([*per_kind_yaml(), *options_yaml(), *fields_python(), cli_table()]))


if __name__ == "__main__":
    main()
