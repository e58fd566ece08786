"""Which real peers started, so that the suite can fail a test that starts one unmarked.

Every harness of a real peer (a QEMU guest or machine, the embedded libvirt QEMU driver, the
vSphere simulator, the WinRM server) calls :func:`note_started`; the root ``conftest.py`` takes
the notes after each phase of each test (:func:`take_notes`) and fails a test that started a
peer without the ``peer`` marker — so ``-m "not peer"`` really leaves every real peer out.

    >>> note_started("vSphere simulator")
    >>> take_notes(), take_notes()
    (['vSphere simulator'], [])
"""

from __future__ import annotations

import threading

__all__ = ["note_started", "take_notes"]

_lock = threading.Lock()
_notes: list[str] = []


def note_started(peer: str) -> None:
    """Record that a real peer (``peer`` says which) was started in this process."""
    with _lock:
        _notes.append(peer)


def take_notes() -> list[str]:
    """The peers started since the last call, oldest first; the record is emptied."""
    with _lock:
        notes = list(_notes)
        _notes.clear()
    return notes
