"""The answer of a bulk change: one result per VM, and what the whole came to.

>>> import hvballoon
>>> with hvballoon.connect("fake://seed") as hv:
...     res = hv.set_targets({"web01": "6GiB", "nosuch": "4GiB"})
>>> res.ok, res.applied, sorted(res.errors), res["web01"].dry_run
(False, False, ['nosuch'], True)
>>> res.error.code, "nothing was changed" in res.error.message
('vm_not_found', True)
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from hvballoon.errors import HVBalloonError, Interface, InvalidRequestError, PartialChangeError
from hvballoon.models import VM, Change, MemoryStats

__all__ = [
    "NAMED_IN_MESSAGE",
    "TargetResults",
    "TargetsInterrupted",
    "first_few",
    "held_back",
    "interrupt_held",
    "keyed_pairs",
    "log_changes",
    "named_twice",
]

Result = Change | HVBalloonError

#: The VMs a message names (a whole's error, a log line, the CLI's reports; every one is in
#: the ``details``): a message naming each of 10,000 failures was a line of a megabyte and more.
NAMED_IN_MESSAGE = 10


def first_few(parts: Sequence[str], sep: str = ", ", show: Callable[[str], str] = str) -> str:
    """The first :data:`NAMED_IN_MESSAGE` of ``parts`` (each as ``show`` writes it), joined by
    ``sep``, and how many more there are, after the same ``sep`` (a message may name one VM of
    10,000, or all of them). Every message naming VMs by the few says it so.

    >>> first_few(["web01", "web02"])
    'web01, web02'
    >>> first_few([f"vm{i:02d}" for i in range(12)], show=repr)
    "'vm00', 'vm01', 'vm02', 'vm03', 'vm04', 'vm05', 'vm06', 'vm07', 'vm08', 'vm09', and 2 more"
    """
    shown = sep.join(show(p) for p in parts[:NAMED_IN_MESSAGE])
    if len(parts) <= NAMED_IN_MESSAGE:
        return shown
    return f"{shown}{sep}and {len(parts) - NAMED_IN_MESSAGE} more"


def log_changes(logger: logging.Logger, fmt: str, rows: list[tuple[Any, ...]], many: str) -> None:
    """A bulk call's changes in the log, one ``fmt % row`` per VM (a row begins with the VM's
    name): at INFO for up to :data:`NAMED_IN_MESSAGE` VMs; for more, at DEBUG, under one INFO
    line ``many`` with their number and the first names (a line per VM of a bulk call at INFO
    was 10,000 lines a round)."""
    few = len(rows) <= NAMED_IN_MESSAGE
    for row in rows:
        logger.log(logging.INFO if few else logging.DEBUG, fmt, *row)
    if not few:
        logger.info("%s of %d VMs: %s", many, len(rows), first_few([str(row[0]) for row in rows]))


class TargetResults(Mapping[str, Result]):
    """What :meth:`hvballoon.Hypervisor.set_targets` (or ``set_configs``) did, VM by VM, keyed
    as the VMs were named (a :class:`~hvballoon.VM` given as such is keyed by its id), in the
    order given.

    Each value is the VM's :class:`~hvballoon.Change` or its typed error. ``applied`` says
    whether anything was sent: ``False`` after a dry run, and when validation refused a VM and
    ``skip_invalid`` was not given — then the other VMs' changes are reported with
    ``dry_run=True`` and a warning that they were not applied. ``error`` sums up a failure
    (``None`` when every VM succeeded): :class:`~hvballoon.errors.PartialChangeError` when some
    VMs were changed and others were not, otherwise an error of the first failure's class whose
    message names the failures (the first :data:`NAMED_IN_MESSAGE`, and how many more; its
    ``details`` hold every one). :meth:`raise_for_errors` raises it.
    """

    def __init__(
        self,
        results: dict[str, Result],
        *,
        applied: bool,
        made: set[str] | None = None,
        stats: dict[str, MemoryStats] | None = None,
        backend: str | None = None,
        uri: str | None = None,
    ) -> None:
        self._results = dict(results)
        self.applied = applied
        #: keys whose target was really moved (even if waiting for it then failed)
        self.made: frozenset[str] = frozenset(made or ())
        #: the stats each VM reached, when the caller waited
        self.stats: dict[str, MemoryStats] = dict(stats or {})
        self._backend = backend
        self._uri = uri

    def __getitem__(self, key: str) -> Result:
        return self._results[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{len(self.errors)} failed"
        return f"<TargetResults {len(self)} VMs, {len(self.made)} changed, {state}>"

    @property
    def changes(self) -> dict[str, Change]:
        return {k: v for k, v in self._results.items() if isinstance(v, Change)}

    @property
    def errors(self) -> dict[str, HVBalloonError]:
        return {k: v for k, v in self._results.items() if isinstance(v, HVBalloonError)}

    @property
    def ok(self) -> bool:
        """Every VM got its target (or already had it, or would in a dry run)."""
        return not self.errors

    @property
    def changed(self) -> bool:
        """Some VM's target was really moved."""
        return bool(self.made)

    @property
    def error(self) -> HVBalloonError | None:
        """The failure of the whole, or ``None`` (see the class docstring)."""
        errors = self.errors
        if not errors:
            return None
        details = {
            "errors": {k: e.to_dict() for k, e in errors.items()},
            "applied": sorted(self.made),
            "not_applied": [k for k in self._results if k not in self.made],
        }
        summary = first_few([f"{k}: {e.message}" for k, e in errors.items()], "; ")
        unapplied = [k for k in errors if k not in self.made]
        if self.made and unapplied:
            return PartialChangeError(
                f"changed {len(self.made)} of {len(self)} VMs ({first_few(sorted(self.made))}); "
                f"not changed: {summary}",
                backend=self._backend,
                uri=self._uri,
                details=details,
            )
        first = next(iter(errors.values()))
        if len(self) == 1:
            return first
        prefix = (
            "nothing was changed: " if not self.made else f"changed {len(self.made)} of {len(self)} VMs, but "
        )
        return type(first)(
            f"{prefix}{len(errors)} of {len(self)} VMs failed: {summary}",
            backend=first.backend or self._backend,
            uri=first.uri or self._uri,
            vm=first.vm if len(errors) == 1 else None,
            native_code=first.native_code,
            retryable=all(e.retryable for e in errors.values()),
            details=details,
            hint=first.hint if len(errors) == 1 else None,
        )

    def raise_for_errors(self) -> None:
        """Raise :attr:`error` when a VM failed."""
        error = self.error
        if error is not None:
            raise error

    def records(self, interface: Interface = "api") -> list[dict[str, Any]]:
        """One JSON-ready record per VM: ``vm`` (as named), ``ok``, ``changed``, ``change``,
        ``error`` (hints in ``interface``'s words) and, when waited for, ``stats`` (what
        ``--json`` and Ansible report)."""
        out = []
        for key, value in self._results.items():
            is_change = isinstance(value, Change)
            stats = self.stats.get(key)
            out.append(
                {
                    "vm": key,
                    "ok": is_change,
                    "changed": key in self.made,
                    "change": value.model_dump(mode="json") if isinstance(value, Change) else None,
                    "error": value.to_dict(interface) if isinstance(value, HVBalloonError) else None,
                    "stats": stats.model_dump(mode="json") if stats is not None else None,
                }
            )
        return out


