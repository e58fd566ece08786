"""The note a stats view puts on a VM whose balloon gives its host nothing back (a KVM domain
with devices assigned through VFIO: QEMU pins all its memory), from one place for every view:
``hvballoon stats URI``, the fleet's stats (several URIs) and ``hvballoon watch``.

The rule is the kind's (``Kind.frees_nothing_reason`` of the VM's configuration); this module
reads the configurations in bulk and puts the kind's words in each such VM's
``MemoryStats.extra`` under :data:`FREES_NOTHING`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hvballoon.errors import HVBalloonError

if TYPE_CHECKING:
    from hvballoon.models import MemoryConfig, MemoryStats
    from hvballoon.session import Hypervisor

__all__ = ["FREES_NOTHING", "with_frees_nothing_notes", "with_notes_read"]

#: ``MemoryStats.extra`` key of the kind's note on a VM whose balloon gives its host nothing back.
FREES_NOTHING = "frees_nothing_note"


def with_frees_nothing_notes(
    stats: list[MemoryStats], configs: list[MemoryConfig], kind: Any
) -> list[MemoryStats]:
    """``stats`` with the kind's note (:data:`FREES_NOTHING`) in the ``extra`` of each VM whose
    configuration says a lower target frees nothing on the host; the others unchanged."""
    notes = {c.vm.id: kind.frees_nothing_reason(c) for c in configs} if kind is not None else {}
    return [
        s.model_copy(update={"extra": {**s.extra, FREES_NOTHING: notes[s.vm.id]}})
        if notes.get(s.vm.id)
        else s
        for s in stats
    ]


def with_notes_read(
    hv: Hypervisor, stats: list[MemoryStats], *, failed: Callable[[HVBalloonError], None]
) -> list[MemoryStats]:
    """``stats`` of ``hv`` with :func:`with_frees_nothing_notes`, the configurations read in one
    bulk call. A kind without such a rule is not asked (nothing is read); a failed read leaves
    the stats as they are and is handed to ``failed``."""
    from hvballoon.kinds import Kind

    kind = hv.backend.kind
    if kind is None or type(kind).frees_nothing_reason is Kind.frees_nothing_reason or not stats:
        return stats
    try:
        configs = hv.get_configs([s.vm for s in stats])
    except HVBalloonError as exc:
        failed(exc)
        return stats
    return with_frees_nothing_notes(stats, configs, kind)
