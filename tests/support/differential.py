"""Differential testing: the same public operations on the fake's flavour of a kind and on a
real peer of that kind, compared step by step.

A :class:`Side` is a session and a way to power a VM off behind its back. :func:`run_sequence`
applies each :class:`Op` to both sides (the fake first, then the peer) with the same arguments,
and after each step asserts that both ended the same way — the same error class and
``details["rule"]``, or both succeeded with the same change — and that both now show the same
configuration, target, power state and host totals. What cannot be the same on the two sides
(ids, timing, guest figures) is left out of the comparison, and :class:`Normalise` says which
known, deliberate differences of a kind are set aside.

A size in an op may be relative (``("maximum_bytes", delta)``: that field of the VM's current
configuration plus ``delta``): it is resolved once, from the fake's configuration before the
step (the two sides' configurations were equal after the previous step), so both sides get the
very same value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import event

from hvballoon.errors import HVBalloonError
from hvballoon.models import CONFIG_FIELDS, Change, MemoryConfig, MemoryStats
from hvballoon.session import Hypervisor

__all__ = ["Normalise", "Op", "Side", "outcome", "run_sequence", "snapshot"]

#: Fields of the configuration a step is compared on (every settable field).
COMPARED_CONFIG = tuple(CONFIG_FIELDS)
#: Stats the hypervisor itself keeps (not the guest's report): each side must know the same ones.
#: (``host_consumed_bytes`` is not among them: libvirt's test driver invents it with the guest's
#: figures, where QEMU's resident size is always known.)
HOST_SIDE = (
    "configured_bytes",
    "current_bytes",
    "ballooned_bytes",
    "demand_bytes",
    "swapped_bytes",
    "compressed_bytes",
    "shared_bytes",
)


@dataclass(frozen=True)
class Op:
    """One public operation: ``what`` is ``target``, ``targets``, ``config``, ``configs``,
    ``power_off`` or ``read``; ``vms`` are indexes into the fleet's names, ``values`` one per VM
    (a size for targets, a mapping of ``set_config`` keywords for configs, what a read reads:
    ``stats``, ``config`` or ``capabilities`` of that one VM)."""

    what: str
    vms: tuple[int, ...] = ()
    values: tuple[Any, ...] = ()
    force: bool = False
    dry_run: bool = False
    skip_invalid: bool = False
    #: how the VMs are named: ``name``, ``id`` (each side's own id of that name) or ``case`` (the
    #: name in upper case: names are case-sensitive on every kind)
    ref: str = "name"
    #: a change made twice, as a dry run and then for real: each side's plan must be what it did
    plan: bool = False

    def __repr__(self) -> str:  # short, for Hypothesis' falsifying example
        flags = "".join(f" {k}" for k in ("force", "dry_run", "skip_invalid", "plan") if getattr(self, k))
        by = "" if self.ref == "name" else f" by {self.ref}"
        return f"Op({self.what} {list(zip(self.vms, self.values, strict=False))}{flags}{by})"


@dataclass
class Side:
    """One side of the comparison: a session, and how to power a VM off outside it."""

    name: str
    hv: Hypervisor
    power_off: Callable[[str], None]


@dataclass(frozen=True)
class Normalise:
    """Known differences a kind's comparison sets aside (each says why where it is built)."""

    #: configuration fields the real backend cannot read (``None`` there), where the fake knows
    unreadable: frozenset[str] = frozenset()
    #: host figures whose being known is set aside on both sides (a peer's limit, or another
    #: backend of the kind than the one the fake's flavour shows the host as)
    host_set_aside: frozenset[str] = frozenset()
    #: capabilities whose value is each backend's own (another backend of the kind than the one
    #: the fake's flavour shows), set aside on both sides
    capabilities_set_aside: frozenset[str] = frozenset()


def _resolve(value: Any, cfg: MemoryConfig) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        base = getattr(cfg, value[0])
        return None if base is None else max(0, base + value[1])
    return value


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """How a call ended, in terms both sides can share."""
    return _outcome(fn)


def _change(ch: Change) -> tuple[Any, ...]:
    return (
        "change",
        ch.changed,
        ch.dry_run,
        ch.forced,
        ch.mechanism.value,
        _dict(ch.before),
        _dict(ch.after),
    )


def _dict(d: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in d.items() if k not in ("current_bytes", "used_bytes")))