class TargetsInterrupted(KeyboardInterrupt):
    """Ctrl-C (a :class:`KeyboardInterrupt`) while :meth:`hvballoon.Hypervisor.set_targets`
    applied the targets or waited for them (``wait=True``): :attr:`results` says what was
    applied, VM by VM — their changes (or errors), ``made``, and in ``stats`` the VMs whose
    memory had reached its target when the wait was stopped (the others had not, or not yet
    been seen to). Caught as a ``KeyboardInterrupt``, it stops a program as one does.

    A Ctrl-C during the apply is held until the call in flight answers (a bulk call cannot be
    taken back half-sent, and what it applied must be reported), then stops the rest:
    ``waiting`` is ``False`` and :attr:`not_sent` names the VMs whose target was not sent
    again after a retryable failure (their results are that failure).

    :meth:`hvballoon.Hypervisor.set_configs` raises it too, when a Ctrl-C comes while it
    changes the configurations VM by VM: the change of the VM in flight is let finish, the
    VMs after it are not sent (:attr:`not_sent`; their results are their planned changes as a
    dry run, with a warning saying so), and ``waiting`` is ``False``."""

    def __init__(self, results: TargetResults, *, waiting: bool = True, not_sent: Iterable[str] = ()) -> None:
        super().__init__()
        #: what was applied before the apply or the wait was interrupted
        self.results = results
        #: ``True``: stopped while waiting, the targets all sent; ``False``: while applying them
        self.waiting = waiting
        #: the VMs whose change Ctrl-C kept from being sent (a target: sent again), in order
        self.not_sent: list[str] = list(not_sent)

    @property
    def not_reached(self) -> list[str]:
        """The VMs whose target was applied and waited for, but not seen reached (in order);
        none when the apply was interrupted (nothing was waited for)."""
        if not self.waiting:
            return []
        return [k for k, v in self.results.items() if isinstance(v, Change) and k not in self.results.stats]


