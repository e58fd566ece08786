"""The KVM (libvirt) backend (registration path; the implementation lands with its own issue)."""

from __future__ import annotations

from typing import ClassVar

import libvirt  # noqa: F401  - imported here so a missing or broken install is detected on load

from hvballoon.backend import Backend, ConnectOptions
from hvballoon.errors import UnsupportedOperationError


class KVMBackend(Backend):
    name: ClassVar[str] = "kvm"

    def __init__(self, opts: ConnectOptions) -> None:
        raise UnsupportedOperationError(
            "the kvm backend is registered but not implemented in this version", backend="kvm"
        )
