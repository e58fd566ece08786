"""Sessions: :func:`connect` and :class:`Hypervisor`, the same API over every backend.

The session owns what must behave identically everywhere: resolving VM names, parsing sizes,
guard rails, alignment, idempotence, dry runs, retries and waiting for a target.

>>> import hvballoon
>>> with hvballoon.connect("fake://seed") as hv:
...     change = hv.set_target("web01", "7GiB", dry_run=True)
...     change.changed, change.dry_run, change.after["target_bytes"] // 2**30
(True, True, 7)
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, cast

from pydantic import SecretStr

from hvballoon import registry
from hvballoon._results import TargetResults
from hvballoon._uri import ParsedURI, parse_uri
from hvballoon._vmindex import VMIndex
from hvballoon.backend import Backend, ConnectOptions, TargetRequest
from hvballoon.errors import (
    AmbiguousVMError,
    BackendError,
    BalloonStalledError,
    GuardRailError,
    Hint,
    HVBalloonError,
    InvalidRequestError,
    InvalidStateError,
    StatsUnavailableError,
    TargetAboveMaximumError,
    TargetBelowFloorError,
    TargetNotObservableWarning,
    VMNotFoundError,
    WaitTimeoutError,
)
from hvballoon.kinds import check_settable
from hvballoon.models import (
    VM,
    Capabilities,
    Change,
    ConfigUpdate,
    HostStats,
    MemoryConfig,
    MemoryStats,
    PowerState,
)
from hvballoon.retry import RetryPolicy
from hvballoon.units import MiB, align, format_size, format_sizes, parse_size

__all__ = ["GuardRails", "Hypervisor", "TargetResults", "VMRef", "connect", "noting_unobservable"]

log = logging.getLogger("hvballoon")

VMRef = str | VM
PASSWORD_ENV = "HVBALLOON_PASSWORD"  # noqa: S105 - a variable name, not a secret
R = TypeVar("R")


class _Resolved(NamedTuple):
    """A ref resolved to a VM: ``name`` when it was a name, ``cached`` when the index answered
    (no look-up in this call), so a fresh read showing another name means the index was stale."""

    vm: VM
    name: str | None
    cached: bool


def _stats_vm(stats: MemoryStats) -> VM:
    return stats.vm


def _config_vm(config: MemoryConfig) -> VM:
    return config.vm


def _pair_vm(pair: tuple[MemoryStats, MemoryConfig]) -> VM:
    return pair[0].vm


#: ``set_config``'s keywords, each a :class:`ConfigUpdate` field's option.
_CONFIG_KEYWORDS = frozenset(o.keyword for o in ConfigUpdate.options())


@dataclass(frozen=True)
class GuardRails:
    """The safety margins :meth:`Hypervisor.set_target` applies unless forced.

    The floor is ``used + max(margin_bytes, margin_fraction × configured)``; stats older than
    ``max_stats_age_seconds`` (or marked stale by the backend) are not trusted for it.
    """

    margin_bytes: int = 256 * MiB
    margin_fraction: float = 0.10
    max_stats_age_seconds: float = 120.0

    def __post_init__(self) -> None:
        if self.margin_bytes < 0 or not 0 <= self.margin_fraction < 1:
            raise InvalidRequestError("guard-rail margins must be >= 0 (fraction below 1)")

    def floor(self, used_bytes: int, configured_bytes: int | None) -> int:
        margin = self.margin_bytes
        if configured_bytes:
            margin = max(margin, int(configured_bytes * self.margin_fraction))
        return used_bytes + margin


@contextmanager
def noting_unobservable() -> Iterator[list[str]]:
    """Collect the :class:`~hvballoon.errors.TargetNotObservableWarning` messages raised in the
    block into a list (instead of printing them), for a front end that shows them its own way;
    other warnings pass through.

    >>> import hvballoon
    >>> with hvballoon.connect("fake://seed?flavor=esxi") as hv, noting_unobservable() as notes:
    ...     _ = hv.wait_for_target("web01")
    >>> "cannot observe 'web01'" in notes[0]
    True
    """
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TargetNotObservableWarning)
        yield notes
    for w in caught:
        if issubclass(w.category, TargetNotObservableWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def connect(
    uri: str,
    *,
    password: str | SecretStr | None = None,
    timeout: float = 30.0,
    retry: RetryPolicy | None = None,
    verify: bool = True,
    ca_file: str | None = None,
    guard_rails: GuardRails | None = None,
    **backend_options: Any,
) -> Hypervisor:
    """Open a session on the hypervisor named by ``uri``.

    The backend is chosen by the URI scheme and imported on first use; a missing one raises
    :class:`~hvballoon.errors.BackendNotInstalledError` naming the ``pip install`` to run.
    ``password`` may also come from the ``HVBALLOON_PASSWORD`` environment variable; it is kept
    as a :class:`~pydantic.SecretStr` and never printed. ``verify=False`` turns TLS certificate
    verification off, explicitly and with a warning. Every remote call gets ``timeout`` seconds.
    """
    parsed = parse_uri(uri)
    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
        raise InvalidRequestError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if password is None and os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    secret = password if isinstance(password, SecretStr) or password is None else SecretStr(password)
    spec = registry.spec_for_scheme(parsed.scheme)
    cls = registry.load_backend(spec.name)
    if not verify:
        msg = f"TLS certificate verification is OFF for {parsed.redacted}: the connection can be intercepted"
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
    opts = ConnectOptions(
        parsed,
        password=secret,
        timeout=float(timeout),
        verify=verify,
        ca_file=ca_file,
        options=backend_options,
    )
    policy = retry if retry is not None else RetryPolicy()
    try:
        backend = policy.call(lambda: cls(opts), what="connect")
    except HVBalloonError as exc:
        exc.with_context(backend=spec.name, uri=parsed.redacted)
        raise
    return Hypervisor(backend, uri=parsed, retry=policy, guard_rails=guard_rails or GuardRails())


class Hypervisor:
    """A session on one hypervisor. Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        backend: Backend,
        *,
        uri: ParsedURI,
        retry: RetryPolicy | None = None,
        guard_rails: GuardRails | None = None,
    ) -> None:
        self._backend = backend
        self._uri = uri
        self.retry = retry or RetryPolicy()
        self.guard_rails = guard_rails or GuardRails()
        self._targets: dict[str, int] = {}
        self._index = VMIndex(ttl_seconds=60.0)
        self._closed = False

    # -- plumbing -----------------------------------------------------------------------

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Hypervisor {self.backend_name} {self.uri}{' closed' if self._closed else ''}>"

    @property
    def uri(self) -> str:
        """The connection URI, redacted."""
        return self._uri.redacted

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def native(self) -> Any:
        """The backend's own client object, for what hvballoon does not cover."""
        return self._backend.native

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can read and change (declared)."""
        return self._backend.capabilities

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._backend.close()

    def _call(self, what: str, fn: Any, vm: str | None = None) -> Any:
        if self._closed:
            raise InvalidStateError("this session is closed", backend=self.backend_name, uri=self.uri)
        try:
            return self.retry.call(fn, what=what)
        except HVBalloonError as exc:
            exc.with_context(backend=self.backend_name, uri=self.uri, vm=vm)
            raise

    # -- knowing the VMs -----------------------------------------------------------------

    @property
    def name_cache_seconds(self) -> float:
        """How long a VM found by *name* is trusted without looking again (default 60 s).

        Every listing and sweep (``list_vms``, ``get_stats()``, ``get_configs()``) feeds the
        session's index of VM names and ids, so naming a VM costs no listing. A name unknown
        to the index, a VM renamed meanwhile or one that vanished makes the session look
        again (natively where the backend can: libvirt by name or UUID, one filtered
        ``Get-VM`` on Hyper-V; else a listing). Power states and figures never come from the
        index: each operation reads them fresh. ``0`` looks every name up again each time.
        """
        return self._index.ttl_seconds

    @name_cache_seconds.setter
    def name_cache_seconds(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise InvalidRequestError(f"name_cache_seconds must be >= 0, got {seconds!r}")
        self._index.ttl_seconds = float(seconds)

    def _lookup(self, refs: Sequence[str]) -> None:
        """Look ``refs`` up on the hypervisor (natively, else by listing) into the index."""
        wanted = list(dict.fromkeys(refs))
        found: list[VM] | None = self._call("lookup_vms", lambda: self._backend.lookup_vms(wanted))
        if found is None:
            self.list_vms()
            return
        self._index.update(found)  # a backend may answer more than asked: remember it all
        for ref in wanted:
            self._index.settle(ref, [v for v in found if v.id == ref or v.name == ref])

    def _pick(self, ref: str) -> VM | HVBalloonError:
        """``ref`` from the index just refreshed: by id, else the one VM of that name."""
        vm = self._index.by_id(ref)
        if vm is not None:
            return vm
        named = self._index.by_name(ref, max_age=None) or []
        if len(named) == 1:
            return named[0]
        if not named:
            return VMNotFoundError(
                f"no VM named or with id {ref!r}", backend=self.backend_name, uri=self.uri, vm=ref
            )
        ids = sorted(v.id for v in named)
        return AmbiguousVMError(
            f"{len(named)} VMs are named {ref!r}; use an id: {', '.join(ids)}",
            backend=self.backend_name,
            uri=self.uri,
            vm=ref,
            details={"candidates": ids},
        )

    def _resolve(self, refs: Sequence[VMRef]) -> list[_Resolved | HVBalloonError]:
        """Each ref as a VM (from the index when it knows it), or its typed error."""
        out: list[_Resolved | HVBalloonError | None] = []
        misses: list[int] = []
        for ref in refs:
            if isinstance(ref, VM):
                out.append(_Resolved(ref, None, cached=True))
            elif not isinstance(ref, str) or not ref:
                out.append(
                    InvalidRequestError(
                        f"a VM is named by a non-empty name or id, got {ref!r}",
                        backend=self.backend_name,
                        uri=self.uri,
                    )
                )
            elif (known := self._index.by_id(ref)) is not None:
                out.append(_Resolved(known, None, cached=True))
            elif (named := self._index.by_name(ref)) is not None and len(named) == 1:
                out.append(_Resolved(named[0], ref, cached=True))
            else:
                misses.append(len(out))
                out.append(None)
        if misses:
            names = [cast(str, refs[i]) for i in misses]
            self._lookup(names)
            for i, ref in zip(misses, names, strict=True):
                picked = self._pick(ref)
                out[i] = (
                    picked if isinstance(picked, HVBalloonError) else _Resolved(picked, ref, cached=False)
                )
        return [r for r in out if r is not None]

    def _read_fresh(
        self, what: str, refs: Sequence[VMRef], fetch: Callable[[list[VM]], list[R]], vm_of: Callable[[R], VM]
    ) -> list[R | HVBalloonError]:
        """One bulk read (``fetch``) of the VMs named by ``refs``: per ref, its row or error.

        A VM the index knew that is gone, or whose name changed, sends the session to look its
        ref up again (once) and read what it names now; a read that still fails is repeated VM
        by VM, so that each ref gets its own answer.
        """
        resolved = self._resolve(refs)
        out: list[R | HVBalloonError | None] = [
            r if isinstance(r, HVBalloonError) else None for r in resolved
        ]
        pending = [i for i, r in enumerate(resolved) if isinstance(r, _Resolved)]

        def again(indices: list[int], cause: VMNotFoundError | None = None) -> list[int]:
            """Look the refs up again; a VM still missing keeps the backend's own word for it
            (``cause``, when it was the only VM read or the one the error names)."""
            lookup = [r if isinstance(r, str) else r.id for r in (refs[i] for i in indices)]
            self._lookup(lookup)
            kept = []
            for i, ref in zip(indices, lookup, strict=True):
                was = cast(_Resolved, resolved[i]).vm
                picked = self._pick(ref)
                if isinstance(picked, HVBalloonError):
                    named = cause is not None and (len(indices) == 1 or cause.vm == was.name)
                    out[i] = cause if named and isinstance(picked, VMNotFoundError) else picked
                else:
                    resolved[i] = _Resolved(picked, ref if isinstance(refs[i], str) else None, cached=False)
                    kept.append(i)
            return kept

        for attempt in range(3):
            if not pending:
                break
            vms = list({r.vm.id: r.vm for r in (cast(_Resolved, resolved[i]) for i in pending)}.values())
            errors: dict[str, HVBalloonError] = {}
            try:
                rows: list[R] = self._call(what, lambda vms=vms: fetch(vms))
            except VMNotFoundError as exc:
                if attempt == 0:
                    pending = again(pending, exc)
                    continue
                rows = []
                for vm in vms:
                    try:
                        rows.extend(self._call(what, lambda vm=vm: fetch([vm]), vm.name))
                    except HVBalloonError as exc:
                        errors[vm.id] = exc
            by_id = {vm_of(row).id: row for row in rows}
            self._index.update(vm_of(row) for row in rows)
            renamed = []
            for i in pending:
                res = cast(_Resolved, resolved[i])
                row = by_id.get(res.vm.id)
                if row is None:
                    out[i] = errors.get(res.vm.id) or VMNotFoundError(
                        f"VM {res.vm.name!r} ({res.vm.id}) no longer exists",
                        backend=self.backend_name,
                        uri=self.uri,
                        vm=res.vm.name,
                    )
                elif res.cached and res.name is not None and vm_of(row).name != res.name:
                    renamed.append(i)  # the index was stale: the name may be another VM's now
                else:
                    out[i] = row
            pending = again(renamed) if renamed else []
        return [r if r is not None else self._unreached(refs[i]) for i, r in enumerate(out)]

    def _unreached(self, ref: VMRef) -> HVBalloonError:
        name = ref.name if isinstance(ref, VM) else str(ref)
        return VMNotFoundError(
            f"VM {name!r} could not be read: it changed name or vanished twice while being read",
            backend=self.backend_name,
            uri=self.uri,
            vm=name,
        )

    @staticmethod
    def _first_error(rows: Sequence[R | HVBalloonError]) -> list[R]:
        for row in rows:
            if isinstance(row, HVBalloonError):
                raise row
        return cast(list[R], list(rows))

    # -- reading ------------------------------------------------------------------------

    def list_vms(self) -> list[VM]:
        """Every VM on the hypervisor."""
        result: list[VM] = self._call("list_vms", self._backend.list_vms)
        self._index.replace(result)
        return result

    def resolve(self, vm: VMRef) -> VM:
        """Find a VM by id, name or :class:`VM`; an ambiguous name lists the candidates.

        The VM comes from the session's index when it knows it (see
        :attr:`name_cache_seconds`): its ``power_state`` may be old. Read stats for a fresh one.
        """
        return self.resolve_many([vm])[0]

    def resolve_many(self, refs: Iterable[VMRef]) -> list[VM]:
        """Like :meth:`resolve` for many refs, with at most one look-up for all the unknown ones;
        the first that matches nothing raises :class:`~hvballoon.errors.VMNotFoundError`."""
        out = []
        for r in self._resolve(list(refs)):
            if isinstance(r, HVBalloonError):
                raise r
            out.append(r.vm)
        return out

    def find_vms(self, refs: Iterable[VMRef]) -> tuple[list[VM], list[str]]:
        """The VMs that ``refs`` name (by id, name or VM, in order), and the names or ids that
        match no VM — for a caller that reports what exists and names what is missing. An
        ambiguous name still raises :class:`~hvballoon.errors.AmbiguousVMError`.

        >>> import hvballoon
        >>> with hvballoon.connect("fake://seed") as hv:
        ...     found, missing = hv.find_vms(["web01", "web99"])
        >>> [v.name for v in found], missing
        (['web01'], ['web99'])
        """
        refs = list(refs)
        found: list[VM] = []
        missing: list[str] = []
        for ref, r in zip(refs, self._resolve(refs), strict=True):
            if isinstance(r, VMNotFoundError):
                missing.append(str(ref))
            elif isinstance(r, HVBalloonError):
                raise r
            else:
                found.append(r.vm)
        return found, missing

    def get_stats(self, vms: VMRef | Sequence[VMRef] | None = None) -> list[MemoryStats]:
        """Memory stats of all VMs (one bulk call), or of the VMs given by name, id or VM."""
        if vms is None:
            result: list[MemoryStats] = self._call("get_stats", self._backend.get_stats)
            self._index.replace(s.vm for s in result)
            return result
        refs = [vms] if isinstance(vms, (str, VM)) else list(vms)
        rows = self._read_fresh("get_stats", refs, self._backend.get_stats, _stats_vm)
        return self._first_error(rows)

    def get_host_stats(self, *, vm_stats: Sequence[MemoryStats] | None = None) -> list[HostStats]:
        """The memory picture of every host behind the URI (a vCenter has many), in one bulk read.

        Physical, free and used memory, swap and page sharing as the hypervisor reports them
        (``None`` where it cannot), and the sums over each host's running VMs: configured
        (what was promised), current, ballooned, and the overcommit ratio. Pass ``vm_stats``, a
        full ``get_stats()`` sweep you already have, to sum it instead of reading the VMs again.

        >>> import hvballoon
        >>> with hvballoon.connect("fake://seed") as hv:
        ...     (host,) = hv.get_host_stats()
        >>> host.physical_bytes // 2**30, host.vm_configured_bytes // 2**30, host.overcommit_ratio
        (120, 160, 1.3333)
        """
        sweep = list(vm_stats) if vm_stats is not None else None
        if sweep is not None and not all(isinstance(s, MemoryStats) for s in sweep):
            raise InvalidRequestError("vm_stats takes the MemoryStats of a get_stats() sweep")
        result: list[HostStats] = self._call("get_host_stats", lambda: self._backend.get_host_stats(sweep))
        return result

    def get_config(self, vm: VMRef) -> MemoryConfig:
        """The VM's memory configuration."""
        (row,) = self._read_fresh(
            "get_config", [vm], lambda vms: [self._backend.get_config(v) for v in vms], _config_vm
        )
        (cfg,) = self._first_error([row])
        return cfg

    def get_configs(self, vms: Sequence[VMRef] | None = None) -> list[MemoryConfig]:
        """Memory configurations of all VMs, or of the VMs given, in one bulk read where the
        backend allows (ESXi: one PropertyCollector read; Hyper-V: one command)."""
        if vms is None:
            result: list[MemoryConfig] = self._call("get_configs", lambda: self._backend.get_configs(None))
            self._index.replace(c.vm for c in result)
            return result
        rows = self._read_fresh("get_configs", list(vms), self._backend.get_configs, _config_vm)
        return self._first_error(rows)

    def vm_capabilities(self, vm: VMRef) -> Capabilities:
        """Capabilities refined for one VM (its mechanism may differ from the backend's, and
        change with its configuration: a VM named by name or id is read fresh for it; a
        :class:`VM` given is taken as it is)."""
        if isinstance(vm, VM):
            return self._backend.vm_capabilities(vm)
        (stats,) = self.get_stats([vm])
        return self._backend.vm_capabilities(stats.vm)

    # -- changing -----------------------------------------------------------------------

    def set_target(
        self,
        vm: VMRef,
        size: int | str,
        *,
        dry_run: bool = False,
        force: bool = False,
        guard_rails: GuardRails | None = None,
    ) -> Change:
        """Move the VM's memory target to ``size`` (absolute, idempotent).

        Refused with a typed error that states the numbers when the target is above the VM's
        maximum (always), below the guest's used memory plus the safety margin, or when the
        guest's usage is unknown or stale, or when the VM's power state is unknown and the target
        would be lowered (all three overridable with ``force=True``; a VM that is known not to
        run has no floor). The refusal names its rule in ``details["rule"]``; the backend's
        hypervisor kind adds its own rules (:mod:`hvballoon.kinds`). The target is
        aligned *up* to the backend's granularity. ``dry_run=True`` computes the
        :class:`Change` and touches nothing. ``guard_rails`` replaces the session's margins for
        this call only (the session's own are untouched, so threads sharing it are safe).
        """
        parse_size(size, what="target")  # a bad size is refused before anything is read
        key = vm.id if isinstance(vm, VM) else vm
        if not isinstance(key, str) or not key:
            raise InvalidRequestError(f"a VM is named by a non-empty name or id, got {vm!r}")
        results = self._set_targets(
            [(key, vm, size)], force=force, dry_run=dry_run, guard_rails=guard_rails, skip_invalid=False
        )
        result = results[key]
        if isinstance(result, HVBalloonError):
            raise result
        return result

    def set_targets(
        self,
        targets: Mapping[str, int | str] | Sequence[tuple[VMRef, int | str]],
        *,
        force: bool = False,
        dry_run: bool = False,
        wait: bool = False,
        guard_rails: GuardRails | None = None,
        skip_invalid: bool = False,
        wait_timeout: float = 60.0,
    ) -> TargetResults:
        """Move many VMs' targets at once: ``{"web01": "6GiB", "web02": "4GiB"}`` (or a list of
        ``(VM or name or id, size)`` pairs).

        Every VM is resolved, read (in one bulk read) and checked by the same guard rails as
        :meth:`set_target` *first*; only then is anything applied, in one bulk call where the
        backend allows (one PowerShell command on Hyper-V, all ``ReconfigVM_Task`` s awaited
        together on ESXi, one worker pass on KVM). When a VM is refused, nothing is applied
        unless ``skip_invalid=True`` asks to apply the others anyway. One VM's failure never
        hides or undoes another's: the answer, a :class:`TargetResults`, has one result per
        VM — its :class:`Change` or its typed error — and ``.error`` says what the whole came
        to (:class:`~hvballoon.errors.PartialChangeError` when some VMs changed and others did
        not). ``wait=True`` then waits, up to ``wait_timeout`` seconds, until every changed
        VM's memory reaches its target; a VM whose mechanism cannot be observed gets a warning
        instead.

        >>> import hvballoon
        >>> with hvballoon.connect("fake://seed") as hv:
        ...     res = hv.set_targets({"web01": "7GiB", "web02": "8GiB"})
        ...     res.ok, res["web01"].after["target_bytes"] // 2**30, sorted(res.made)
        (True, 7, ['web01', 'web02'])
        """
        if self._closed:
            raise InvalidStateError("this session is closed", backend=self.backend_name, uri=self.uri)
        items = self._target_items(targets)
        if wait and not (isinstance(wait_timeout, (int, float)) and wait_timeout > 0):
            raise InvalidRequestError(
                f"wait_timeout must be a positive number of seconds, got {wait_timeout!r}"
            )
        return self._set_targets(
            items,
            force=force,
            dry_run=dry_run,
            guard_rails=guard_rails,
            skip_invalid=skip_invalid,
            wait_timeout=float(wait_timeout) if wait else None,
        )

    @staticmethod
    def _target_items(targets: Any) -> list[tuple[str, VMRef, int | str]]:
        if isinstance(targets, Mapping):
            pairs = list(targets.items())
        elif isinstance(targets, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in targets
        ):
            pairs = [tuple(p) for p in targets]
        else:
            raise InvalidRequestError(
                "set_targets takes a mapping {vm: size} or a list of (vm, size) pairs, "
                f"got {type(targets).__name__}"
            )
        if not pairs:
            raise InvalidRequestError("set_targets needs at least one VM")
        items: list[tuple[str, VMRef, int | str]] = []
        seen: set[str] = set()
        for ref, size in pairs:
            key = ref.id if isinstance(ref, VM) else ref
            if not isinstance(key, str) or not key:
                raise InvalidRequestError(f"a VM is named by a non-empty name or id, got {ref!r}")
            if key in seen:
                raise InvalidRequestError(f"VM {key!r} is named twice: give each VM once")
            seen.add(key)
            items.append((key, ref, size))
        return items

    def _set_targets(
        self,
        items: list[tuple[str, VMRef, int | str]],
        *,
        force: bool,
        dry_run: bool,
        guard_rails: GuardRails | None,
        skip_invalid: bool,
        wait_timeout: float | None = None,
    ) -> TargetResults:
        rails = guard_rails if guard_rails is not None else self.guard_rails
        results: dict[str, Change | HVBalloonError] = {}
        requested: dict[str, int] = {}
        for key, _ref, size in items:
            try:
                requested[key] = parse_size(size, what=f"target of {key}" if len(items) > 1 else "target")
            except HVBalloonError as exc:
                results[key] = exc.with_context(backend=self.backend_name, uri=self.uri, vm=key)
        keys = [key for key, _, _ in items if key not in results]
        ref_of = {key: ref for key, ref, _ in items}
        # 1. every VM resolved, read fresh (one bulk read) and checked before anything is sent
        try:
            reads = self._read_fresh(
                "get_stats_and_configs",
                [ref_of[k] for k in keys],
                self._backend.get_stats_and_configs,
                _pair_vm,
            )
        except HVBalloonError as exc:
            reads = [exc] * len(keys)
        named: dict[str, list[str]] = {}
        for key, read in zip(keys, reads, strict=True):
            if not isinstance(read, HVBalloonError):
                named.setdefault(read[0].vm.id, []).append(key)
        planned: dict[str, tuple[Change, int]] = {}
        for key, read in zip(keys, reads, strict=True):
            if isinstance(read, HVBalloonError):
                results[key] = read
                continue
            stats, config = read
            twice = named[stats.vm.id]
            if len(twice) > 1:
                results[key] = InvalidRequestError(
                    f"VM {stats.vm.name!r} is named {len(twice)} times ({', '.join(twice)}): give each VM once",
                    backend=self.backend_name,
                    uri=self.uri,
                    vm=stats.vm.name,
                )
                continue
            try:
                change, target = self._plan_target(stats, config, requested[key], force, rails, dry_run)
            except HVBalloonError as exc:
                results[key] = exc.with_context(backend=self.backend_name, uri=self.uri, vm=stats.vm.name)
            else:
                results[key] = change
                planned[key] = (change, target)
        order = [key for key, _, _ in items]
        refused = [key for key in order if isinstance(results[key], HVBalloonError)]
        if refused and not skip_invalid and planned:
            why = f"{len(refused)} of {len(order)} VMs were refused ({', '.join(refused)})"
            for key, (change, _) in planned.items():
                results[key] = change.model_copy(
                    update={
                        "dry_run": True,
                        "warnings": (
                            *change.warnings,
                            f"not applied: {why}; nothing is applied unless every VM passes, "
                            "or the refused ones are asked to be skipped",
                        ),
                    }
                )
            return self._results(results, order, applied=False)
        if dry_run:
            return self._results(results, order, applied=False)
        # 2. apply, in one bulk call (retryable failures are sent again, bounded)
        moves = {k: (c, t) for k, (c, t) in planned.items() if c.changed}
        failures = self._apply_many({k: TargetRequest(c.vm, t) for k, (c, t) in moves.items()})
        made = {k for k in moves if k not in failures}
        for key, error in failures.items():
            results[key] = error
        for key, (change, target) in planned.items():
            if key not in failures:
                self._targets[change.vm.id] = target
                if key in made:
                    log.info(
                        "set target of %s to %s (%s)",
                        change.vm.name,
                        format_size(target),
                        change.mechanism.value,
                    )
        stats_reached: dict[str, MemoryStats] = {}
        if wait_timeout is not None:
            stats_reached = self._wait_changes(
                results, {k: planned[k] for k in planned if k not in failures}, wait_timeout
            )
        return self._results(results, order, applied=True, made=made, stats=stats_reached)

    def _results(
        self,
        results: dict[str, Change | HVBalloonError],
        order: list[str],
        *,
        applied: bool,
        made: set[str] | None = None,
        stats: dict[str, MemoryStats] | None = None,
    ) -> TargetResults:
        return TargetResults(
            {k: results[k] for k in order},
            applied=applied,
            made=made,
            stats=stats,
            backend=self.backend_name,
            uri=self.uri,
        )

    def _plan_target(
        self,
        stats: MemoryStats,
        config: MemoryConfig,
        requested: int,
        force: bool,
        rails: GuardRails,
        dry_run: bool,
    ) -> tuple[Change, int]:
        """The guard rails and the backend's rules on one target, from figures read just now
        (the VM's power state included): the :class:`Change`, or the typed refusal."""
        vm = stats.vm
        caps = self._backend.vm_capabilities(vm)
        running = vm.power_state is PowerState.RUNNING
        self._with_context(lambda: check_settable(caps, ["target"], vm), vm)
        target = align(requested, caps.alignment_bytes, "up")
        maximum = self._backend.target_ceiling(vm, stats, config)
        numbers: dict[str, Any] = {"requested_bytes": requested, "target_bytes": target}
        if maximum is not None and target > maximum:
            shown_target, shown_max = format_sizes(target, maximum)
            if requested != target:  # say what alignment did to the size asked
                note = f"{requested:,} bytes asked, aligned up to {format_size(caps.alignment_bytes, exact=True)}"
                shown_target = (
                    f"{shown_target[:-1]}; {note})"
                    if shown_target.endswith(")")
                    else f"{shown_target} ({note})"
                )
            raise TargetAboveMaximumError(
                f"target {shown_target} is above the VM's maximum {shown_max}",
                vm=vm.name,
                backend=self.backend_name,
                uri=self.uri,
                details={**numbers, "maximum_bytes": maximum, "rule": "target_above_maximum"},
            )
        before = stats.target_bytes if stats.target_bytes is not None else stats.current_bytes
        warnings_: list[str] = []
        if vm.power_state is PowerState.UNKNOWN:
            # a guard rail is never skipped because the state is unknown: lowering needs force
            lowering = before is None or target < before
            if lowering and not force:
                raise GuardRailError(
                    f"refusing to lower the target of {vm.name!r}: its power state is unknown "
                    f"({vm.extra.get('state') or 'not reported'}), so whether a guest is using the "
                    "memory is unknown",
                    hint=Hint("force"),
                    vm=vm.name,
                    backend=self.backend_name,
                    uri=self.uri,
                    details={**numbers, "rule": "unknown_power_state", "before_bytes": before},
                )
            if lowering:
                warnings_.append(f"forced while the power state of {vm.name!r} is unknown")
        elif not running:
            # no guest is using memory: the floor applies when it runs (and the guard rails then)
            warnings_.append(f"{vm.name!r} is {vm.power_state.value}: no usage floor applies")
        elif not force:
            self._check_floor(vm, target, stats, numbers, rails)
        else:
            floor = self._floor_or_none(stats, rails)
            if floor is not None and target < floor:
                shown_floor, shown_used = format_sizes(floor, stats.used_bytes)
                warnings_.append(
                    f"forced below the floor {shown_floor} (guest uses {shown_used}): the guest may swap or crash"
                )
        self._backend.check_target(vm, target, stats, config)
        change = Change(
            vm=vm,
            operation="set_target",
            changed=before != target,
            dry_run=dry_run,
            forced=force,
            mechanism=caps.mechanism,
            before={"target_bytes": before},
            after={"target_bytes": target},
            requested={"target_bytes": requested},
            warnings=tuple(warnings_),
        )
        return change, target

    def _apply_many(self, moves: dict[str, TargetRequest]) -> dict[str, HVBalloonError]:
        """Send the moves in bulk; the ones that fail retryably are sent again (they are
        absolute), within the retry policy. Returns the errors of the ones that failed."""
        failures: dict[str, HVBalloonError] = {}
        pending = dict(moves)
        delays = self.retry.delays()
        attempt = 0
        while pending:
            keys = list(pending)
            batch = [pending[k] for k in keys]
            try:
                answers: list[HVBalloonError | None] = self._call(
                    "set_target", lambda batch=batch: self._backend.apply_targets(batch)
                )
                if len(answers) != len(keys):
                    raise BackendError(
                        f"the {self.backend_name} backend answered {len(answers)} results for {len(keys)} targets",
                        backend=self.backend_name,
                        uri=self.uri,
                    )
            except HVBalloonError as exc:
                answers = [exc] * len(keys)
            again: dict[str, TargetRequest] = {}
            for key, answer in zip(keys, answers, strict=True):
                if answer is None:
                    failures.pop(key, None)
                    continue
                answer.with_context(backend=self.backend_name, uri=self.uri, vm=pending[key].vm.name)
                failures[key] = answer
                if answer.retryable:
                    again[key] = pending[key]
            if not again or attempt >= len(delays):
                break
            log.info("sending %d target(s) again after a retryable failure", len(again))
            self.retry.sleep(delays[attempt])
            attempt += 1
            pending = again
        return failures

    def _wait_changes(
        self,
        results: dict[str, Change | HVBalloonError],
        planned: dict[str, tuple[Change, int]],
        timeout: float,
    ) -> dict[str, MemoryStats]:
        """Wait for every applied target the backend can observe; warn about the others."""
        goals: dict[str, tuple[VM, int, int]] = {}
        unobservable: dict[str, VM] = {}
        for key, (change, target) in planned.items():
            caps = self._backend.vm_capabilities(change.vm)
            if not caps.target_observable:
                # as wait_for_target: applied, said so, and its stats right after the change
                results[key] = change.model_copy(
                    update={"warnings": (*change.warnings, self._unobservable(change.vm, caps))}
                )
                unobservable[key] = change.vm
                continue
            goals[key] = (change.vm, target, max(caps.alignment_bytes, 2 * MiB, target // 200))
        reached: dict[str, MemoryStats] = {}
        if unobservable:
            now = self._await_read(list(unobservable.values()))
            reached.update(
                (k, st) for k, st in zip(unobservable, now, strict=True) if isinstance(st, MemoryStats)
            )
        for key, outcome in self._await(goals, timeout=timeout, poll_interval=1.0, stall_after=None).items():
            if isinstance(outcome, HVBalloonError):
                outcome.details.setdefault("change", cast(Change, results[key]).model_dump(mode="json"))
                results[key] = outcome
            else:
                reached[key] = outcome
        return reached

    def _floor_or_none(self, stats: MemoryStats, rails: GuardRails) -> int | None:
        used = stats.used_bytes
        if used is None:
            return None
        return rails.floor(used, stats.configured_bytes)

    def _check_floor(
        self, vm: VM, target: int, stats: MemoryStats, numbers: dict[str, Any], rails: GuardRails
    ) -> None:
        used = stats.used_bytes
        age = stats.guest_report_age_seconds
        too_old = age is not None and age > rails.max_stats_age_seconds
        if used is None or stats.stale or too_old:
            why = "has not reported its memory use" if used is None else "reported stale figures"
            if used is not None and age is not None:
                why += f" (last report {age:.0f} s ago)"
            raise StatsUnavailableError(
                f"refusing to set a target for {vm.name!r}: the guest {why}, so the safe floor is unknown",
                hint=Hint("fresh_stats"),
                vm=vm.name,
                backend=self.backend_name,
                uri=self.uri,
                details={**numbers, "guest_report_age_seconds": age, "rule": "stats_unavailable"},
            )
        floor = rails.floor(used, stats.configured_bytes)
        if target < floor:
            margin = floor - used
            shown_target, shown_floor = format_sizes(target, floor)
            raise TargetBelowFloorError(
                f"target {shown_target} for {vm.name!r} is below the safe floor "
                f"{shown_floor} (guest uses {format_size(used)} + margin {format_size(margin)}): "
                "the guest would swap or crash",
                hint=Hint("force"),
                vm=vm.name,
                backend=self.backend_name,
                uri=self.uri,
                details={
                    **numbers,
                    "used_bytes": used,
                    "margin_bytes": margin,
                    "floor_bytes": floor,
                    "rule": "below_floor",
                },
            )

    def _with_context(self, fn: Any, vm: VM) -> Any:
        """Run a local check; its error gets the session's context (backend, URI, VM)."""
        try:
            return fn()
        except HVBalloonError as exc:
            exc.with_context(backend=self.backend_name, uri=self.uri, vm=vm.name)
            raise

    def set_config(
        self,
        vm: VMRef,
        *,
        startup: int | str | None = None,
        minimum: int | str | None = None,
        maximum: int | str | None = None,
        dynamic: bool | None = None,
        buffer_percent: int | None = None,
        priority: int | None = None,
        reservation: int | str | None = None,
        limit: int | str | None = None,
        shares: int | None = None,
        shares_level: str | None = None,
        memory_reservation_lock: bool | None = None,
        balloon_cap: int | str | None = None,
        deflate_on_oom: bool | None = None,
        stats_period: int | None = None,
        dry_run: bool = False,
    ) -> Change:
        """Change the VM's memory configuration (only the fields given; absolute, idempotent).

        Sizes accept the same spellings as :meth:`set_target`; ``limit="unlimited"`` removes an
        ESXi limit; ``shares_level`` is ``low``, ``normal``, ``high`` or ``custom`` (ESXi).
        Fields the backend cannot change (or not in the VM's power state), and changes its
        hypervisor kind refuses (a range that contradicts itself, a live-change rule, …), raise a
        typed error naming the rule in ``details["rule"]`` before anything is sent. The
        :class:`Change` also lists what the hypervisor changes with a field (e.g. ESXi's share
        count for a level).

        The keywords are the options declared on :class:`~hvballoon.models.ConfigUpdate`'s
        fields (what each sets and accepts: ``ConfigUpdate.options()``); they are spelled out
        here for type checkers and editors, and a test holds this signature to the declaration.
        """
        given = {k: v for k, v in locals().items() if k in _CONFIG_KEYWORDS}  # the keywords above
        update = ConfigUpdate.from_keywords(given)
        wanted = update.fields()
        if not wanted:
            raise InvalidRequestError("set_config needs at least one field to change")
        # read first: the live rules depend on the power state, which must be fresh
        current = self.get_config(vm)
        target_vm = current.vm
        caps = self._backend.vm_capabilities(target_vm)
        changes: dict[str, Any] = self._call(
            "check_config", lambda: self._backend.plan_config(target_vm, wanted, current), target_vm.name
        )
        before = {k: getattr(current, k) for k in (*wanted, *changes)}
        change = Change(
            vm=target_vm,
            operation="set_config",
            changed=bool(changes),
            dry_run=dry_run,
            mechanism=caps.mechanism,
            before=before,
            after={**before, **changes},
            requested=wanted,
        )
        if changes and not dry_run:
            try:
                self._call(
                    "set_config",
                    lambda: self._backend.apply_config(target_vm, changes, current),
                    target_vm.name,
                )
            finally:
                # what the index knows of the VM (e.g. Hyper-V's Dynamic Memory flag) may be old now
                self._index.forget([target_vm.id])
            log.info("changed memory config of %s: %s", target_vm.name, sorted(changes))
        return change

    def wait_for_target(
        self,
        vm: VMRef,
        *,
        target: int | str | None = None,
        timeout: float = 60.0,
        tolerance: int | str | None = None,
        poll_interval: float = 1.0,
        stall_after: float | None = None,
    ) -> MemoryStats:
        """Poll until the VM's memory reaches its target; returns the stats on arrival.

        The target is ``target`` if given, else the last one this session set, else what the
        backend reports. Raises :class:`~hvballoon.errors.BalloonStalledError` (with the figure
        reached) when the memory stops moving short of the target for ``stall_after`` seconds
        (default: 5 polls, at least 5 s) — a real balloon stalls at what the guest can free and
        the hypervisor reports no error — and :class:`~hvballoon.errors.WaitTimeoutError` when
        it is still moving at ``timeout``. If the VM vanishes (a guest crashed by
        over-inflation), :class:`~hvballoon.errors.VMNotFoundError` says so.

        Where the backend cannot observe a target being reached (its capabilities say
        ``target_observable=False``: an ESXi limit, Hyper-V Dynamic Memory), it returns the
        current stats at once with a :class:`~hvballoon.errors.TargetNotObservableWarning`: the
        target was applied, and there is nothing to wait for. The CLI and the Ansible modules
        do the same (warn, succeed).
        """
        if timeout <= 0 or poll_interval <= 0:
            raise InvalidRequestError("timeout and poll_interval must be positive")
        target_vm = self.resolve(vm)
        caps = self._backend.vm_capabilities(target_vm)
        if not caps.target_observable:
            msg = self._unobservable(target_vm, caps)
            log.info(msg)
            warnings.warn(
                TargetNotObservableWarning(
                    msg, vm=target_vm.name, backend=self.backend_name, mechanism=caps.mechanism.value
                ),
                stacklevel=2,
            )
            return self._wait_stats(target_vm)
        if target is not None:
            goal = align(parse_size(target, what="target"), caps.alignment_bytes, "up")
        elif target_vm.id in self._targets:
            goal = self._targets[target_vm.id]
        else:
            (stats,) = self._await_read([target_vm])
            if isinstance(stats, HVBalloonError):
                raise stats
            if stats.target_bytes is None:
                raise InvalidRequestError(f"no target known for {target_vm.name!r}: pass target=")
            goal = stats.target_bytes
        tol = (
            parse_size(tolerance, what="tolerance")
            if tolerance is not None
            else max(caps.alignment_bytes, 2 * MiB, goal // 200)
        )
        outcome = self._await(
            {target_vm.id: (target_vm, goal, tol)},
            timeout=timeout,
            poll_interval=poll_interval,
            stall_after=stall_after,
        )[target_vm.id]
        if isinstance(outcome, HVBalloonError):
            raise outcome
        return outcome

    def _unobservable(self, vm: VM, caps: Capabilities) -> str:
        return (
            f"the {caps.backend} backend cannot observe {vm.name!r} reaching a "
            f"{caps.mechanism.value} target (the hypervisor moves the memory within it on its "
            "own): the target is applied; not waiting"
        )

    def _wait_stats(self, vm: VM) -> MemoryStats:
        (stats,) = self._await_read([vm])
        if isinstance(stats, HVBalloonError):
            raise stats
        return stats

    def _await_read(self, vms: list[VM]) -> list[MemoryStats | HVBalloonError]:
        """Fresh stats of ``vms`` for a wait (one bulk read; VM by VM if one vanished)."""
        try:
            stats: list[MemoryStats] = self._call("get_stats", lambda: self._backend.get_stats(vms))
            by_id = {s.vm.id: s for s in stats}
            if all(vm.id in by_id for vm in vms):
                return [by_id[vm.id] for vm in vms]
        except VMNotFoundError:
            pass
        out: list[MemoryStats | HVBalloonError] = []
        for vm in vms:
            try:
                one: list[MemoryStats] = self._call(
                    "get_stats", lambda vm=vm: self._backend.get_stats([vm]), vm.name
                )
                if not one:
                    raise VMNotFoundError(f"no stats for VM {vm.name!r}: it may have vanished", vm=vm.name)
                out.append(one[0])
            except VMNotFoundError as exc:
                exc.with_context(backend=self.backend_name, uri=self.uri, vm=vm.name)
                exc.message = (
                    f"VM {vm.name!r} vanished while waiting for its target: "
                    "the guest may have crashed (over-inflated balloon?)"
                )
                out.append(exc)
        return out

    def _await(
        self,
        goals: Mapping[str, tuple[VM, int, int]],
        *,
        timeout: float,
        poll_interval: float,
        stall_after: float | None,
    ) -> dict[str, MemoryStats | HVBalloonError]:
        """Poll (one bulk read per round) until each VM's memory is within its tolerance of its
        goal; a VM whose memory stops moving short of it for ``stall_after`` seconds stalled,
        one still moving at ``timeout`` timed out. ``goals``: key → (VM, goal, tolerance)."""
        stall_after = stall_after if stall_after is not None else max(5 * poll_interval, 5.0)
        clock, sleep = self._backend.monotonic, self._backend.sleep
        start = clock()
        done: dict[str, MemoryStats | HVBalloonError] = {}
        moved: dict[str, tuple[float, int | None]] = {}
        pending = dict(goals)
        while pending:
            keys = list(pending)
            now = clock()
            for key, stats in zip(keys, self._await_read([pending[k][0] for k in keys]), strict=True):
                vm, goal, tol = pending[key]
                if isinstance(stats, HVBalloonError):
                    done[key] = stats
                    continue
                current = stats.current_bytes
                if current is not None and abs(current - goal) <= tol:
                    done[key] = stats
                    continue
                last_at, last_value = moved.get(key, (start, None))
                if current is not None and (last_value is None or abs(current - last_value) > tol // 2):
                    last_at, last_value = (now if key in moved else start), current
                moved[key] = (last_at, last_value)
                details = {
                    "target_bytes": goal,
                    "reached_bytes": current,
                    "tolerance_bytes": tol,
                    "elapsed_seconds": round(now - start, 3),
                    "stats": stats.model_dump(mode="json"),
                }
                shown_current, shown_goal = format_sizes(current, goal)
                if now - last_at >= stall_after:
                    done[key] = BalloonStalledError(
                        f"the memory of {vm.name!r} stalled at {shown_current} "
                        f"short of the target {shown_goal}: the guest cannot free more "
                        "(it may be about to swap or run out of memory)",
                        vm=vm.name,
                        backend=self.backend_name,
                        uri=self.uri,
                        details=details,
                    )
                elif now - start >= timeout:
                    done[key] = WaitTimeoutError(
                        f"the memory of {vm.name!r} was still moving after {timeout:g} s "
                        f"({shown_current} of target {shown_goal})",
                        vm=vm.name,
                        backend=self.backend_name,
                        uri=self.uri,
                        details=details,
                    )
            pending = {k: v for k, v in pending.items() if k not in done}
            if pending:
                sleep(min(poll_interval, max(0.0, timeout - (clock() - start))))
        return done
