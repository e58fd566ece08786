"""Reading the YAML and JSON files people write (scenarios, settings, inventories), and why a
text could not be read, in one line: the parser's problem and where it stopped.

PyYAML's own message spans several lines and quotes a snippet of the file, which could show a
secret written near the mistake: only the problem and its place are kept.

>>> import yaml
>>> try:
...     yaml.safe_load("a: [1, 2\\nb: 3\\n")
... except yaml.YAMLError as exc:
...     print(yaml_problem(exc))
expected ',' or ']', but got ':' (line 2, column 2)

:func:`load_yaml` and :func:`load_json` read a text as ``yaml.safe_load`` and ``json.loads``
do, but refuse a key given twice in one mapping — which both parsers would otherwise settle
silently, the last one winning — and a number too long to be read, with the same one-line
``ValueError`` as any other problem:

>>> load_yaml("name: a\\nvms: []\\nname: b\\n")
Traceback (most recent call last):
...
ValueError: the key 'name' is given twice in one mapping (line 3, column 1)
>>> load_yaml("base: &b {memory: 1GiB}\\nvm: {<<: *b, memory: 2GiB}\\n")  # a merge key's keys may be overridden
{'base': {'memory': '1GiB'}, 'vm': {'memory': '2GiB'}}
"""

from __future__ import annotations

import functools
import json
from typing import Any

from hvballoon._gc import collector_paused

__all__ = ["build_loader", "load_json", "load_yaml", "yaml_problem"]

#: How much of a key a message shows.
_KEY_SHOWN = 60


def yaml_problem(exc: BaseException) -> str:
    """``exc`` (a ``yaml.YAMLError``) as one line: its problem and the line and column."""
    problem = " ".join(str(getattr(exc, "problem", None) or "not valid YAML").split())
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        problem += f" (line {mark.line + 1}, column {mark.column + 1})"
    return problem


def _shown_key(key: object) -> str:
    text = repr(key)
    return text if len(text) <= _KEY_SHOWN else text[: _KEY_SHOWN - 1] + "…"


def load_yaml(text: str) -> Any:
    """The data of the YAML ``text`` (safe types only); a ``ValueError`` of one line, the
    problem and where (never a snippet of the text), when it cannot be read: not YAML, a key
    given twice in one mapping, a number too long to read. ``RecursionError`` is left to the
    caller (its own words for a text nested too deeply)."""
    import yaml

    loader = _loader()
    try:
        return _load_with(loader, text)
    except yaml.YAMLError as exc:
        problem = exc
    if loader is not _python_loader():
        # libyaml is stricter than PyYAML here and there (``{a:{b: 1}}``): a text PyYAML reads
        # is read as it always was, and one it refuses is refused in its words, as before
        try:
            return _load_with(_python_loader(), text)
        except yaml.YAMLError as exc:
            problem = exc
    raise ValueError(yaml_problem(problem)) from None


def _load_with(loader_class: Any, text: str) -> Any:
    # every node and value is a new object, none in a cycle a collection would free: the cyclic
    # collector's passes over them cost more than the reading at 10,000 VMs
    loader = loader_class(text)
    try:
        with collector_paused():
            return loader.get_single_data()
    finally:
        loader.dispose()


@functools.cache
def _loader() -> Any:
    """The strict loader, built once (:func:`build_loader`)."""
    return build_loader()


@functools.cache
def _python_loader() -> Any:
    """The strict loader on PyYAML's own parser, built once."""
    return build_loader(libyaml=False)


def build_loader(*, libyaml: bool | None = None) -> Any:
    """A strict loader class: libyaml's scanner and parser where PyYAML was built with it
    (``libyaml=None``: if it was; it reads a scenario of 10,000 VMs in a fifth of the time),
    PyYAML's own otherwise. The nodes are composed by PyYAML's Python composer either way:
    libyaml's recurses in C through a deeply nested text and crashes the process, where
    PyYAML's raises ``RecursionError``. Where both read a text, they give the same data (that
    of ``yaml.safe_load``); libyaml reads tabs between tokens, which YAML allows and PyYAML
    refuses, and refuses a few texts PyYAML reads (:func:`load_yaml` then reads them with
    PyYAML's)."""
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.resolver import Resolver
    from yaml.scanner import Scanner

    constructor = _strict_constructor()
    parser: Any = None
    if libyaml is not False:
        try:
            from yaml.cyaml import CParser as parser  # type: ignore[attr-defined]
        except ImportError:  # PyYAML without libyaml
            if libyaml:
                raise
    if parser is None:

        class PythonLoader(Reader, Scanner, Parser, Composer, constructor, Resolver):  # type: ignore[misc,valid-type]
            def __init__(self, stream: str) -> None:
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                Parser.__init__(self)
                Composer.__init__(self)
                constructor.__init__(self)
                Resolver.__init__(self)

        return PythonLoader

    class LibyamlLoader(Composer, parser, constructor, Resolver):  # type: ignore[misc,valid-type]
        # Composer before the C parser: its composing methods are the ones used
        def __init__(self, stream: str) -> None:
            parser.__init__(self, stream)
            Composer.__init__(self)
            constructor.__init__(self)
            Resolver.__init__(self)

    return LibyamlLoader


def _strict_constructor() -> Any:
    import yaml
    from yaml.constructor import ConstructorError
    from yaml.nodes import MappingNode

    class StrictConstructor(yaml.constructor.SafeConstructor):
        """PyYAML's safe constructor, refusing a key given twice in a mapping and saying where a
        number or a date could not be read."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # what a merge key brings may be overridden
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                        seen.add(key)
                    except TypeError:  # an unhashable key: PyYAML's own error below
                        continue
                    if duplicate:
                        problem = f"the key {_shown_key(key)} is given twice in one mapping"
                        raise ConstructorError(None, None, problem, key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node: Any) -> Any:
            try:
                return super().construct_yaml_int(node)
            except ValueError:  # int()'s limit on digits
                raise ConstructorError(None, None, "a number too long to read", node.start_mark) from None

        def construct_yaml_timestamp(self, node: Any) -> Any:
            try:
                return super().construct_yaml_timestamp(node)
            except ValueError:  # 2024-02-30: the shape of a date, not a date
                raise ConstructorError(None, None, "not a date", node.start_mark) from None

    strict: Any = StrictConstructor
    strict.add_constructor("tag:yaml.org,2002:int", strict.construct_yaml_int)
    strict.add_constructor("tag:yaml.org,2002:timestamp", strict.construct_yaml_timestamp)
    return strict


def load_json(text: str) -> Any:
    """The data of the JSON ``text``; a ``ValueError`` of one line when it cannot be read (not
    JSON, a key given twice in one object, a number too long to read). ``RecursionError`` is
    left to the caller."""
    try:
        with collector_paused():
            return json.loads(text, object_pairs_hook=_unique_pairs)
    except (json.JSONDecodeError, _DuplicateKey) as exc:
        raise ValueError(str(exc)) from None
    except ValueError:  # int()'s limit on digits
        raise ValueError("a number too long to read") from None


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"the key {_shown_key(key)} is given twice in one object")
        out[key] = value
    return out
