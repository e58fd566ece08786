"""What a session knows about the hypervisor's VMs: a name and id index fed by every read.

Every listing and every sweep of stats or configurations feeds it, so naming a VM costs no
listing once the session has seen it. It is only a *cache of identities*: power states and
figures always come from the read made for the operation itself, never from here.

Entries found by name are trusted for ``ttl_seconds`` (a VM created meanwhile under the same
name would make the name ambiguous); entries found by id are trusted until a read says the VM
is gone (ids are unique and never reused).

>>> from hvballoon.models import VM
>>> index = VMIndex(ttl_seconds=60.0)
>>> index.replace([VM(id="1", name="web01", backend="fake"), VM(id="2", name="db01", backend="fake")])
>>> [v.id for v in index.by_name("web01")], index.by_id("2").name
(['1'], 'db01')
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Iterable

from hvballoon.models import VM

__all__ = ["SUGGESTED_MISSES", "VMIndex"]

#: How alike two names must be to be suggested (:func:`difflib.get_close_matches`' default).
_CLOSE = 0.6
#: How many of the names one call finds missing get close names suggested: each suggestion is a
#: pass over every name known, so a thousand missing names of 10,000 VMs took a minute.
SUGGESTED_MISSES = 10


class VMIndex:
    """Thread-safe id → VM and name → VMs maps, each entry stamped with when it was seen."""

    def __init__(self, *, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: dict[str, tuple[VM, float]] = {}
        self._names: dict[str, dict[str, VM]] = {}
        self._listed_at: float | None = None  # when the last full listing was seen
        self._lowered: dict[str, list[str]] | None = None  # the names by their lower case

    def __len__(self) -> int:
        return len(self._ids)

    def replace(self, vms: Iterable[VM]) -> None:
        """A full listing: forget everything else."""
        now = self._clock()
        ids: dict[str, tuple[VM, float]] = {}
        names: dict[str, dict[str, VM]] = {}
        for vm in vms:
            ids[vm.id] = (vm, now)
            names.setdefault(vm.name, {})[vm.id] = vm
        with self._lock:
            self._ids, self._names = ids, names
            self._listed_at = now
            self._lowered = None

    def listed(self) -> bool:
        """Whether a full listing younger than the TTL fed the index (it then knows every
        name the hypervisor had then, not only those looked up)."""
        at = self._listed_at
        return at is not None and self._clock() - at <= self.ttl_seconds

    def close_names(self, ref: str, *, limit: int = 3) -> list[str]:
        """Up to ``limit`` names known to the index that look like ``ref`` (case-insensitive,
        closest first; :func:`difflib.get_close_matches`), for a "did you mean"."""
        with self._lock:
            if self._lowered is None:  # kept until the names change: one sort, not one a call
                lowered: dict[str, list[str]] = {}
                for name in sorted(self._names):
                    lowered.setdefault(name.lower(), []).append(name)
                self._lowered = lowered
            groups = self._lowered
        matcher = difflib.SequenceMatcher()
        matcher.set_seq2(ref.lower())
        scored = []
        for low, names in groups.items():
            if names == [ref]:
                continue
            matcher.set_seq1(low)
            if matcher.real_quick_ratio() >= _CLOSE and matcher.quick_ratio() >= _CLOSE:
                score = matcher.ratio()
                if score >= _CLOSE:
                    scored.append((-score, low))
        return [name for _, low in sorted(scored) for name in groups[low] if name != ref][:limit]

    def update(self, vms: Iterable[VM]) -> None:
        """Fresh sightings of some VMs (a rename moves the VM to its new name)."""
        now = self._clock()
        with self._lock:
            for vm in vms:
                self._drop(vm.id)
                self._ids[vm.id] = (vm, now)
                if vm.name not in self._names:
                    self._lowered = None
                self._names.setdefault(vm.name, {})[vm.id] = vm

    def forget(self, ids: Iterable[str]) -> None:
        with self._lock:
            for vm_id in ids:
                self._drop(vm_id)

    def settle(self, ref: str, found: Iterable[VM]) -> None:
        """A native lookup of ``ref`` answered ``found``: every other VM this index had under
        that name (or id) no longer has it."""
        found = list(found)
        keep = {vm.id for vm in found}
        with self._lock:
            stale = [i for i in self._names.get(ref, {}) if i not in keep]
            if ref in self._ids and ref not in keep:
                stale.append(ref)
            for vm_id in stale:
                self._drop(vm_id)
        self.update(found)

    def _drop(self, vm_id: str) -> None:
        old = self._ids.pop(vm_id, None)
        if old is not None:
            same = self._names.get(old[0].name)
            if same is not None:
                same.pop(vm_id, None)
                if not same:
                    del self._names[old[0].name]
                    self._lowered = None

    def by_id(self, vm_id: str) -> VM | None:
        entry = self._ids.get(vm_id)
        return entry[0] if entry is not None else None

    def by_name(self, name: str, *, max_age: float | None = -1.0) -> list[VM] | None:
        """The VMs known under ``name``; ``None`` when none is known or any entry is older than
        ``max_age`` seconds (default: the TTL; ``None``: any age), so the caller must look again."""
        limit = self.ttl_seconds if max_age is not None and max_age < 0 else max_age
        with self._lock:
            same = self._names.get(name)
            if not same:
                return None
            if limit is not None:
                oldest = min(self._ids[i][1] for i in same)
                if self._clock() - oldest > limit:
                    return None
            return list(same.values())
