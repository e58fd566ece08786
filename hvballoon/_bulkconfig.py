"""Changing configurations: one VM's plan (``set_config``), and many VMs read in one bulk read,
all planned before any is changed (``set_configs``); one :class:`~hvballoon.TargetResults`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hvballoon._results import (
    TargetResults,
    TargetsInterrupted,
    held_back,
    interrupt_held,
    keyed_pairs,
    log_changes,
    named_twice,
)
from hvballoon._sessioncore import VMRef, _SessionCore
from hvballoon.errors import HVBalloonError, InvalidRequestError
from hvballoon.models import VM, Change, ConfigUpdate, MemoryConfig

log = logging.getLogger("hvballoon")

_CHANGED_CONFIG = "changed memory config of %s: %s"
#: The configuration fields no backend's VM row (``VM.extra``) shows: a change of these alone
#: leaves what the session knows of the VM as it was.
_NOT_IN_VM_ROWS = frozenset({"stats_period_seconds"})
#: The warning of a change a Ctrl-C kept from being sent (reported as a dry run).
_NOT_SENT = "not applied: interrupted (Ctrl-C) before it was sent"


def _config_vm(config: MemoryConfig) -> VM:
    return config.vm


class _BulkConfigs(_SessionCore):
    """Plans and applies configuration changes (``set_config`` is one VM of it)."""

    def _plan_config(
        self, current: MemoryConfig, update: ConfigUpdate, dry_run: bool
    ) -> tuple[Change, ConfigUpdate]:
        """``update`` put through the backend's and its hypervisor's rules against the VM's
        ``current`` configuration: the :class:`Change` it makes and the plan to apply."""
        vm = current.vm
        caps = self._backend.vm_capabilities(vm)
        plan: ConfigUpdate = self._call(
            "check_config", lambda: self._backend.plan_config(vm, update, current), vm.name
        )
        wanted, changes = update.fields(), plan.fields()
        before = {k: getattr(current, k) for k in (*wanted, *changes)}
        change = Change(
            vm=vm,
            operation="set_config",
            changed=bool(changes),
            dry_run=dry_run,
            mechanism=caps.mechanism,
            before=before,
            after={**before, **changes},
            requested=wanted,
        )
        return change, plan

    def _apply_config(self, current: MemoryConfig, plan: ConfigUpdate, *, logged: bool = True) -> None:
        """Apply ``plan`` to the VM; logged at INFO unless ``logged`` is false (a bulk call
        logs its changes together: :func:`~hvballoon._results.log_changes`)."""
        vm = current.vm
        try:
            self._call("set_config", lambda: self._backend.apply_config(vm, plan, current), vm.name)
        finally:
            # what the index knows of the VM (e.g. Hyper-V's Dynamic Memory flag) may be old now;
            # a stats period shows in no VM row, and the controller's first round sets it on
            # every VM: forgetting them all sent each of the round's marks to look its VM up
            if set(plan.changed()) - _NOT_IN_VM_ROWS:
                self._index.forget([vm.id])
        if logged:
            log.info(_CHANGED_CONFIG, vm.name, sorted(plan.fields()))

    def _config_items(self, configs: Any) -> list[tuple[str, VMRef, ConfigUpdate | HVBalloonError]]:
        """``set_configs``'s argument as (key, VM ref, its update or the error of its fields)."""
        items: list[tuple[str, VMRef, ConfigUpdate | HVBalloonError]] = []
        try:
            pairs = keyed_pairs(configs, call="set_configs", value="{option: value}")
        except HVBalloonError as exc:  # a VM named twice: said with the session's context
            raise exc.with_context(backend=self.backend_name, uri=self.uri) from None
        for key, ref, fields in pairs:
            update: ConfigUpdate | HVBalloonError
            if not isinstance(fields, Mapping):
                update = InvalidRequestError(
                    f"the configuration of {key!r} is a mapping {{option: value}}, got {type(fields).__name__}",
                    vm=key,
                )
            else:
                try:
                    update = ConfigUpdate.from_keywords(fields)
                except HVBalloonError as exc:
                    update = exc.with_context(vm=key)
                else:
                    if not update.fields():
                        update = InvalidRequestError(f"no field to change is given for {key!r}", vm=key)
            items.append((key, ref, update))
        return items

    def _set_configs(
        self,
        items: list[tuple[str, VMRef, ConfigUpdate | HVBalloonError]],
        *,
        dry_run: bool,
        skip_invalid: bool,
    ) -> TargetResults:
        results: dict[str, Change | HVBalloonError] = {}
        for key, _ref, update in items:
            if isinstance(update, HVBalloonError):
                results[key] = update.with_context(backend=self.backend_name, uri=self.uri)
        keys = [key for key, _, _ in items if key not in results]
        ref_of = {key: ref for key, ref, _ in items}
        update_of = {key: update for key, _, update in items if isinstance(update, ConfigUpdate)}
        # 1. every VM resolved, read fresh in one bulk read (live rules depend on the power
        # state) and planned before anything is changed
        try:
            reads = self._read_fresh(
                "get_configs", [ref_of[k] for k in keys], self._backend.get_configs, _config_vm
            )
        except HVBalloonError as exc:
            reads = [exc] * len(keys)
        twice = named_twice(
            (k, r.vm) for k, r in zip(keys, reads, strict=True) if not isinstance(r, HVBalloonError)
        )
        planned: dict[str, tuple[Change, ConfigUpdate, MemoryConfig]] = {}
        for key, read in zip(keys, reads, strict=True):
            if isinstance(read, HVBalloonError):
                results[key] = read
                continue
            if key in twice:
                results[key] = twice[key].with_context(backend=self.backend_name, uri=self.uri)
                continue
            try:
                change, plan = self._plan_config(read, update_of[key], dry_run)
            except HVBalloonError as exc:
                results[key] = exc.with_context(backend=self.backend_name, uri=self.uri, vm=read.vm.name)
            else:
                results[key] = change
                planned[key] = (change, plan, read)
        order = [key for key, _, _ in items]

        def answer(applied: bool, made: set[str] | None = None) -> TargetResults:
            ordered = {k: results[k] for k in order}
            return TargetResults(ordered, applied=applied, made=made, backend=self.backend_name, uri=self.uri)

        refused = [key for key in order if isinstance(results[key], HVBalloonError)]
        if refused and not skip_invalid:
            results.update(held_back({k: c for k, (c, _, _) in planned.items()}, refused, len(order)))
            return answer(applied=False)
        if dry_run:
            return answer(applied=False)
        # 2. apply, VM by VM: one VM's failure does not stop the others; a Ctrl-C is held until
        # the VM in flight answers, and the VMs after it are not sent (what was applied is said)
        made: set[str] = set()
        changed: list[tuple[Any, ...]] = []
        not_sent: list[str] = []
        with interrupt_held() as held:
            for key, (change, plan, current) in planned.items():
                if not change.changed:
                    continue
                if held:
                    not_sent.append(key)
                    results[key] = change.model_copy(
                        update={"dry_run": True, "warnings": (*change.warnings, _NOT_SENT)}
                    )
                    continue
                try:
                    self._apply_config(current, plan, logged=False)
                except HVBalloonError as exc:
                    results[key] = exc.with_context(
                        backend=self.backend_name, uri=self.uri, vm=change.vm.name
                    )
                else:
                    made.add(key)
                    changed.append((change.vm.name, sorted(plan.fields())))
            log_changes(log, _CHANGED_CONFIG, changed, "changed the memory configs")
        if held:
            raise TargetsInterrupted(answer(applied=True, made=made), waiting=False, not_sent=not_sent)
        return answer(applied=True, made=made)