@contextmanager
def interrupt_held() -> Iterator[list[int]]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block: the block runs on, and the list it
    is given says whether one came (the caller raises what it must once the block is done). A
    bulk call in flight is not left half-answered. Only in the main thread (the one signals
    reach) under Python's own SIGINT handler (the one that raises ``KeyboardInterrupt``);
    elsewhere the block runs as it is and the list stays empty."""
    held: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    if not in_main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield held
        return
    signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# -- what every bulk change does with its request -------------------------------------------


def keyed_pairs(items: Any, *, call: str, value: str) -> list[tuple[str, VM | str, Any]]:
    """A bulk call's request — a mapping ``{vm: value}`` or a list of ``(vm, value)`` pairs — as
    ``(key, VM or name or id, value)``, keyed as the VMs were named (a :class:`VM` by its id):
    each key once, a non-empty name or id; else an :class:`InvalidRequestError` naming ``call``.

    >>> keyed_pairs({"web01": "6GiB"}, call="set_targets", value="size")
    [('web01', 'web01', '6GiB')]
    """
    if isinstance(items, Mapping):
        pairs = list(items.items())
    elif isinstance(items, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in items
    ):
        pairs = [tuple(p) for p in items]
    else:
        raise InvalidRequestError(
            f"{call} takes a mapping {{vm: {value}}} or a list of (vm, {value}) pairs, got {type(items).__name__}"
        )
    if not pairs:
        raise InvalidRequestError(f"{call} needs at least one VM")
    out: list[tuple[str, VM | str, Any]] = []
    seen: set[str] = set()
    for ref, item in pairs:
        key = ref.id if isinstance(ref, VM) else ref
        if not isinstance(key, str) or not key:
            raise InvalidRequestError(f"a VM is named by a non-empty name or id, got {ref!r}")
        if key in seen:
            raise InvalidRequestError(f"VM {key!r} is named twice: give each VM once", vm=key)
        seen.add(key)
        out.append((key, ref, item))
    return out


def named_twice(found: Iterable[tuple[str, VM]]) -> dict[str, InvalidRequestError]:
    """Per key whose VM another key names too (a name and an id of one VM): its error."""
    keys: dict[str, list[str]] = {}
    vms: dict[str, VM] = {}
    for key, vm in found:
        keys.setdefault(vm.id, []).append(key)
        vms[vm.id] = vm
    out: dict[str, InvalidRequestError] = {}
    for vm_id, same in keys.items():
        if len(same) > 1:
            name = vms[vm_id].name
            for key in same:
                out[key] = InvalidRequestError(
                    f"VM {name!r} is named {len(same)} times ({', '.join(same)}): give each VM once", vm=name
                )
    return out


def held_back(planned: Mapping[str, Change], refused: list[str], total: int) -> dict[str, Change]:
    """The changes planned for the VMs that passed, as a dry run saying why they were not
    applied: ``refused`` (of ``total``) were, and nothing is applied unless every VM passes."""
    why = f"{len(refused)} of {total} VMs were refused ({first_few(refused)})"
    note = (
        f"not applied: {why}; nothing is applied unless every VM passes, "
        "or the refused ones are asked to be skipped"
    )
    return {
        key: change.model_copy(update={"dry_run": True, "warnings": (*change.warnings, note)})
        for key, change in planned.items()
    }
