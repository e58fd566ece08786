"""The base of every hypervisor kind: variants, documented rules and the checks they share."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from hvballoon.errors import (
    HVBalloonError,
    InvalidStateError,
    UnsupportedOperationError,
)
from hvballoon.models import VM, Capabilities, ConfigUpdate, Mechanism, MemoryConfig, MemoryStats, PowerState
from hvballoon.units import align, format_size, format_sizes

__all__ = [
    "GENERIC_RULES",
    "Kind",
    "Rule",
    "Variant",
    "check_settable",
    "is_off",
    "uuid_form",
    "withheld_why",
]


@dataclass(frozen=True)
class Rule:
    """One refusal a kind documents: its stable id, the typed error it raises, and why.

    The id travels in ``err.details["rule"]``; the real backend and the fake's flavour of the
    same kind raise the same class with the same id, because both call the kind.
    """

    id: str
    error: type[HVBalloonError]
    summary: str


@dataclass(frozen=True)
class Variant:
    """What one sort of VM of a kind can read and change (Hyper-V: Dynamic Memory or static)."""

    name: str
    title: str
    mechanism: Mechanism
    readable: frozenset[str]
    set_live: frozenset[str]
    set_offline: frozenset[str]
    target_observable: bool
    notes: tuple[str, ...] = ()
    #: The MemoryConfig field a target sets (None: a target that is not a configuration field).
    target_field: str | None = None


#: Refusals every kind can raise through :func:`check_settable` (a kind may name a more
#: specific rule for an offline-only field in :attr:`Kind.offline_rules`).
GENERIC_RULES: tuple[Rule, ...] = (
    Rule("not_supported", UnsupportedOperationError, "the field does not exist on this kind of VM"),
    Rule("only_when_off", InvalidStateError, "the field changes only while the VM is powered off"),
)


#: A UUID (a GUID) as 8-4-4-4-12 hex digits, in either case.
_UUID = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")


def uuid_form(ref: str, *, braces: bool = False) -> str | None:
    """``ref`` as a hypervisor writes a UUID it answers with (lower case, no surrounding blanks;
    with ``braces``, ``{…}`` taken off too), or ``None`` when ``ref`` is not one.

    >>> uuid_form(" AAAAAAAA-1111-2222-3333-444444444444 ")
    'aaaaaaaa-1111-2222-3333-444444444444'
    >>> uuid_form("{aaaaaaaa-1111-2222-3333-444444444444}") is None
    True
    >>> uuid_form("web01") is None
    True
    """
    text = ref.strip()
    if braces and text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return text.lower() if _UUID.fullmatch(text) else None


def is_off(vm: VM) -> bool:
    """Only a VM that is powered off takes offline-only changes: paused, saved, starting and
    unknown VMs do not (a change the hypervisor would refuse is refused before it is sent)."""
    return vm.power_state is PowerState.STOPPED


def withheld_why(caps: Capabilities) -> tuple[str, str]:
    """The rule and reason a VM cannot change what its kind could (``caps.withheld``)."""
    return caps.withheld_rule or "not_supported", caps.withheld_reason or "this VM lacks what it needs"


def check_settable(
    caps: Capabilities,
    names: Iterable[str],
    vm: VM,
    *,
    offline_rules: Mapping[str, str] | None = None,
) -> None:
    """Refuse any of ``names`` that ``caps`` does not allow in the VM's power state.

    A name the VM cannot change at all raises :class:`UnsupportedOperationError` (rule
    ``not_supported``); one it can change only while off raises :class:`InvalidStateError`
    (rule ``only_when_off``, or the kind's own id from ``offline_rules``).
    """
    off = is_off(vm)
    names = sorted(names)
    if caps.frozen_reason is not None and names:
        name = names[0]
        what = "set a target" if name == "target" else f"change {name}"
        raise UnsupportedOperationError(
            f"cannot {what} of {vm.name!r}: {caps.frozen_reason}",
            vm=vm.name,
            details={"rule": "not_supported", "field": name, "reason": caps.frozen_reason},
        )
    for name in names:
        if caps.can_set(name, running=not off):
            continue
        what = "set a target" if name == "target" else f"change {name}"
        if name in caps.withheld:
            # the kind could, this VM cannot (whatever its power state): say why, by the kind's rule
            rule, why = withheld_why(caps)
            raise UnsupportedOperationError(
                f"cannot {what} of {vm.name!r}: {why}",
                vm=vm.name,
                details={
                    "rule": rule,
                    "field": name,
                    "reason": caps.withheld_reason,
                },
            )
        if name in caps.set_offline:
            rule = (offline_rules or {}).get(name, "only_when_off")
            raise InvalidStateError(
                f"cannot {what} of {vm.name!r} while it is {vm.power_state.value}: power it off first",
                vm=vm.name,
                details={"rule": rule, "field": name, "power_state": vm.power_state.value},
            )
        raise UnsupportedOperationError(
            f"the {caps.backend} backend cannot {what} for {vm.name!r} "
            f"(mechanism {caps.mechanism.value}; settable live: {', '.join(sorted(caps.set_live)) or 'nothing'})",
            vm=vm.name,
            details={"rule": "not_supported", "field": name},
        )


class Kind:
    """One hypervisor kind: what its VMs can read and change, and every rule a change obeys.

    A kind is an object with behaviour (SQLAlchemy's dialects): the real backend and the fake's
    flavour of the same kind hold the same object and ask it everything — capabilities, the
    ceiling of a target, whether a target or a configuration change is allowed, which field a
    target sets. Subclasses set the class attributes and override the ``_check_*`` hooks.
    """

    #: Short name: "kvm", "esxi", "hyperv".
    name: ClassVar[str]
    #: Human name, for documentation.
    title: ClassVar[str]
    #: Targets are aligned up to this.
    alignment_bytes: ClassVar[int]
    #: The sorts of VM of this kind; the first is the backend-wide default.
    variants: ClassVar[tuple[Variant, ...]]
    #: The refusals this kind documents (the generic ones are added by :attr:`rules`).
    kind_rules: ClassVar[tuple[Rule, ...]] = ()
    #: Offline-only config field -> the id of the rule refusing it while the VM is not off.
    offline_rules: ClassVar[Mapping[str, str]] = {}
    #: Whether a VM keeps marks (small key/value notes) in its own configuration.
    marks: ClassVar[bool] = False
    #: Where marks are kept (:attr:`marks`), whether a mark lasts only as long as the VM's run,
    #: as a target does on a kind with a :attr:`run_key` (KVM: the running domain's live
    #: metadata, gone when the domain stops), rather than as long as the VM (an ESXi key).
    marks_last_one_run: ClassVar[bool] = False
    #: What :meth:`target_ceiling` is, as a refusal of a target above it names it, and why
    #: (``""``: nothing to add).
    ceiling_name: ClassVar[str] = "the VM's maximum"
    ceiling_note: ClassVar[str] = ""
    #: Where a target lasts only as long as the VM's run (KVM: libvirt keeps a balloon target
    #: for the domain's run, and a cold start boots it at its definition's size), the key of
    #: ``VM.extra`` naming that run — a new value each time the VM starts. ``None``: a target is
    #: configuration (an ESXi limit, a Hyper-V size) and survives a restart.
    run_key: ClassVar[str | None] = None

    # -- description ------------------------------------------------------------------------

    @property
    def rules(self) -> dict[str, Rule]:
        """Every rule this kind can refuse with, by id (its own, then the generic ones it uses:
        ``only_when_off`` only for an offline-only field without a rule of its own)."""
        offline_only = {
            name for v in self.variants for name in v.set_offline - v.set_live if name != "target"
        } - set(self.offline_rules)
        generic = [r for r in GENERIC_RULES if r.id != "only_when_off" or offline_only]
        return {r.id: r for r in (*self.kind_rules, *generic)}

    def rule(self, rule_id: str) -> Rule:
        return self.rules[rule_id]

    def variant(self, name: str | None = None) -> Variant:
        """A variant by name (``None``: the default one)."""
        if name is None:
            return self.variants[0]
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"the {self.name} kind has no variant {name!r}")

    def variant_of(self, config: MemoryConfig | None) -> Variant:
        """The variant a VM with this configuration is."""
        return self.variant_for(dynamic=None if config is None else config.dynamic)

    def variant_for(self, *, dynamic: bool | None) -> Variant:
        """The variant of a VM whose Dynamic Memory flag is ``dynamic`` (default: the only one)."""
        return self.variants[0]

    def capabilities(
        self,
        *,
        backend: str,
        variant: str | None = None,
        notes: tuple[str, ...] = (),
        readable: frozenset[str] | None = None,
        bulk_stats: bool = True,
        marks: bool | None = None,
    ) -> Capabilities:
        """The :class:`Capabilities` of a variant, labelled with ``backend``.

        ``notes`` are the backend's own (appended to the variant's); ``readable`` narrows what a
        backend that reads less than the kind offers fills in; ``marks=False``: a backend that
        reaches the VMs of a kind that keeps marks through an interface without a place for them
        (QEMU's monitor, for a KVM guest).
        """
        v = self.variant(variant)
        return Capabilities(
            backend=backend,
            mechanism=v.mechanism,
            bulk_stats=bulk_stats,
            readable=v.readable if readable is None else readable,
            set_live=v.set_live,
            set_offline=v.set_offline,
            alignment_bytes=self.alignment_bytes,
            target_observable=v.target_observable,
            marks=self.marks if marks is None else marks and self.marks,
            notes=(*v.notes, *notes),
        )

    def vm_capabilities(self, config: MemoryConfig, *, backend: str, **options: Any) -> Capabilities:
        """The capabilities of one VM with this configuration: its variant's
        (:meth:`capabilities`, ``options`` passed on), less what :meth:`withhold` keeps from it.
        The real backends and the fake's flavours answer ``vm_capabilities`` with it."""
        caps = self.capabilities(backend=backend, variant=self.variant_of(config).name, **options)
        return self.withhold(caps, config)

    def withhold(self, caps: Capabilities, config: MemoryConfig) -> Capabilities:
        """``caps`` less what a VM with this configuration cannot change although its variant
        can (:attr:`Capabilities.withheld`), with the rule and reason of a refusal. Default:
        nothing withheld."""
        return caps

    def run_of(self, vm: VM) -> str | None:
        """The run of ``vm`` a target set now lasts for (see :attr:`run_key`): ``None`` where a
        target outlives a restart, or the VM does not say (not running, a backend that does not
        report it)."""
        if self.run_key is None:
            return None
        run = vm.extra.get(self.run_key)
        return None if run is None else str(run)

    def target_lapsed(
        self,
        vm: VM,
        run: str | None,
        *,
        current_bytes: int | None,
        target_bytes: int,
        mark_gone: bool = False,
    ) -> str | None:
        """Why ``target_bytes``, set on ``vm`` during ``run`` (:meth:`run_of` then), no longer
        holds, or ``None`` when it still may. On a kind whose targets last one run: the VM runs
        again in another run, back at a size above that target (a cold start boots at the
        definition's size; a VM restored from a save comes back at its target, which still
        holds). An unknown run, or a VM not running, is never taken for a lapse.

        ``mark_gone``: the VM was marked when it was lowered and is known to carry no mark now.
        Where a mark lasts one run (:attr:`marks_last_one_run`), that is a new run even under
        the same run key (libvirt numbers domains from 1 again after the host restarts)."""
        if self.run_key is None or run is None or vm.power_state is not PowerState.RUNNING:
            return None
        now = self.run_of(vm)
        if now is None or current_bytes is None:
            return None
        same_run = now == run
        if same_run and not (mark_gone and self.marks_last_one_run):
            return None
        if current_bytes < target_bytes + self.alignment_bytes:
            return None
        if same_run:
            return (
                f"its mark is gone, so it was restarted since it was lowered (its run reads {now} again: "
                f"libvirt numbers domains from 1 after the host restarts) and is at "
                f"{format_size(current_bytes)}, above the {format_size(target_bytes)} it was lowered to: a "
                f"{self.title} VM forgets its target and its mark when it stops, and boots at its "
                "definition's size"
            )
        return (
            f"it was restarted since it was lowered (run {now}, lowered in run {run}) and is at "
            f"{format_size(current_bytes)}, above the {format_size(target_bytes)} it was lowered to: a "
            f"{self.title} VM forgets its target when it stops, and boots at its definition's size"
        )

    def target_dormant(self, vm: VM, run: str | None) -> str | None:
        """Why a target set on ``vm`` during ``run`` can be neither given back nor dropped now,
        or ``None``: on a kind whose targets last one run, the VM is powered off — it forgot the
        target, but one restored from a save comes back lowered; what holds is known when it
        runs again (:meth:`target_lapsed`)."""
        if self.run_key is None or run is None or not is_off(vm):
            return None
        return (
            f"it is powered off: a {self.title} VM forgets its target when it stops (a cold start "
            "boots at its definition's size), but one restored from a save comes back lowered"
        )

    def mark_kept(self, vm: VM, value: str | None) -> bool:
        """Whether setting the mark to ``value`` on ``vm`` (as it is now) changes anything, or
        refuse a mark the VM cannot keep. Where a mark lasts one run (:attr:`marks_last_one_run`)
        a powered-off VM has none: removing one changes nothing (``False``), setting one is
        refused (``marks_only_while_running``). Called by the backends and the fake alike."""
        if not self.marks_last_one_run or not is_off(vm):
            return True
        if value is None:
            return False
        self.refuse(
            "marks_only_while_running",
            f"{vm.name!r} is powered off: a {self.title} VM keeps a mark for one run (its running "
            "definition), so only a running or paused VM is marked",
            vm=vm,
        )

    def target_field(self, config: MemoryConfig) -> str | None:
        """The configuration field a target sets on this VM (``None``: no field, e.g. a balloon)."""
        return self.variant_of(config).target_field

    # -- refusals ---------------------------------------------------------------------------

    def refuse(self, rule_id: str, message: str, *, vm: VM | None = None, **details: Any) -> NoReturn:
        """Raise the typed error of ``rule_id`` with ``details["rule"]`` set."""
        rule = self.rule(rule_id)
        raise rule.error(
            message,
            vm=vm.name if vm is not None else None,
            details={"rule": rule_id, "kind": self.name, **details},
        )

    def check_aligned(
        self,
        vm: VM | None,
        sizes: Mapping[str, int | None],
        *,
        rule: str,
        least: Mapping[str, int] | None = None,
    ) -> None:
        """Refuse a size that is not a multiple of :attr:`alignment_bytes`, naming the nearest
        allowed sizes: none below the field's ``least`` allowed value (0 where not given)."""
        step = self.alignment_bytes
        for name, value in sizes.items():
            if value is not None and value % step:
                low = (least or {}).get(name, 0)
                down, up = align(value, step, "down"), max(align(value, step, "up"), align(low, step, "up"))
                nearest = [n for n in (down, up) if n >= low]
                what = name.removesuffix("_bytes")
                shown = format_sizes(*nearest)  # told apart even when they round alike
                self.refuse(
                    rule,
                    f"{what} of {_name(vm)} must be a multiple of {format_size(step)} on {self.title} "
                    f"(asked {value} bytes; nearest: {' or '.join(shown)})",
                    vm=vm,
                    field=name,
                    asked=value,
                    down=down if down >= low else None,
                    up=up,
                )

    def canonical_id(self, ref: str) -> str:
        """The form this kind's VM ids take for an id written otherwise (default: as given), so
        a VM named by its id in another spelling is found."""
        return ref

    # -- targets ----------------------------------------------------------------------------

    def target_ceiling(
        self,
        vm: VM,
        stats: MemoryStats,
        config: MemoryConfig,
        *,
        host_memory_bytes: int | None = None,
    ) -> int | None:
        """The highest target the VM may be given (``None``: none known). Default: its maximum."""
        return config.maximum_bytes if config.maximum_bytes is not None else stats.configured_bytes

    def check_target(self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig) -> None:
        """Refuse a target this kind does not allow (checked before anything is sent)."""

    def no_figures_reason(self, config: MemoryConfig) -> str | None:
        """Why a running VM's configuration keeps its guest's figures (and its balloon) out of
        reach for as long as it runs, and what to change (``None``: nothing in it says so)."""
        return None

    def frees_nothing_reason(self, config: MemoryConfig) -> str | None:
        """Why lowering a running VM's target gives its host no memory back, only takes it from
        its guest, and what to change (``None``: nothing in its configuration says so)."""
        return None

    # -- configuration ----------------------------------------------------------------------

    def plan_config(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> ConfigUpdate:
        """Check a ``set_config`` request and return the plan: the changes to apply.

        ``update`` holds every field the caller gave (values already parsed); the plan holds
        the fields whose value differs from ``current``, plus what the kind derives (e.g.
        ESXi's share count of a level). Raises the rule's typed error otherwise.
        """
        self._check_request(vm, update, current)
        after = self._derive(vm, update, current)
        variant = self.variant_of(after.applied_to(current))
        caps = self.withhold(self.capabilities(backend=vm.backend, variant=variant.name), current)
        also_live = self.live_fields(vm, current)
        if also_live:
            caps = caps.model_copy(update={"set_live": caps.set_live | also_live})
        plan = after.changes_from(current)
        # A field restated at its value changes nothing, whatever the power state (an
        # idempotent request — Ansible's — on a running VM); a field the VM cannot have at all
        # is refused anyway.
        moving = set(plan.changed())
        asked = [n for n in update.changed() if n in moving or not caps.can_set(n, running=False)]
        check_settable(caps, asked, vm, offline_rules=self.offline_rules)
        if plan.changed():
            self._check_changes(vm, plan, current)
        return plan

    def live_fields(self, vm: VM, current: MemoryConfig) -> frozenset[str]:
        """Offline-only fields this VM may change in its power state all the same (ESXi's memory
        size, grown on a running VM with memory hot-add on); the kind's ``_check_changes``
        holds such a change to its own rules. Default: none."""
        return frozenset()

    def check_config(self, vm: VM, config: MemoryConfig) -> None:
        """Refuse a configuration as a VM would hold it — every field at once, not a change to
        it — that this kind's rules do not allow: the bounds, alignment and relations
        :meth:`plan_config` holds a change to (an ESXi reservation above the limit, a Hyper-V
        minimum above the maximum). A field the VM's variant does not have is not looked at (a
        static Hyper-V VM's leftover range). The fake checks each VM of a scenario with it, the
        defaults of its flavour filled in, so it never simulates a VM its hypervisor would not
        have."""

    def _check_request(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> None:
        """Kind rules on the request as asked, before the fields are checked as settable."""

    def _derive(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> ConfigUpdate:
        """The request plus the fields the hypervisor changes with it (default: none)."""
        return update

    def _check_changes(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        """Kind rules on the fields that change (bounds, alignment, live rules, relations)."""

    def __repr__(self) -> str:
        return f"<Kind {self.name}>"


def _name(vm: VM | None) -> str:
    return repr(vm.name) if vm is not None else "the VM"
