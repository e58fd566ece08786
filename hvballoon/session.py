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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from hvballoon import registry
from hvballoon._uri import ParsedURI, parse_uri
from hvballoon.backend import Backend, ConnectOptions
from hvballoon.errors import (
    AmbiguousVMError,
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

__all__ = ["GuardRails", "Hypervisor", "VMRef", "connect", "noting_unobservable"]

log = logging.getLogger("hvballoon")

VMRef = str | VM
PASSWORD_ENV = "HVBALLOON_PASSWORD"  # noqa: S105 - a variable name, not a secret


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

    # -- reading ------------------------------------------------------------------------

    def list_vms(self) -> list[VM]:
        """Every VM on the hypervisor."""
        result: list[VM] = self._call("list_vms", self._backend.list_vms)
        return result

    def resolve(self, vm: VMRef) -> VM:
        """Find a VM by id, name or :class:`VM`; an ambiguous name lists the candidates."""
        return self.resolve_many([vm])[0]

    def resolve_many(self, refs: Iterable[VMRef]) -> list[VM]:
        """Several VMs at once (one listing); the first name that matches nothing raises
        :class:`~hvballoon.errors.VMNotFoundError`."""
        found, missing = self.find_vms(refs)
        if missing:
            ref = missing[0]
            raise VMNotFoundError(
                f"no VM named or with id {ref!r}", backend=self.backend_name, uri=self.uri, vm=ref
            )
        return found

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
        if refs and all(isinstance(r, VM) for r in refs):
            return [r for r in refs if isinstance(r, VM)], []
        vms = self.list_vms()
        by_id = {v.id: v for v in vms}
        out = []
        missing: list[str] = []
        for ref in refs:
            if isinstance(ref, VM):
                out.append(ref)
                continue
            if not isinstance(ref, str) or not ref:
                raise InvalidRequestError(f"a VM is named by a non-empty name or id, got {ref!r}")
            if ref in by_id:
                out.append(by_id[ref])
                continue
            named = [v for v in vms if v.name == ref]
            if len(named) == 1:
                out.append(named[0])
            elif not named:
                missing.append(ref)
            else:
                ids = [v.id for v in named]
                raise AmbiguousVMError(
                    f"{len(named)} VMs are named {ref!r}; use an id: {', '.join(ids)}",
                    backend=self.backend_name,
                    uri=self.uri,
                    vm=ref,
                    details={"candidates": ids},
                )
        return out, missing

    def get_stats(self, vms: VMRef | Sequence[VMRef] | None = None) -> list[MemoryStats]:
        """Memory stats of all VMs (one bulk call), or of the VMs given by name, id or VM."""
        if vms is None:
            result: list[MemoryStats] = self._call("get_stats", self._backend.get_stats)
            return result
        refs = [vms] if isinstance(vms, (str, VM)) else list(vms)
        resolved = self.resolve_many(refs)
        stats: list[MemoryStats] = self._call("get_stats", lambda: self._backend.get_stats(resolved))
        return stats

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
        target = self.resolve(vm)
        cfg: MemoryConfig = self._call("get_config", lambda: self._backend.get_config(target), target.name)
        return cfg

    def vm_capabilities(self, vm: VMRef) -> Capabilities:
        """Capabilities refined for one VM (its mechanism may differ from the backend's)."""
        return self._backend.vm_capabilities(self.resolve(vm))

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
        requested = parse_size(size, what="target")
        rails = guard_rails if guard_rails is not None else self.guard_rails
        target_vm = self.resolve(vm)
        caps = self._backend.vm_capabilities(target_vm)
        running = target_vm.power_state is PowerState.RUNNING
        self._with_context(lambda: check_settable(caps, ["target"], target_vm), target_vm)
        target = align(requested, caps.alignment_bytes, "up")
        stats = self._one_stats(target_vm)
        config = self.get_config(target_vm)
        maximum = self._backend.target_ceiling(target_vm, stats, config)
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
                vm=target_vm.name,
                backend=self.backend_name,
                uri=self.uri,
                details={**numbers, "maximum_bytes": maximum, "rule": "target_above_maximum"},
            )
        before = stats.target_bytes if stats.target_bytes is not None else stats.current_bytes
        warnings_: list[str] = []
        if target_vm.power_state is PowerState.UNKNOWN:
            # a guard rail is never skipped because the state is unknown: lowering needs force
            lowering = before is None or target < before
            if lowering and not force:
                raise GuardRailError(
                    f"refusing to lower the target of {target_vm.name!r}: its power state is unknown "
                    f"({target_vm.extra.get('state') or 'not reported'}), so whether a guest is using the "
                    "memory is unknown",
                    hint=Hint("force"),
                    vm=target_vm.name,
                    backend=self.backend_name,
                    uri=self.uri,
                    details={**numbers, "rule": "unknown_power_state", "before_bytes": before},
                )
            if lowering:
                warnings_.append(f"forced while the power state of {target_vm.name!r} is unknown")
        elif not running:
            # no guest is using memory: the floor applies when it runs (and the guard rails then)
            warnings_.append(f"{target_vm.name!r} is {target_vm.power_state.value}: no usage floor applies")
        elif not force:
            self._check_floor(target_vm, target, stats, numbers, rails)
        else:
            floor = self._floor_or_none(stats, rails)
            if floor is not None and target < floor:
                shown_floor, shown_used = format_sizes(floor, stats.used_bytes)
                warnings_.append(
                    f"forced below the floor {shown_floor} "
                    f"(guest uses {shown_used}): the guest may swap or crash"
                )
        self._call(
            "check_target",
            lambda: self._backend.check_target(target_vm, target, stats, config),
            target_vm.name,
        )
        changed = before != target
        change = Change(
            vm=target_vm,
            operation="set_target",
            changed=changed,
            dry_run=dry_run,
            forced=force,
            mechanism=caps.mechanism,
            before={"target_bytes": before},
            after={"target_bytes": target},
            requested={"target_bytes": requested},
            warnings=tuple(warnings_),
        )
        if changed and not dry_run:
            self._call("set_target", lambda: self._backend.apply_target(target_vm, target), target_vm.name)
            log.info("set target of %s to %s (%s)", target_vm.name, format_size(target), caps.mechanism.value)
        if not dry_run:
            self._targets[target_vm.id] = target
        return change

    def _one_stats(self, vm: VM) -> MemoryStats:
        stats: list[MemoryStats] = self._call("get_stats", lambda: self._backend.get_stats([vm]), vm.name)
        if not stats:
            raise VMNotFoundError(
                f"no stats for VM {vm.name!r}: it may have vanished",
                vm=vm.name,
                backend=self.backend_name,
                uri=self.uri,
            )
        return stats[0]

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
        target_vm = self.resolve(vm)
        caps = self._backend.vm_capabilities(target_vm)
        current = self.get_config(target_vm)
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
            self._call(
                "set_config", lambda: self._backend.apply_config(target_vm, changes, current), target_vm.name
            )
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
            msg = (
                f"the {caps.backend} backend cannot observe {target_vm.name!r} reaching a "
                f"{caps.mechanism.value} target (the hypervisor moves the memory within it on its "
                "own): the target is applied; not waiting"
            )
            log.info(msg)
            warnings.warn(
                TargetNotObservableWarning(
                    msg, vm=target_vm.name, backend=self.backend_name, mechanism=caps.mechanism.value
                ),
                stacklevel=2,
            )
            return self._wait_stats(target_vm)
        stats = self._wait_stats(target_vm)
        if target is not None:
            goal = align(parse_size(target, what="target"), caps.alignment_bytes, "up")
        elif target_vm.id in self._targets:
            goal = self._targets[target_vm.id]
        elif stats.target_bytes is not None:
            goal = stats.target_bytes
        else:
            raise InvalidRequestError(f"no target known for {target_vm.name!r}: pass target=")
        tol = (
            parse_size(tolerance, what="tolerance")
            if tolerance is not None
            else max(caps.alignment_bytes, 2 * MiB, goal // 200)
        )
        stall_after = stall_after if stall_after is not None else max(5 * poll_interval, 5.0)
        clock, sleep = self._backend.monotonic, self._backend.sleep
        start = clock()
        last_move_at, last_value = start, stats.current_bytes
        while True:
            current = stats.current_bytes
            if current is not None and abs(current - goal) <= tol:
                return stats
            now = clock()
            if current is not None and (last_value is None or abs(current - last_value) > tol // 2):
                last_move_at, last_value = now, current
            details = {
                "target_bytes": goal,
                "reached_bytes": current,
                "tolerance_bytes": tol,
                "elapsed_seconds": round(now - start, 3),
            }
            shown_current, shown_goal = format_sizes(current, goal)
            if now - last_move_at >= stall_after:
                raise BalloonStalledError(
                    f"the memory of {target_vm.name!r} stalled at {shown_current} "
                    f"short of the target {shown_goal}: the guest cannot free more "
                    "(it may be about to swap or run out of memory)",
                    vm=target_vm.name,
                    backend=self.backend_name,
                    uri=self.uri,
                    details={**details, "stats": stats.model_dump(mode="json")},
                )
            if now - start >= timeout:
                raise WaitTimeoutError(
                    f"the memory of {target_vm.name!r} was still moving after {timeout:g} s "
                    f"({shown_current} of target {shown_goal})",
                    vm=target_vm.name,
                    backend=self.backend_name,
                    uri=self.uri,
                    details={**details, "stats": stats.model_dump(mode="json")},
                )
            sleep(min(poll_interval, max(0.0, timeout - (now - start))))
            stats = self._wait_stats(target_vm)

    def _wait_stats(self, vm: VM) -> MemoryStats:
        try:
            return self._one_stats(vm)
        except VMNotFoundError as exc:
            exc.message = (
                f"VM {vm.name!r} vanished while waiting for its target: "
                "the guest may have crashed (over-inflated balloon?)"
            )
            raise
