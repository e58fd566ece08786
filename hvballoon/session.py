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

import functools
import inspect
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from pydantic import SecretStr

from hvballoon import registry
from hvballoon._bulk import _BulkTargets
from hvballoon._bulkconfig import _BulkConfigs, _config_vm
from hvballoon._guardrails import GuardRails
from hvballoon._modelkeys import suggest
from hvballoon._results import TargetResults, TargetsInterrupted
from hvballoon._sessioncore import R, VMRef
from hvballoon._uri import parse_uri
from hvballoon._waiting import idle, noting_unobservable
from hvballoon.backend import ConnectOptions
from hvballoon.errors import (
    Hint,
    HVBalloonError,
    InvalidRequestError,
    InvalidStateError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.kinds._base import withheld_why
from hvballoon.marks import Marks
from hvballoon.models import (
    VM,
    Capabilities,
    Change,
    ConfigUpdate,
    HostStats,
    MemoryConfig,
    MemoryStats,
)
from hvballoon.retry import RetryPolicy
from hvballoon.units import MiB, align, parse_typed_target, positive_seconds, true_or_false

__all__ = [
    "GuardRails",
    "Hypervisor",
    "TargetResults",
    "TargetsInterrupted",
    "VMRef",
    "connect",
    "noting_unobservable",
]

log = logging.getLogger("hvballoon")

P = ParamSpec("P")
T = TypeVar("T")

PASSWORD_ENV = "HVBALLOON_PASSWORD"  # noqa: S105 - a variable name, not a secret


def _stats_vm(stats: MemoryStats) -> VM:
    return stats.vm


def _refs(refs: VMRef | Iterable[VMRef], *, call: str, arg: str) -> list[VMRef]:
    """The refs of a read: one name, id or :class:`VM` given alone is one ref (a string is
    never taken as a sequence of one-letter names). Anything else that is not a collection of
    refs (``42``, ``b"web01"``) is a typed error, not Python's own from deep inside; so is a
    mapping (``get_stats({"web01": "6GiB"})``, a bulk change's argument given to a read), which
    would be read as its keys."""
    if isinstance(refs, (str, VM)):
        return [refs]
    if isinstance(refs, (bytes, bytearray, Mapping)) or not isinstance(refs, Iterable):
        raise InvalidRequestError(
            f"{call}() {arg}: VMs are named by a name, an id or a VM, or a list of them "
            f"(e.g. 'web01' or ['web01', 'web02']), got {type(refs).__name__}"
            + (" (a mapping: give its VMs as a list, e.g. list(d))" if isinstance(refs, Mapping) else "")
        )
    return list(refs)


def _once(rows: list[R], vm_of: Callable[[R], VM]) -> list[R]:
    """``rows`` with one row per VM, the first: a VM named twice in a read is reported once."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if vm_of(row).id not in seen:
            seen.add(vm_of(row).id)
            out.append(row)
    return out


#: A mark's key: hvballoon's own namespace only, so a mark can never set another of the VM's
#: settings (an ESXi extraConfig key such as sched.mem.maxmemctl changes how the VM runs).
_MARK_KEY = re.compile(r"^hvballoon\.[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")
_MARK_VALUE = re.compile(r"^[\x20-\x7e]{1,255}$")


def _keywords(method: Callable[P, T]) -> Callable[P, T]:
    """``method`` refusing a keyword it does not take with an
    :class:`~hvballoon.errors.InvalidRequestError` that names it, says what is accepted and
    what was meant (``set_config("web01", minimun="2GiB")``), before anything is read or changed
    — not Python's ``TypeError``; and a flag (a keyword whose default is ``True`` or ``False``:
    ``dry_run``, ``force``, …) given anything but a bool (``dry_run=None`` or ``""`` would be
    read as false and change the VM). The signature stays as written, for type checkers."""
    params = inspect.signature(method).parameters
    accepted = [
        n
        for n, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
        or (p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and n != "self")
    ]
    call = method.__name__
    flags = {n for n, p in params.items() if isinstance(p.default, bool)}

    @functools.wraps(method)
    def checked(*args: P.args, **kwargs: P.kwargs) -> T:
        unknown = [k for k in kwargs if k not in params or k == "self"]
        if unknown:
            named = ", ".join(f"{k}{suggest(k, accepted)}" for k in unknown)
            raise InvalidRequestError(
                f"{call}() takes no keyword {named}; accepted: {', '.join(accepted)}",
                details={"unknown": unknown, "accepted": accepted},
            )
        for name in flags.intersection(kwargs):
            true_or_false(kwargs[name], what=name)
        return method(*args, **kwargs)

    return checked


#: ``set_config``'s keywords, each a :class:`ConfigUpdate` field's option.
_CONFIG_KEYWORDS = frozenset(o.keyword for o in ConfigUpdate.options())


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
    as a :class:`~pydantic.SecretStr` and never printed. An empty password (``""``) is refused
    whatever the backend, before anything is opened: leave it out where the hypervisor takes
    none; an empty ``HVBALLOON_PASSWORD`` is no password, and a backend that needs one says so. ``verify=False`` turns TLS certificate
    verification off, explicitly and with a warning. Every remote call gets ``timeout`` seconds
    (a positive number, at most :data:`~hvballoon.units.MAX_SECONDS`). ``retry`` is a
    :class:`~hvballoon.retry.RetryPolicy` and ``guard_rails`` a
    :class:`~hvballoon.GuardRails`; anything else is an
    :class:`~hvballoon.errors.InvalidRequestError`, raised before anything is opened.
    """
    parsed = parse_uri(uri)
    timeout = positive_seconds(timeout, what="timeout")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidRequestError(f"retry takes a RetryPolicy, got {type(retry).__name__}")
    if guard_rails is not None and not isinstance(guard_rails, GuardRails):
        raise InvalidRequestError(f"guard_rails takes a GuardRails, got {type(guard_rails).__name__}")
    true_or_false(verify, what="verify")  # verify=None or "" would be read as false: TLS verification off
    if password is not None and not isinstance(password, (str, SecretStr)):
        raise InvalidRequestError(f"password takes a string or a SecretStr, got {type(password).__name__}")
    if ca_file is not None and not isinstance(ca_file, (str, os.PathLike)):
        raise InvalidRequestError(f"ca_file takes the path of a CA bundle, got {type(ca_file).__name__}")
    if password is not None and not (
        password.get_secret_value() if isinstance(password, SecretStr) else password
    ):
        # every backend that logs in refuses an empty password only after connecting (or, for
        # KVM, hands it to libvirt's credential callback): say so before anything is opened
        raise InvalidRequestError(
            "password is empty: give the password, or leave password out (None) where the "
            "hypervisor takes none",
            uri=parsed.redacted,
            hint=Hint("password"),
        )
    empty_env = password is None and os.environ.get(PASSWORD_ENV) == ""
    if password is None and os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    secret = password if isinstance(password, SecretStr) or password is None else SecretStr(password)
    spec = registry.spec_for_scheme(parsed.scheme)
    cls = registry.load_backend(spec.name)
    unknown = sorted(k for k in backend_options if k not in cls.option_names)
    if unknown:
        # the backend would refuse them too; here a misspelt keyword of connect() itself
        # (timout=) is also named for what it was meant to be
        own = [n for n, p in inspect.signature(connect).parameters.items() if p.kind is p.KEYWORD_ONLY]
        named = ", ".join(f"{k}{suggest(k, [*own, *cls.option_names])}" for k in unknown)
        raise InvalidRequestError(
            f"unknown option(s) for the {spec.name} backend: {named}; accepted: "
            f"{', '.join(sorted(cls.option_names)) or 'none'}, and connect()'s own {', '.join(own)}",
            backend=spec.name,
            uri=parsed.redacted,
            details={"unknown": unknown, "accepted": sorted(cls.option_names)},
        )
    if not verify:
        msg = f"TLS certificate verification is OFF for {parsed.redacted}: the connection can be intercepted"
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
    opts = ConnectOptions(
        parsed,
        password=secret,
        timeout=timeout,
        verify=verify,
        ca_file=ca_file,
        options=backend_options,
    )
    policy = retry if retry is not None else RetryPolicy()
    try:
        backend = policy.call(lambda: cls(opts), what="connect")
    except HVBalloonError as exc:
        exc.with_context(backend=spec.name, uri=parsed.redacted)
        if empty_env and exc.hint is not None and exc.hint.kind == "password":
            # "set HVBALLOON_PASSWORD" to someone who did, to $UNSET_VARIABLE, would mislead
            exc.message = f"{exc.message} ({PASSWORD_ENV} is set but empty, so no password was given)"
            exc.args = (exc.message,)
        raise
    return Hypervisor(backend, uri=parsed, retry=policy, guard_rails=guard_rails or GuardRails())