#: Keys of an error's ``details`` that are each side's own (ids, addresses, native texts).
_OWN_DETAILS = frozenset({"ids", "id", "uri", "moref", "native", "native_message", "stderr"})


def _error(exc: HVBalloonError) -> tuple[Any, ...]:
    details = tuple(sorted((k, repr(v)) for k, v in exc.details.items() if k not in _OWN_DETAILS))
    return ("error", type(exc).__name__, exc.details.get("rule"), details)


def _outcome(fn: Callable[[], Any], names: dict[str, str] | None = None) -> tuple[Any, ...]:
    """How a call ended, in terms both sides can share (``names``: the name of each ref a bulk
    call's rows are keyed by, where a side's own id named a VM)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = fn()
        except HVBalloonError as exc:
            return _error(exc)
    if isinstance(result, Change):
        return _change(result)
    if result is None:
        return ("ok",)
    # TargetResults
    rows = tuple(
        ((names or {}).get(key, key), _error(value) if isinstance(value, HVBalloonError) else _change(value))
        for key, value in result.items()
    )
    summary = None if result.error is None else type(result.error).__name__
    made = tuple(sorted((names or {}).get(ref, ref) for ref in result.made))
    return ("results", result.applied, made, summary, rows)


def snapshot(hv: Hypervisor, names: list[str]) -> dict[str, Any]:
    """What both sides must agree on: per VM its power state, mechanism, configuration and
    target; the host totals of power and configured memory. Guest figures (used, current,
    ballooned, demand, staleness) are left out: each side's guest is its own (libvirt's test
    driver invents its figures, the simulator's are fixed, the fake's move with its physics; the
    fake's ESXi demand is its guest's use, deliberately), and so are the host's own figures."""
    out: dict[str, Any] = {}
    vms = {v.name: v for v in hv.list_vms()}
    assert sorted(vms) == sorted(names), sorted(vms)
    stats = {s.vm.name: s for s in hv.get_stats()}
    configs = {c.vm.name: c for c in hv.get_configs()}
    kind = hv.backend.kind
    for name in names:
        st, cfg = stats[name], configs[name]
        out[name] = {
            "power": vms[name].power_state.value,
            "stats_power": st.vm.power_state.value,
            "mechanism": st.mechanism.value,
            "config_mechanism": cfg.mechanism.value,
            "configured": st.configured_bytes,
            "target": st.target_bytes,
            "known": tuple(n for n in HOST_SIDE if getattr(st, n) is not None),
            # a VM that does not run has no guest to report: every figure known or not, alike
            "resting": None
            if st.vm.power_state.value not in RESTING
            else (st.stale, tuple(n for n in STATS_FIGURES if getattr(st, n) is not None)),
            **{f: getattr(cfg, f) for f in COMPARED_CONFIG},
            # what the kind reads in the configuration beyond its fields: whether a lower frees
            # anything on the host and why (KVM: VFIO devices, huge pages), the ceiling of a target
            "frees_nothing": kind.frees_nothing_reason(cfg) if kind is not None else None,
            "hugepage_bytes": cfg.extra.get("hugepage_bytes"),
            "ceiling": kind.target_ceiling(st.vm, st, cfg) if kind is not None else None,
        }
    hosts = hv.get_host_stats()
    out["_hosts"] = {
        "vms_running": sum(h.vms_running or 0 for h in hosts),
        "vm_configured": sum(h.vm_configured_bytes or 0 for h in hosts),
        "ballooned": sum(h.ballooned_bytes or 0 for h in hosts) if HOST_BALLOON_COMPARED else None,
        # which figures each side knows (their values are each host's own)
        "known": tuple(
            sorted(
                {f for h in hosts for f in HOST_FIGURES if getattr(h, f) is not None}
                | {f"extra.{k}" for h in hosts for k in _pool_keys(h.extra)}
            )
        ),
    }
    caps = hv.capabilities
    out["_capabilities"] = _capabilities(caps)
    out["_vm_capabilities"] = {name: _capabilities(hv.vm_capabilities(name)) for name in names}
    # look-ups: every name, in upper case (another VM's name, or none), and one that is no VM's
    found, missing = hv.find_vms([*names, *(n.upper() for n in names), "ghost"])
    out["_find"] = (tuple(v.name for v in found), tuple(missing))
    return out


