"""The keys a pydantic model takes at a path of its data, for the "did you mean" of a misspelt
key in a file a person wrote (a fake scenario, the controller's settings), and the same "did you
mean" for a misspelt keyword of the Python API (:func:`suggest`).

>>> from hvballoon.fake.scenario import Scenario
>>> did_you_mean(Scenario, ("vms", 0, "usd")), did_you_mean(Scenario, ("zzqqx",))
(" (did you mean 'used'?)", '')
>>> suggest("minimun", ["maximum", "minimum", "priority"])
" (did you mean 'minimum'?)"
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

__all__ = ["did_you_mean", "keys_at", "suggest"]


def did_you_mean(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """`` (did you mean 'used'?)`` for a misspelt key at ``loc`` of ``root``'s data, when a key
    the model takes there is close; else ``""``."""
    if not loc:
        return ""
    key = str(loc[-1])
    return suggest(key, keys_at(root, loc[:-1]))


def suggest(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'used'?)`` when one of the ``known`` names is close to ``key``; else ``""``."""
    close = difflib.get_close_matches(key.lower(), sorted(k for k in known if k != key), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def keys_at(root: type[BaseModel], path: tuple[int | str, ...]) -> set[str]:
    """The keys the model at ``path`` of ``root``'s data takes (its fields' names and aliases)."""
    hints: list[Any] = [root]
    for part in path:
        models = _models(hints)
        if isinstance(part, str) and any(part in m.model_fields for m in models):
            hints = [m.model_fields[part].annotation for m in models if part in m.model_fields]
        elif not isinstance(part, str) or not models:
            hints = [a for h in hints for a in typing.get_args(h)]  # an item of a list or a mapping
    keys: set[str] = set()
    for model in _models(hints):
        for name, field in model.model_fields.items():
            keys.update(k for k in (name, field.alias) if k)
    return keys


def _models(hints: list[Any]) -> list[type[BaseModel]]:
    """The models among ``hints`` (``VMSpec | None`` holds one)."""
    out: list[type[BaseModel]] = []
    for hint in hints:
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            out.append(hint)
        else:
            out.extend(m for m in _models(list(typing.get_args(hint))) if m not in out)
    return out
