"""The plug-in point: one small base class every backend implements.

A backend translates between one hypervisor's API and hvballoon's models. It does no guard
rails, no retries and no VM-name resolution — the session (:class:`hvballoon.Hypervisor`) does
those the same way for every backend. It must:

- map every native exception onto :mod:`hvballoon.errors` at its boundary (one table, one
  context manager; match on codes and types, never on message text; ``raise … from exc``);
- put a timeout on every remote call;
- fill a figure it cannot know with ``None``, never ``0``;
- make ``apply_target``/``apply_config`` absolute and idempotent (safe to retry).

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
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import SecretStr

from hvballoon._uri import ParsedURI
from hvballoon.errors import InvalidRequestError, UnsupportedOperationError
from hvballoon.models import VM, Capabilities, MemoryConfig, MemoryStats

__all__ = ["Backend", "ConnectOptions"]


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
    """Base class of every backend. Subclasses set ``name`` and ``schemes``."""

    name: ClassVar[str]
    schemes: ClassVar[tuple[str, ...]]
    #: Backend options :func:`hvballoon.connect` accepts as keywords (others are refused).
    option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, opts: ConnectOptions) -> None:
        unknown = set(opts.options) - set(self.option_names)
        if unknown:
            accepted = ", ".join(sorted(self.option_names)) or "none"
            raise InvalidRequestError(
                f"unknown option(s) for the {self.name} backend: {', '.join(sorted(unknown))}; "
                f"accepted: {accepted}",
                backend=self.name,
                uri=opts.uri.redacted,
            )
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

    # -- optional -------------------------------------------------------------------------

    def vm_capabilities(self, vm: VM) -> Capabilities:
        """Capabilities refined for one VM (e.g. Hyper-V static vs Dynamic Memory)."""
        return self.capabilities

    def apply_config(self, vm: VM, changes: dict[str, Any], current: MemoryConfig) -> None:
        """Apply validated config changes; all or nothing, or raise PartialChangeError."""
        raise UnsupportedOperationError(
            f"the {self.name} backend cannot change memory configuration", backend=self.name
        )

    def target_ceiling(self, vm: VM, stats: MemoryStats, config: MemoryConfig) -> int | None:
        """The highest target this VM may be given (``None``: no ceiling known).

        By default the VM's maximum memory. A backend whose target *is* the maximum (Hyper-V
        Dynamic Memory) returns what the host could give instead.
        """
        return config.maximum_bytes if config.maximum_bytes is not None else stats.configured_bytes

    def check_target(self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig) -> None:
        """Backend rules on a target, checked before anything is sent (also in dry runs)."""

    def check_config(self, vm: VM, changes: dict[str, Any], current: MemoryConfig, *, running: bool) -> None:
        """Backend rules on a config change (e.g. Hyper-V live rules), checked before sending."""

    @property
    def native(self) -> Any:
        """The underlying client object (libvirt connection, ServiceInstance, WinRM session)."""
        return None

    def close(self) -> None:
        """Release the connection. Must be safe to call twice."""

    # time, so that the fake's virtual clock drives wait_for_target instantly
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
