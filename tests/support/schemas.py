"""JSON Schema validation for tests: :func:`validate` is ``jsonschema.validate``, with each
schema checked against its metaschema once per process instead of on every call (that check was
nine tenths of the cost of validating one ``--json`` output).

    >>> validate({"a": 1}, {"type": "object", "properties": {"a": {"type": "integer"}}})
    >>> validate({"a": "x"}, {"type": "object", "properties": {"a": {"type": "integer"}}})
    Traceback (most recent call last):
    ...
    jsonschema.exceptions.ValidationError: 'x' is not of type 'integer'
    ...
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

__all__ = ["Lazy", "validate"]


@functools.cache
def _validator(schema_text: str) -> Validator:
    schema = json.loads(schema_text)
    cls = validator_for(schema)
    cls.check_schema(schema)  # SchemaError: the schema itself is not valid JSON Schema
    return cls(schema)


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """Raise the best-matching ``jsonschema.ValidationError`` when ``instance`` does not fit
    ``schema`` (and ``SchemaError`` when the schema is not valid JSON Schema), as
    ``jsonschema.validate`` does."""
    error = best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(instance))
    if error is not None:
        raise error


class Lazy(Mapping[str, dict[str, Any]]):
    """Schemas by name, built on first use: a test module's table (``Lazy(output_schemas)``)
    costs nothing when the module is only collected (pydantic builds every schema anew, about
    0.1 s for them all, in each worker that collects the module)."""

    def __init__(self, build: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self._build = build

    @functools.cached_property
    def _schemas(self) -> dict[str, dict[str, Any]]:
        return self._build()

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self._schemas[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._schemas)

    def __len__(self) -> int:
        return len(self._schemas)