#: Power states in which a VM runs no guest. A paused one keeps its last report, which ages: QEMU
#: serves a paused guest's last balloon stats with their last-update time and asks for the next
#: from a timer on the virtual clock, which stops with the vCPUs (hw/virtio/virtio-balloon.c:
#: balloon_stats_get_all, balloon_stats_poll_cb); the fake's kvm flavour does the same.
#: libvirt's test driver is what is unrealistic there: it makes fresh figures up at every call,
#: paused or not (docs/backends/kvm.md), so a paused VM's figures are left to the guest's side.
RESTING = ("stopped", "suspended")
#: Every figure of a VM's stats.
STATS_FIGURES = tuple(n for n in MemoryStats.model_fields if n.endswith(("_bytes", "_seconds", "_faults")))
#: Host figures a side may know or not (the rest are sums over the VMs, or the host's name).
HOST_FIGURES = (
    "physical_bytes",
    "free_bytes",
    "used_bytes",
    "hypervisor_overhead_bytes",
    "swap_total_bytes",
    "swap_used_bytes",
    "shared_bytes",
)
#: The hosts' ballooned sums are compared where the guests are alike (not yet: each side's
#: balloon moves at its own pace).
HOST_BALLOON_COMPARED = False


#: The host's huge-page pool in ``HostStats.extra`` (the kvm backend's keys, the fake's kvm
#: flavour's): which of them a side gives is compared, not whether it knows them (libvirt's
#: test driver on a node file without NUMA cells lists no cell pages: ``None``, and no
#: ``hugepage_pools``, where the fake knows its pool).
POOL_KEYS = ("extra.hugepage_pool_bytes", "extra.hugepage_pool_free_bytes")


def _pool_keys(extra: dict[str, Any]) -> set[str]:
    """The pool keys ``extra`` gives (known or ``None``)."""
    return {k for k in ("hugepage_pool_bytes", "hugepage_pool_free_bytes") if k in extra}


def _capabilities(caps: Any) -> tuple[Any, ...]:
    """What a capability set says, but for the backend's name and its notes (each its own)."""
    data = caps.model_dump(mode="json")
    return tuple(sorted((k, repr(v)) for k, v in data.items() if k not in ("backend", "notes")))


def _normalised(fake: dict[str, Any], real: dict[str, Any], norm: Normalise) -> dict[str, Any]:
    """``fake`` with what ``norm`` sets aside (``real`` too, in place, for the host figures)."""
    fake = {k: dict(v) if isinstance(v, dict) else v for k, v in fake.items()}
    for side in (fake, real):
        side["_hosts"] = {
            **side["_hosts"],
            "known": tuple(f for f in side["_hosts"]["known"] if f not in norm.host_set_aside),
        }
    if norm.capabilities_set_aside:
        for side in (fake, real):

            def kept(caps: tuple[Any, ...]) -> tuple[Any, ...]:
                return tuple(kv for kv in caps if kv[0] not in norm.capabilities_set_aside)

            side["_capabilities"] = kept(side["_capabilities"])
            side["_vm_capabilities"] = {n: kept(c) for n, c in side["_vm_capabilities"].items()}
    for name, row in real.items():
        if name.startswith("_"):
            continue
        for key in norm.unreadable:
            if row[key] is None:
                fake[name][key] = None
    return fake


def _name(names: list[str], i: int) -> str:
    """The fleet's ``i``-th VM; an index past the fleet names a VM that does not exist."""
    return names[i] if i < len(names) else "ghost"


def _refs(hv: Hypervisor, names: list[str], how: str) -> list[str]:
    """The fleet's names as an op names them: by name, by this side's id, or in upper case."""
    if how == "case":
        return [n.upper() for n in names]
    if how == "id":
        ids = {v.name: v.id for v in hv.list_vms()}
        return [ids.get(n, n) for n in names]
    return list(names)


def apply(side: Side, op: Op, names: list[str], args: list[Any]) -> tuple[Any, ...]:
    """``op`` on one side; a planned change is made as a dry run first, which must have said
    what the change then did."""
    if not op.plan or op.dry_run:
        return _apply(side, op, names, args)
    planned = _apply(side, replace(op, dry_run=True, plan=False), names, args)
    done = _apply(side, replace(op, plan=False), names, args)
    assert _undry(planned) == _undry(done), f"{side.name} planned {planned} but did {done}"
    return done


