"""The plug-in point: one small base class every backend implements.

A backend translates between one hypervisor's API and hvballoon's models. It does no guard
rails, no retries and no VM-name resolution — the session (:class:`hvballoon.Hypervisor`) does
those the same way for every backend. It must:

- map every native exception onto :mod:`hvballoon.errors` at its boundary (one table, one
  context manager; match on codes and types, never on message text; ``raise … from exc``);
- put a timeout on every remote call;
- fill a figure it cannot know with ``None``, never ``0``;
- make ``apply_target``/``apply_config`` absolute and idempotent (safe to retry).

A backend of a built-in hypervisor kind sets ``kind`` (:mod:`hvballoon.kinds`): the base class
then takes the ceiling of a target and every target and configuration rule from the kind, the
same object the fake's flavour of that kind uses, so neither restates a rule.

Configuration changes cross this surface as models: :meth:`Backend.plan_config` gets the
caller's :class:`~hvballoon.models.ConfigUpdate` and returns the plan — a ``ConfigUpdate`` of
only the fields that change, derived ones filled and a removed limit as ``unlimited_limit=True``
— which :meth:`Backend.check_config` (a backend without a kind) and
:meth:`Backend.apply_config` receive::

        def apply_config(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
            if plan.maximum_bytes is not None:
                ...  # send the new maximum
            if plan.unlimited_limit:
                ...  # remove the limit

The bulk hooks (:meth:`Backend.lookup_vms`, :meth:`Backend.get_configs`,
:meth:`Backend.get_stats_and_configs`, :meth:`Backend.apply_targets`) have defaults built on the
per-VM methods; a backend overrides them where its API does the work in fewer round trips.

A minimal backend (see ``hvballoon.fake.backend`` for a complete one)::

    class MyBackend(Backend):
        name = "mine"
        schemes = ("mine",)

        @property
        def capabilities(self) -> Capabilities: ...
        def list_vms(self) -> list[VM]: ...
        def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]: ...
        def get_config(self, vm: VM) -> MemoryConfig: ...
        def apply_target(self, vm: VM, target_bytes: int) -> None: ...

The host's memory picture (:meth:`Backend.get_host_stats`) works out of the box: by default the
VM sweep is summed per host and the host's own figures are ``None``. A backend that can read
them (physical, free, swap, page sharing) overrides it and builds the result with
:func:`hvballoon.hoststats.from_sweep`, so the sums over the VMs are the same everywhere::

        def get_host_stats(self, vm_stats: list[MemoryStats] | None = None) -> list[HostStats]:
            stats = vm_stats if vm_stats is not None else self.get_stats()
            physical, free = ...  # one bulk read of the host's figures
            return from_sweep(stats, backend=self.name, default_host="myhost",
                              figures={"myhost": {"physical_bytes": physical, "free_bytes": free}})
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar, NamedTuple

from pydantic import SecretStr

from hvballoon._uri import ParsedURI
from hvballoon.backend_kit.options import BackendOptions
from hvballoon.errors import HVBalloonError, InvalidRequestError, UnsupportedOperationError, VMNotFoundError
from hvballoon.kinds import Kind, check_settable, is_off
from hvballoon.marks import Marks
from hvballoon.models import VM, Capabilities, ConfigUpdate, HostStats, MemoryConfig, MemoryStats

__all__ = ["Backend", "ConnectOptions", "TargetRequest", "check_ca_file"]


def check_ca_file(ca_file: str | os.PathLike[str] | None) -> None:
    """Refuse a ``ca_file`` (``--ca-file``) that names no file, or one that cannot be read, with
    an :class:`~hvballoon.errors.InvalidRequestError` (exit code 2), before anything connects:
    the one check of every backend given a CA bundle — those that verify TLS with it, and the
    fake, which has no TLS but takes the options a real hypervisor does, so that a mistyped path
    is caught against it too. ``None`` (no CA file) passes.

    >>> check_ca_file("/nonexistent/ca.pem")
    Traceback (most recent call last):
    ...
    hvballoon.errors.InvalidRequestError: the CA file '/nonexistent/ca.pem' is not a file: no such file or directory
    """
    if ca_file is None:
        return
    path = os.fspath(ca_file)
    if not os.path.isfile(path):
        there = "" if os.path.exists(path) else ": no such file or directory"
        raise InvalidRequestError(f"the CA file {path!r} is not a file{there}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InvalidRequestError(f"cannot read the CA file {path!r}: {exc.strerror or exc}") from exc


class TargetRequest(NamedTuple):
    """One move of a bulk :meth:`Backend.apply_targets`: already aligned and guard-railed."""

    vm: VM
    target_bytes: int


class ConnectOptions:
    """What :func:`hvballoon.connect` hands a backend (never printed with the secret)."""

    __slots__ = ("ca_file", "options", "password", "timeout", "uri", "verify")

    def __init__(
        self,
        uri: ParsedURI,
        *,
        password: SecretStr | None,
        timeout: float,
        verify: bool,
        ca_file: str | None,
        options: Mapping[str, Any],
    ) -> None:
        self.uri = uri
        self.password = password
        self.timeout = timeout
        self.verify = verify
        self.ca_file = ca_file
        self.options = dict(options)

    def __repr__(self) -> str:
        secret = "'**********'" if self.password is not None else "None"
        return (
            f"ConnectOptions(uri={self.uri.redacted!r}, password={secret}, timeout={self.timeout}, "
            f"verify={self.verify}, ca_file={self.ca_file!r}, options={sorted(self.options)})"
        )


class Backend(abc.ABC):
    """Base class of every backend. Subclasses set ``name`` and ``schemes``.

    A backend that takes options (keywords of :func:`hvballoon.connect`) declares them as a
    :class:`~hvballoon.backend_kit.BackendOptions` model in ``options_model``: the base class
    validates them strictly and keeps the result in :attr:`options`; ``option_names`` is derived
    from the model. (A backend without a model may still list bare ``option_names``; their values
    then reach it unchecked in ``opts.options``.)
    """

    name: ClassVar[str]
    schemes: ClassVar[tuple[str, ...]]
    #: The options :func:`hvballoon.connect` accepts for this backend, as a model.
    options_model: ClassVar[type[BackendOptions]] = BackendOptions
    #: Backend options :func:`hvballoon.connect` accepts as keywords (others are refused).
    option_names: ClassVar[frozenset[str]] = frozenset()
    #: The hypervisor kind whose rules this backend follows (``None``: it states its own, in
    #: ``target_ceiling`` / ``check_target`` / ``check_config``).
    kind: Kind | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "options_model" in cls.__dict__:
            cls.option_names = cls.options_model.names()

    def __init__(self, opts: ConnectOptions) -> None:
        if self.options_model is BackendOptions:
            unknown = set(opts.options) - set(self.option_names)
            if unknown:
                accepted = ", ".join(sorted(self.option_names)) or "none"
                raise InvalidRequestError(
                    f"unknown option(s) for the {self.name} backend: {', '.join(sorted(unknown))}; "
                    f"accepted: {accepted}",
                    backend=self.name,
                    uri=opts.uri.redacted,
                )
            self.options: BackendOptions = BackendOptions()
        else:
            self.options = self.options_model.parse(opts.options, backend=self.name, uri=opts.uri.redacted)
        self.opts = opts

    # -- what must be implemented ---------------------------------------------------------

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """The backend's declared capabilities."""

    @abc.abstractmethod
    def list_vms(self) -> list[VM]:
        """Every VM the connection can see."""

    @abc.abstractmethod
    def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]:
        """Stats of ``vms`` (all VMs when ``None``), in one round trip where the API allows."""

    @abc.abstractmethod
    def get_config(self, vm: VM) -> MemoryConfig:
        """The VM's memory configuration."""

    @abc.abstractmethod
    def apply_target(self, vm: VM, target_bytes: int) -> None:
        """Move the VM's target to ``target_bytes`` (already aligned and guard-railed)."""

    # -- optional: bulk variants (defaults call the per-VM methods) --------------------------

    #: ``True`` when :meth:`lookup_vms` answers every VM of the hypervisor (it sweeps them, as
    #: on vSphere): the session then takes the answer as a full listing.
    lookup_lists_every_vm: bool = False

    def lookup_vms(self, refs: Sequence[str]) -> list[VM] | None:
        """The VMs whose id or name is one of ``refs``, looked up natively (no listing).

        Used by the session to resolve names it has not seen yet. Return every VM whose id or
        name matches (the session picks exact matches and reports ambiguity); a ref that
        matches nothing is simply absent. A backend that had to read more (ESXi) may return
        every VM it saw: the session remembers them. ``None`` (the default) means "no native
        lookup": the session then lists every VM.
        """
        return None

    def get_configs(self, vms: list[VM] | None = None) -> list[MemoryConfig]:
        """Configurations of ``vms`` (every VM when ``None``), in as few round trips as the API
        allows. Like :meth:`get_stats`: for ``None`` a VM that vanishes meanwhile is left out;
        a VM given that does not exist raises :class:`~hvballoon.errors.VMNotFoundError`."""
        if vms is not None:
            return [self.get_config(vm) for vm in vms]
        out = []
        for vm in self.list_vms():
            try:
                out.append(self.get_config(vm))
            except VMNotFoundError:
                continue  # gone since the listing
        return out

    def get_stats_and_configs(self, vms: list[VM]) -> list[tuple[MemoryStats, MemoryConfig]]:
        """Fresh stats and configuration of each of ``vms`` (in order), read together for a
        change: a backend whose one read returns both (ESXi, Hyper-V) overrides this."""
        stats = self.get_stats(vms)
        configs = self.get_configs(vms)
        return list(zip(stats, configs, strict=True))

    def apply_targets(self, targets: Sequence[TargetRequest]) -> list[HVBalloonError | None]:
        """Apply many targets; one entry per request, in order: ``None`` (applied) or the
        typed error of that VM. One VM's failure must not stop or undo the others'.

        Raise only when nothing could be sent at all. Each move is absolute, so the session
        may send a request again whose error is retryable.
        """
        out: list[HVBalloonError | None] = []
        for t in targets:
            try:
                self.apply_target(t.vm, t.target_bytes)
            except HVBalloonError as exc:
                out.append(exc.with_context(backend=self.name, vm=t.vm.name))
            else:
                out.append(None)
        return out

    # -- optional -------------------------------------------------------------------------

    def get_host_stats(self, vm_stats: list[MemoryStats] | None = None) -> list[HostStats]:
        """The memory picture of every host behind the connection, in one bulk read.

        ``vm_stats`` is a full sweep the caller already has (``get_stats()``, all VMs): it is
        summed instead of reading the VMs again; the host's own figures are read either way.
        This default knows no host figure (they are ``None``): it sums the sweep per
        ``vm.host`` (VMs naming no host go to the URI's host, else the backend's name).
        """
        from hvballoon.hoststats import from_sweep

        stats = vm_stats if vm_stats is not None else self.get_stats()
        return from_sweep(stats, backend=self.name, default_host=self.opts.uri.host or self.name)

    def vm_capabilities(self, vm: VM) -> Capabilities:
        """Capabilities refined for one VM (e.g. Hyper-V static vs Dynamic Memory)."""
        return self.capabilities

    def read_marks(self, key: str) -> Marks:
        """Every VM's value of the mark ``key`` (VM id → value; VMs without it are absent), in
        one read, and the VMs whose marks could not be read in ``Marks.unreadable`` (VM id → a
        typed error naming the VM): never absent as if unmarked. Only for a backend whose
        capabilities declare ``marks``."""
        raise UnsupportedOperationError(f"the {self.name} backend keeps no marks on VMs", backend=self.name)

    def write_mark(self, vm: VM, key: str, value: str | None) -> None:
        """Set the mark ``key`` on the VM to ``value`` (``None``: remove it); absolute, so safe
        to retry. Only for a backend whose capabilities declare ``marks``."""
        raise UnsupportedOperationError(f"the {self.name} backend keeps no marks on VMs", backend=self.name)

    def apply_config(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        """Apply the plan :meth:`plan_config` returned; all or nothing, or raise PartialChangeError.

        ``plan`` holds only the fields that change, derived ones included; read its attributes
        (``None``: not changed) and :meth:`ConfigUpdate.changed`. A removed ESXi limit is
        ``plan.unlimited_limit`` (``limit_bytes`` stays ``None``).
        """
        raise UnsupportedOperationError(
            f"the {self.name} backend cannot change memory configuration", backend=self.name
        )

    def target_ceiling(self, vm: VM, stats: MemoryStats, config: MemoryConfig) -> int | None:
        """The highest target this VM may be given (``None``: no ceiling known).

        With a kind, the kind's (Hyper-V: the host's memory, which a backend passes by
        overriding this); otherwise the VM's maximum memory.
        """
        if self.kind is not None:
            return self.kind.target_ceiling(vm, stats, config)
        return config.maximum_bytes if config.maximum_bytes is not None else stats.configured_bytes

    def check_target(self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig) -> None:
        """Rules on a target, checked before anything is sent (also in dry runs)."""
        if self.kind is not None:
            self.kind.check_target(vm, target_bytes, stats, config)

    def target_notes(
        self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig
    ) -> tuple[str, ...]:
        """What the caller should know of how this backend will apply a target it allows (less
        than asked of it, say): the warnings of the target's :class:`~hvballoon.models.Change`,
        planned with :meth:`check_target` (dry runs too). None by default."""
        return ()

    def plan_config(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> ConfigUpdate:
        """Check the caller's ``set_config`` request; return the plan :meth:`apply_config` gets.

        ``update`` is the caller's validated :class:`~hvballoon.models.ConfigUpdate`; the plan
        is a ``ConfigUpdate`` too, holding only the fields whose value differs from
        ``current``, plus the ones the hypervisor changes with them (ESXi's share count of a
        level, its reservation locked to the memory size). An empty plan (``plan.changed()``
        is ``()``) means nothing to do: the session reports ``changed=False`` and sends nothing.

        With a kind, the kind decides everything. Otherwise every requested field must be
        settable in the VM's power state (:attr:`Capabilities.set_live` / ``set_offline``),
        and :meth:`check_config` sees the plan. A backend adding a rule of its own overrides
        this, calls ``super()`` and refuses on the plan's attributes.
        """
        if self.kind is not None:
            return self.kind.plan_config(vm, update, current)
        check_settable(self.vm_capabilities(vm), update.changed(), vm)
        plan = update.changes_from(current)
        if plan.changed():
            self.check_config(vm, plan, current, running=not is_off(vm))
        return plan

    def check_config(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig, *, running: bool) -> None:
        """Rules of a backend without a kind on a config change (``plan``: the fields that
        change), checked before anything is sent, also in dry runs."""

    @property
    def native(self) -> Any:
        """The underlying client object (libvirt connection, ServiceInstance, WinRM session)."""
        return None

    def close(self) -> None:
        """Release the connection. Must be safe to call twice."""

    # time, so that the fake's virtual clock drives wait_for_target instantly
    @property
    def ephemeral(self) -> bool:
        """Whether the hypervisor lives only as long as this process (the fake's in-memory
        worlds): then nothing about it is worth keeping on disk (a controller's journal)."""
        return False

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        """The time on the clock this backend stamps its figures with
        (:attr:`MemoryStats.collected_at <hvballoon.models.MemoryStats.collected_at>`): UTC now
        (the fake: its world's clock). The session ages figures a caller read earlier by it."""
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
