"""Native exceptions → hvballoon errors: one rule table, the most specific row wins.

Every backend declares its native faults once, as an :class:`ErrorTable` of :class:`ErrorRule`
rows, and maps at its boundary with :meth:`ErrorTable.mapped` (or :meth:`ErrorTable.map`); the
native exception is chained (``raise … from exc``) and its own code kept in ``native_code``.
Rows match on the exception's *type* and, where the row names any, its *codes* (a fault code, an
HTTP status, an error class, a libvirt ``VIR_ERR_*`` name) — never on message text.

Which row wins does not depend on the order of the rows (httpx's idea): among the rows that
match,

1. a row naming one of the exception's codes beats a row naming none, and a row naming a more
   specific code (earlier in what the table's ``codes`` hook returns) beats one naming a later
   code;
2. then the row whose type is nearest the exception's own class (first in its MRO) wins.

Two rows that would tie (the same type and a code in common, or both without codes) are refused
when the table is built.

>>> from hvballoon.errors import HVConnectionError, VMNotFoundError
>>> table = ErrorTable(
...     "demo",
...     [
...         ErrorRule(OSError, HVConnectionError, "the host cannot be reached"),
...         ErrorRule(FileNotFoundError, VMNotFoundError, "the VM's socket is gone"),
...     ],
... )
>>> try:
...     with table.mapped("read the stats", vm="web01"):
...         raise FileNotFoundError(2, "No such file or directory")
... except VMNotFoundError as err:
...     err.code, err.vm, err.native_code, type(err.__cause__).__name__
('vm_not_found', 'web01', 'FileNotFoundError', 'FileNotFoundError')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from hvballoon.errors import BackendError, Hint, HVBalloonError

__all__ = ["Code", "ErrorRule", "ErrorTable"]

#: A native code a row may name: a string (fault or class name) or a number (status, errno).
Code = str | int


@dataclass(frozen=True)
class ErrorRule:
    """One row: native exception type(s), and optionally their codes → an hvballoon error.

    ``hint`` says what the native fault means for the user; ``retryable`` overrides the error
    class's default; ``next_step`` names a :class:`~hvballoon.errors.Hint` kind (what the caller
    can do, worded by each interface).
    """

    native: type[BaseException] | tuple[type[BaseException], ...]
    error: type[HVBalloonError]
    hint: str
    codes: frozenset[Code] | None = None
    retryable: bool | None = None
    next_step: str | None = None

    @property
    def types(self) -> tuple[type[BaseException], ...]:
        """The native types this row names."""
        kinds = self.native if isinstance(self.native, tuple) else (self.native,)
        return tuple(dict.fromkeys(kinds))  # one class named twice (an alias) counts once

    def label(self) -> str:
        """A short name of the row (for test ids and messages)."""
        names = "|".join(t.__name__ for t in self.types)
        return f"{names}[{','.join(sorted(map(str, self.codes)))}]" if self.codes else names


def _no_codes(_exc: BaseException) -> Sequence[Code]:
    return ()


def _type_name(exc: BaseException) -> Code | None:
    return type(exc).__name__


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "msg", None) or exc) or type(exc).__name__


def _itself(exc: BaseException) -> BaseException:
    return exc


class ErrorTable:
    """A backend's native faults, mapped onto :mod:`hvballoon.errors`.

    The hooks say what is special about the backend's library:

    - ``codes(exc)``: the codes rows may match on, most specific first (default: none);
    - ``native_code(exc)``: what ``HVBalloonError.native_code`` keeps (default: the type's name);
    - ``detail(exc)``: what the native error adds to the message (default: its ``msg`` or text);
    - ``unwrap(exc)``: the exception to judge, for a wrapper that only says *when* something
      failed (default: the exception itself);
    - ``catch``: what :meth:`mapped` intercepts (default: every type a row names); something
      caught that no row matches becomes a :class:`~hvballoon.errors.BackendError` saying
      ``unknown``. Anything else (a bug) passes through untouched, as do hvballoon's own errors.
    """

    def __init__(
        self,
        backend: str,
        rules: Iterable[ErrorRule],
        *,
        codes: Callable[[BaseException], Sequence[Code]] = _no_codes,
        native_code: Callable[[BaseException], Code | None] = _type_name,
        detail: Callable[[BaseException], str] = _message,
        unwrap: Callable[[BaseException], BaseException] = _itself,
        catch: tuple[type[BaseException], ...] | None = None,
        unknown: str = "unexpected error",
    ) -> None:
        self.backend = backend
        self.rules: tuple[ErrorRule, ...] = tuple(rules)
        self._codes = codes
        self._native_code = native_code
        self._detail = detail
        self._unwrap = unwrap
        self.catch: tuple[type[BaseException], ...] = (
            catch if catch is not None else tuple(dict.fromkeys(t for r in self.rules for t in r.types))
        )
        self.unknown = unknown
        self._check_no_ties()

    def _check_no_ties(self) -> None:
        seen: dict[type[BaseException], list[ErrorRule]] = {}
        for rule in self.rules:
            for kind in rule.types:
                for other in seen.get(kind, []):
                    both_bare = rule.codes is None and other.codes is None
                    if both_bare or (rule.codes and other.codes and rule.codes & other.codes):
                        raise ValueError(
                            f"{self.backend}: rows {other.label()} and {rule.label()} match the same "
                            f"{kind.__name__} equally"
                        )
                seen.setdefault(kind, []).append(rule)

    # -- choosing a row ---------------------------------------------------------------------

    def catches(self, exc: BaseException) -> bool:
        """Whether :meth:`mapped` turns ``exc`` into an hvballoon error (it is a native fault)."""
        return isinstance(exc, self.catch) and not isinstance(exc, HVBalloonError)

    def rule_for(self, exc: BaseException) -> ErrorRule | None:
        """The most specific row for ``exc`` (``None``: no row matches)."""
        exc = self._unwrap(exc)
        codes = list(self._codes(exc))
        mro = type(exc).__mro__
        best: tuple[int, int] | None = None
        chosen: ErrorRule | None = None
        for rule in self.rules:
            distances = [mro.index(t) for t in rule.types if t in mro]
            if not distances:
                continue
            if rule.codes is None:
                rank = len(codes)
            else:
                ranks = [i for i, code in enumerate(codes) if code in rule.codes]
                if not ranks:
                    continue
                rank = ranks[0]
            key = (rank, min(distances))
            if best is None or key < best:
                best, chosen = key, rule
        return chosen

    # -- mapping ----------------------------------------------------------------------------

    def native_code(self, exc: BaseException) -> Code | None:
        """The native code kept on the mapped error."""
        return self._native_code(self._unwrap(exc))

    def map(
        self, exc: BaseException, what: str | None = None, *, vm: str | None = None, uri: str | None = None
    ) -> HVBalloonError:
        """The hvballoon error for ``exc``, raised while doing ``what`` (the caller chains it)."""
        rule = self.rule_for(exc)
        detail = self._detail(self._unwrap(exc))
        hint = rule.hint if rule is not None else self.unknown
        message = ": ".join(part for part in (what, hint, detail) if part)
        error = rule.error if rule is not None else BackendError
        return error(
            message,
            backend=self.backend,
            uri=uri,
            vm=vm,
            native_code=self.native_code(exc),
            retryable=rule.retryable if rule is not None else None,
            hint=Hint(rule.next_step) if rule is not None and rule.next_step else None,
        )

    @contextmanager
    def mapped(
        self, what: str | None = None, *, vm: str | None = None, uri: str | None = None
    ) -> Iterator[None]:
        """Run a block whose native faults leave as hvballoon errors, the native one chained."""
        try:
            yield
        except Exception as exc:
            if not self.catches(exc):
                raise
            raise self.map(exc, what, vm=vm, uri=uri) from exc