def _undry(out: tuple[Any, ...]) -> tuple[Any, ...]:
    """How a call ended with what marks a dry run taken out: its flag, and of a bulk call
    ``applied``, ``made`` and the summed-up error, which follows them (a real run that changed
    some VMs and refused others sums up as PartialChangeError, its dry run as the refusal's
    class: nothing was changed)."""
    if out[0] == "change":
        return (*out[:2], *out[3:])
    if out[0] == "results":
        return ("results", tuple((key, _undry(row)) for key, row in out[4]))
    return out


def _apply(side: Side, op: Op, names: list[str], args: list[Any]) -> tuple[Any, ...]:
    hv = side.hv
    if op.what != "power_off":
        refs = _refs(hv, names, op.ref)
        back = dict(zip(refs, names, strict=True))
        names = refs

        def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
            return _outcome(fn, back)
    else:
        outcome = _outcome
    if op.what == "target":
        (name,), (size,) = [_name(names, i) for i in op.vms], args
        return outcome(lambda: hv.set_target(name, size, force=op.force, dry_run=op.dry_run))
    if op.what == "targets":
        pairs = [(_name(names, i), a) for i, a in zip(op.vms, args, strict=True)]
        return outcome(
            lambda: hv.set_targets(pairs, force=op.force, dry_run=op.dry_run, skip_invalid=op.skip_invalid)
        )
    if op.what == "config":
        (name,), (kw,) = [_name(names, i) for i in op.vms], args
        return outcome(lambda: hv.set_config(name, **kw, dry_run=op.dry_run))
    if op.what == "configs":
        items = [(_name(names, i), a) for i, a in zip(op.vms, args, strict=True)]
        return outcome(lambda: hv.set_configs(items, dry_run=op.dry_run, skip_invalid=op.skip_invalid))
    if op.what == "power_off":
        (name,) = [_name(names, i) for i in op.vms]
        if name == "ghost":  # nothing to power off
            return ("ok",)
        return outcome(lambda: side.power_off(name))
    if op.what == "read":
        (name,), (what,) = [_name(names, i) for i in op.vms], args
        return outcome(lambda: _read(hv, name, what))
    raise AssertionError(op.what)


def _read(hv: Hypervisor, ref: str, what: str) -> None:
    """One VM's stats, configuration or capabilities read alone (what they say is compared in
    the snapshot: here, that both sides find the VM, or refuse it alike)."""
    if what == "stats":
        (st,) = hv.get_stats([ref])
        assert ref in (st.vm.name, st.vm.id), (ref, st.vm)
    elif what == "config":
        hv.get_config(ref)
    else:
        hv.vm_capabilities(ref)


def run_sequence(fake: Side, real: Side, names: list[str], ops: list[Op], norm: Normalise) -> None:
    """Apply ``ops`` to both sides, comparing outcome and state after each (and before the first)."""
    history: list[Op] = []

    def compare(step: str) -> None:
        want = snapshot(real.hv, names)
        got = _normalised(snapshot(fake.hv, names), want, norm)
        assert got == want, f"after {step} (ops so far {history}): fake {_diff(got, want)}"

    compare("setting up")
    for op in ops:
        history.append(op)
        configs = {c.vm.name: c for c in fake.hv.get_configs()}
        args: list[Any] = []
        for i, value in zip(op.vms, op.values, strict=True):
            cfg = configs.get(_name(names, i), configs[names[0]])  # a ghost's sizes: the first VM's
            if isinstance(value, dict):
                args.append({k: _resolve(v, cfg) for k, v in value.items()})
            else:
                args.append(_resolve(value, cfg))
        got = apply(fake, op, names, args)
        want = apply(real, op, names, args)
        event(
            f"{op.what}: {want[0]} {want[1] if want[0] == 'error' else ''} {want[2] if want[0] == 'error' else ''}"
        )
        assert got == want, f"{op!r} with {args}: fake {got} but peer {want} (ops so far {history})"
        compare(repr(op))


def _diff(got: dict[str, Any], want: dict[str, Any]) -> str:
    parts = []
    for name in sorted(set(got) | set(want)):
        a, b = got.get(name, {}), want.get(name, {})
        if not isinstance(a, dict) or not isinstance(b, dict):
            if a != b:
                parts.append(f"{name}={a!r} vs peer {b!r}")
            continue
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                parts.append(f"{name}.{key}={a.get(key)!r} vs peer {b.get(key)!r}")
    return "; ".join(parts)
