"""What a read of the VMs' marks found: each VM's value, and the VMs whose marks it could not read.

A VM whose configuration the hypervisor would not give (ESXi: its ``extraConfig`` answered in
the property collector's ``missingSet``, a permission fault on that VM, a VM being created or
destroyed) has marks nobody knows: it is neither marked nor unmarked. :class:`Marks` is the
dict of the values read (VM id → value, as before) and names those VMs apart, each with the
typed error that says why, so a caller never takes "not read" for "no mark".

>>> from hvballoon.errors import PermissionDeniedError
>>> marks = Marks({"vm-1": "8589934592"}, unreadable={"vm-2": PermissionDeniedError("no", vm="db01")})
>>> marks["vm-1"], "vm-2" in marks, marks.complete, marks.unreadable["vm-2"].code
('8589934592', False, False, 'permission_denied')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hvballoon.errors import HVBalloonError

__all__ = ["Marks"]


class Marks(dict[str, str]):
    """Every VM's value of one mark (VM id → value; a VM without the mark is absent), and in
    :attr:`unreadable` the VMs whose marks could not be read (VM id → the error saying why):
    those are in neither group, not known to be unmarked.

    It compares, copies and serialises as the plain dict of values: check :attr:`complete`
    (or :attr:`unreadable`) before taking a VM's absence for "no mark".
    """

    __slots__ = ("unreadable",)

    def __init__(
        self,
        values: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *,
        unreadable: Mapping[str, HVBalloonError] | None = None,
    ) -> None:
        super().__init__(values)
        #: VM id → why its marks could not be read (a typed error naming the VM).
        self.unreadable: dict[str, HVBalloonError] = dict(unreadable or {})

    def lacks(self, vm_id: str) -> bool:
        """The VM's marks were read and carry no such mark (not merely absent: unread)."""
        return vm_id not in self and vm_id not in self.unreadable

    @property
    def complete(self) -> bool:
        """Every VM's marks were read: a VM absent from the dict has no such mark."""
        return not self.unreadable

    def __repr__(self) -> str:
        if not self.unreadable:
            return super().__repr__()
        return f"Marks({dict(self)!r}, unreadable={sorted(self.unreadable)!r})"