class Hypervisor(_BulkTargets, _BulkConfigs):
    """A session on one hypervisor. Use it as a context manager, or call :meth:`close`."""

    # The public API is here; the machinery, one concern a module, is inherited:
    # _sessioncore (state, backend calls, the VM index and fresh reads), _planning (guard rails
    # and a backend's rules on one target), _waiting (polling until targets are reached) and
    # _bulk (plan every VM, apply in one bulk call, wait), the GuardRails margins in _guardrails.

    # -- plumbing -----------------------------------------------------------------------

    def __enter__(self) -> Hypervisor:
        if self._closed:  # at the ``with``, not at its first call
            raise InvalidStateError(
                "this session is closed and cannot be reopened: connect() again",
                backend=self.backend_name,
                uri=self.uri,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Hypervisor {self.backend_name} {self.uri}{' closed' if self._closed else ''}>"

    # -- reading ------------------------------------------------------------------------

    def resolve(self, vm: VMRef) -> VM:
        """Find a VM by id, name or :class:`VM`; an ambiguous name lists the candidates.

        The VM comes from the session's index when it knows it (see
        :attr:`name_cache_seconds`): its ``power_state`` may be old. Read stats for a fresh one.
        """
        return self.resolve_many([vm])[0]

    def resolve_many(self, refs: VMRef | Iterable[VMRef]) -> list[VM]:
        """Like :meth:`resolve` for many refs, with at most one look-up for all the unknown ones;
        the first that matches nothing raises :class:`~hvballoon.errors.VMNotFoundError`. One
        name or :class:`VM` given alone is one ref, never a sequence of letters."""
        out = []
        for r in self._resolve(_refs(refs, call="resolve_many", arg="refs")):
            if isinstance(r, HVBalloonError):
                raise r
            out.append(r.vm)
        return out

    def find_vms(self, refs: VMRef | Iterable[VMRef]) -> tuple[list[VM], list[str]]:
        """The VMs that ``refs`` name (by id, name or VM, in order), and the names or ids that
        match no VM — for a caller that reports what exists and names what is missing. Each VM
        is found once however often it is named (by name and by id, say), each missing ref
        named once. An ambiguous name still raises :class:`~hvballoon.errors.AmbiguousVMError`.

        >>> import hvballoon
        >>> with hvballoon.connect("fake://seed") as hv:
        ...     found, missing = hv.find_vms(["web01", "web99"])
        >>> [v.name for v in found], missing
        (['web01'], ['web99'])
        """
        refs = _refs(refs, call="find_vms", arg="refs")
        found: list[VM] = []
        missing: list[str] = []
        # sets beside the lists: a check per ref against every VM found so far made naming
        # 10,000 VMs cost 50 million comparisons
        found_ids: set[str] = set()
        named_missing: set[str] = set()
        for ref, r in zip(refs, self._resolve(refs), strict=True):
            if isinstance(r, VMNotFoundError):
                if str(ref) not in named_missing:
                    named_missing.add(str(ref))
                    missing.append(str(ref))
            elif isinstance(r, HVBalloonError):
                raise r
            elif r.vm.id not in found_ids:
                found_ids.add(r.vm.id)
                found.append(r.vm)
        return found, missing

    @_keywords
    def get_stats(
        self, vms: VMRef | Sequence[VMRef] | None = None, *, retry: RetryPolicy | None = None
    ) -> list[MemoryStats]:
        """Memory stats of all VMs (one bulk call), or of the VMs given by name, id or VM (one
        alone, or a list of them; anything else is an :class:`~hvballoon.errors.InvalidRequestError`).

        A VM named twice (``["web01", "web01"]``, or by name and by id) is read and reported
        once, where it was first named: a read answers one row per VM.

        ``retry`` replaces the session's :class:`~hvballoon.retry.RetryPolicy` for this call
        only: ``RetryPolicy(max_attempts=1)`` makes one attempt, for a caller that retries
        itself and acts between the attempts.

        >>> import hvballoon
        >>> from hvballoon.retry import RetryPolicy
        >>> with hvballoon.connect("fake://seed") as hv:
        ...     len(hv.get_stats(retry=RetryPolicy(max_attempts=1)))
        10
        """
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidRequestError(f"retry takes a RetryPolicy, got {type(retry).__name__}")
        if vms is None:
            result: list[MemoryStats] = self._call("get_stats", self._backend.get_stats, retry=retry)
            self._index.replace(s.vm for s in result)
            return result
        refs = _refs(vms, call="get_stats", arg="vms")
        rows = self._read_fresh("get_stats", refs, self._backend.get_stats, _stats_vm, retry=retry)
        return _once(self._first_error(rows), _stats_vm)

    @_keywords
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
        if vm_stats is not None and (
            isinstance(vm_stats, (str, bytes)) or not isinstance(vm_stats, Iterable)
        ):
            raise InvalidRequestError(
                f"vm_stats takes the MemoryStats of a get_stats() sweep, got {type(vm_stats).__name__}"
            )
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

    def get_configs(self, vms: VMRef | Sequence[VMRef] | None = None) -> list[MemoryConfig]:
        """Memory configurations of all VMs, or of the VMs given, in one bulk read where the
        backend allows (ESXi: one PropertyCollector read; Hyper-V: one command). A VM named
        twice is reported once, as by :meth:`get_stats`."""
        if vms is None:
            result: list[MemoryConfig] = self._call("get_configs", lambda: self._backend.get_configs(None))
            self._index.replace(c.vm for c in result)
            return result
        rows = self._read_fresh(
            "get_configs", _refs(vms, call="get_configs", arg="vms"), self._backend.get_configs, _config_vm
        )
        return _once(self._first_error(rows), _config_vm)

    def vm_capabilities(self, vm: VMRef) -> Capabilities:
        """Capabilities refined for one VM (its mechanism may differ from the backend's, and
        change with its configuration: a VM named by name or id is read fresh for it; a
        :class:`VM` given is taken as it is)."""
        if isinstance(vm, VM):
            return self._backend.vm_capabilities(vm)
        (stats,) = self.get_stats([vm])
        return self._backend.vm_capabilities(stats.vm)

    # -- marks ----------------------------------------------------------------------------

    def _check_mark(self, key: str, value: str | None = None) -> None:
        if not self.capabilities.marks:
            raise UnsupportedOperationError(
                f"the {self.backend_name} backend keeps no marks on VMs (capabilities.marks is false)",
                backend=self.backend_name,
                uri=self.uri,
            )
        if not isinstance(key, str) or not _MARK_KEY.match(key) or len(key) > 100:
            raise InvalidRequestError(
                f"a mark's key is 'hvballoon.' and dotted lower-case words (at most 100 characters), got {key!r}",
                details={"key": key if isinstance(key, str) else repr(key)},
            )
        if value is not None and (not isinstance(value, str) or not _MARK_VALUE.match(value)):
            raise InvalidRequestError(
                "a mark's value is 1 to 255 printable ASCII characters (None removes the mark), "
                f"got {value!r}",
                details={"key": key},
            )

    def get_marks(self, key: str) -> Marks:
        """Every VM's value of the mark ``key``, by VM id (VMs without it are absent), in one read.

        Marks are small notes a VM keeps in its own configuration (ESXi: an ``extraConfig``
        key; KVM over libvirt: an element of the running domain's metadata, which lasts the
        domain's run — a powered-off domain has none and is not marked), so whoever reads the
        hypervisor finds them — the auto-balloon controller marks the VMs it lowers with what
        they had. Keys are in hvballoon's namespace
        (``hvballoon.…``). A backend whose capabilities say ``marks=False`` raises
        :class:`~hvballoon.errors.UnsupportedOperationError`.

        The answer is a :class:`~hvballoon.marks.Marks`: the dict of the values, and in
        ``unreadable`` the VMs whose marks could not be read (VM id → the typed error saying
        why; ESXi: a VM whose ``extraConfig`` the account may not read, or one being created or
        removed; KVM: a domain whose metadata libvirt would not give). Those are not known to be unmarked: check ``complete`` before taking a VM's
        absence for "no mark".

        >>> import hvballoon
        >>> with hvballoon.connect("fake://seed?flavor=esxi") as hv:
        ...     hv.set_mark("web01", "hvballoon.example", "hello")
        ...     marks = hv.get_marks("hvballoon.example")
        ...     marks == {hv.resolve("web01").id: "hello"}, marks.complete
        (True, True)
        """
        self._check_mark(key)
        marks: Marks = self._call("get_marks", lambda: self._backend.read_marks(key))
        for error in marks.unreadable.values():
            error.with_context(backend=self.backend_name, uri=self.uri)
        return marks

    def set_mark(self, vm: VMRef, key: str, value: str | None) -> None:
        """Set the mark ``key`` on the VM to ``value`` (printable ASCII, up to 255 characters),
        or remove it with ``None``. Absolute and idempotent; see :meth:`get_marks`."""
        self._check_mark(key, value)
        target = self.resolve(vm)
        self._call("set_mark", lambda: self._backend.write_mark(target, key, value), target.name)

    # -- changing -----------------------------------------------------------------------

    @_keywords
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
        parse_typed_target(
            size, what="target", int_bytes=True
        )  # a bad size is refused before anything is read
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

    @_keywords
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
        figures: Iterable[tuple[MemoryStats, MemoryConfig]] | None = None,
        on_applied: Callable[[TargetResults], object] | None = None,
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
        instead. ``on_applied`` (with ``wait=True``) is called with what was applied, a
        :class:`TargetResults`, before the wait begins (the CLI says so there). Ctrl-C during
        that wait raises :class:`TargetsInterrupted` (a ``KeyboardInterrupt``) whose
        ``results`` say what was applied and which VMs had reached their targets; during the
        apply, it is held until the bulk call in flight answers (in the main thread, under
        Python's own SIGINT handler), and then raises :class:`TargetsInterrupted` with
        ``waiting`` false, saying what that call applied (and, in ``not_sent``, the retries it
        kept from being sent). ``wait=True`` with ``dry_run=True`` is refused
        (:class:`~hvballoon.errors.InvalidRequestError`, before anything is read or changed), as
        the CLI refuses ``--wait --dry-run``: a dry run changes nothing, so there is nothing to
        wait for.

        ``figures`` spares that read for VMs the caller has just read itself: its own
        ``(MemoryStats, MemoryConfig)`` pairs (a sweep's stats and the configurations it holds),
        used instead of reading again for the VMs they cover *while the guard rails would
        trust them* — the guest's use known, not marked stale by the backend, and its report no
        older than ``max_stats_age_seconds`` counting the time since they were read
        (:meth:`GuardRails.trusts`). The other VMs, and the ones whose figures are too old, are
        read fresh (one bulk read of those only); every check then runs on whichever figures
        are used. Pass only figures nothing else may have changed since (a VM's target moved
        by another client meanwhile would be planned from its old one). Pairs of VMs not being
        moved are ignored; a malformed value is an :class:`~hvballoon.errors.InvalidRequestError`.

        >>> import hvballoon
        >>> with hvballoon.connect("fake://seed") as hv:
        ...     res = hv.set_targets({"web01": "7GiB", "web02": "8GiB"})
        ...     res.ok, res["web01"].after["target_bytes"] // 2**30, sorted(res.made)
        (True, 7, ['web01', 'web02'])

        A round that has just swept every VM moves them on that sweep's figures:

        >>> with hvballoon.connect("fake://seed") as hv:
        ...     stats = hv.get_stats()
        ...     configs = {c.vm.id: c for c in hv.get_configs()}
        ...     res = hv.set_targets({"web01": "7GiB"}, figures=[(s, configs[s.vm.id]) for s in stats])
        ...     sorted(res.made)
        ['web01']
        """
        if self._closed:
            raise InvalidStateError("this session is closed", backend=self.backend_name, uri=self.uri)
        if wait and dry_run:  # the caller meant to wait: refused, not dropped
            raise InvalidRequestError(
                "wait=True with dry_run=True: a dry run changes nothing, so there is nothing to wait for"
            )
        items = self._target_items(targets)
        known = self._figure_items(figures)
        waiting = positive_seconds(wait_timeout, what="wait_timeout") if wait else None
        return self._set_targets(
            items,
            force=force,
            dry_run=dry_run,
            guard_rails=guard_rails,
            skip_invalid=skip_invalid,
            wait_timeout=waiting,
            figures=known,
            on_applied=on_applied if waiting is not None else None,
        )

    @_keywords
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
        free_page_reporting: bool | None = None,
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
        if not update.fields():
            raise InvalidRequestError("set_config needs at least one field to change")
        # read first: the live rules depend on the power state, which must be fresh
        current = self.get_config(vm)
        change, plan = self._plan_config(current, update, dry_run)
        if change.changed and not dry_run:
            self._apply_config(current, plan)
        return change

    @_keywords
    def set_configs(
        self,
        configs: Mapping[str, Mapping[str, Any]] | Sequence[tuple[VMRef, Mapping[str, Any]]],
        *,
        dry_run: bool = False,
        skip_invalid: bool = False,
    ) -> TargetResults:
        """Change many VMs' memory configurations at once: ``{"web01": {"minimum": "2GiB"},
        "web02": {"buffer_percent": 30}}`` (or a list of ``(VM or name or id, options)`` pairs),
        each VM's options the keywords of :meth:`set_config`.

        Every VM is resolved, read in one bulk read (one PropertyCollector read on ESXi, one
        command on Hyper-V) and put through the same rules as :meth:`set_config` *first*; only
        then is anything changed, VM by VM (a configuration change is one task or command per VM
        on every hypervisor). When a VM is refused (an option it cannot take, a rule of its
        hypervisor, a VM named twice), nothing is changed unless ``skip_invalid=True`` asks to
        change the others anyway; their changes come back as a dry run with a warning. One VM's
        failure while applying does not stop the others: the answer, a :class:`TargetResults`,
        has one result per VM — its :class:`Change` or its typed error — and ``.error`` is a
        :class:`~hvballoon.errors.PartialChangeError` when some VMs changed and others did not.
        A Ctrl-C while they are changed is held until the VM in flight answers; then
        :class:`TargetsInterrupted` says which were changed and which were not sent.

        >>> import hvballoon
        >>> with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        ...     res = hv.set_configs({"web01": {"buffer_percent": 30}, "web02": {"buffer_percent": 40}})
        ...     res.ok, sorted(res.made), res["web02"].after["buffer_percent"]
        (True, ['web01', 'web02'], 40)
        >>> with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        ...     res = hv.set_configs({"web01": {"buffer_percent": 30}, "web02": {"buffer_percent": 9000}})
        ...     res.applied, res["web01"].dry_run, res["web02"].code
        (False, True, 'invalid_request')
        """
        if self._closed:
            raise InvalidStateError("this session is closed", backend=self.backend_name, uri=self.uri)
        return self._set_configs(self._config_items(configs), dry_run=dry_run, skip_invalid=skip_invalid)

    @_keywords
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
        over-inflation), :class:`~hvballoon.errors.VMNotFoundError` says so. ``timeout``,
        ``poll_interval`` and ``stall_after`` are positive numbers of seconds, at most
        :data:`~hvballoon.units.MAX_SECONDS` (else :class:`~hvballoon.errors.InvalidRequestError`).

        Where the backend cannot observe a target being reached (its capabilities say
        ``target_observable=False``: an ESXi limit, Hyper-V Dynamic Memory), it returns the
        current stats at once with a :class:`~hvballoon.errors.TargetNotObservableWarning`: the
        target was applied, and there is nothing to wait for. The CLI and the Ansible modules
        do the same (warn, succeed).
        """
        timeout = positive_seconds(timeout, what="timeout")
        poll_interval = positive_seconds(poll_interval, what="poll_interval")
        if stall_after is not None:
            stall_after = positive_seconds(stall_after, what="stall_after")
        # checked before anything is read: a VM whose target cannot be observed returns at once
        asked = None if target is None else parse_typed_target(target, what="target", int_bytes=True)
        tol = (
            None
            if tolerance is None
            else parse_typed_target(tolerance, what="tolerance", noun="size", int_bytes=True)
        )
        target_vm = self.resolve(vm)
        caps = self._backend.vm_capabilities(target_vm)
        if not caps.target_observable:
            self._not_waited(self._unobservable(target_vm, caps), target_vm, caps.mechanism.value)
            return self._wait_stats(target_vm)
        if asked is not None:
            goal = align(asked, caps.alignment_bytes, "up")
        elif target_vm.id in self._targets:
            goal = self._targets[target_vm.id]
        else:
            (stats,) = self._await_read([target_vm])
            if isinstance(stats, HVBalloonError):
                raise stats
            if stats.target_bytes is None:
                if "target" in caps.withheld:  # nothing can move its memory live: say why
                    rule, why = withheld_why(caps)
                    raise InvalidRequestError(
                        f"no target known for {target_vm.name!r}, and none can be set on it live: {why}",
                        vm=target_vm.name,
                        details={"rule": rule},
                    )
                raise InvalidRequestError(f"no target known for {target_vm.name!r}: pass target=")
            goal = stats.target_bytes
        if tol is None:
            tol = max(caps.alignment_bytes, 2 * MiB, goal // 200)
        outcome = self._await(
            {target_vm.id: (target_vm, goal, tol)},
            timeout=timeout,
            poll_interval=poll_interval,
            stall_after=stall_after,
        )[target_vm.id]
        if isinstance(outcome, HVBalloonError):
            raise outcome
        if idle(outcome.vm):  # off, paused or saved: its memory moves only once it runs
            self._not_waited(self._not_running(outcome.vm), outcome.vm, outcome.mechanism.value)
        return outcome
