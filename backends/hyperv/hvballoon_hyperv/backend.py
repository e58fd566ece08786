"""The Hyper-V (PowerShell over WinRM) backend (registration path; the implementation lands with its own issue)."""

from __future__ import annotations

from typing import ClassVar

import winrm  # noqa: F401  - imported here so a missing or broken install is detected on load

from hvballoon.backend import Backend, ConnectOptions
from hvballoon.errors import UnsupportedOperationError


class HyperVBackend(Backend):
    name: ClassVar[str] = "hyperv"

    def __init__(self, opts: ConnectOptions) -> None:
        raise UnsupportedOperationError(
            "the hyperv backend is registered but not implemented in this version", backend="hyperv"
        )
