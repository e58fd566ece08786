"""hvballoon: one API for guest memory statistics and balloon / dynamic-memory targets across
KVM (libvirt), VMware ESXi/vCenter and Hyper-V, with a fake backend for tests.

>>> import hvballoon
>>> with hvballoon.connect("fake://seed") as hv:
...     [vm.name for vm in hv.list_vms()][:3]
['web01', 'web02', 'web03']

Importing this package imports no hypervisor library: backends load on first use.
"""

import logging

from hvballoon._version import __version__
from hvballoon.errors import (
    AmbiguousVMError,
    AuthenticationError,
    BackendBrokenError,
    BackendError,
    BackendNotInstalledError,
    BackendUnavailableError,
    BalloonStalledError,
    GuardRailError,
    HVBalloonError,
    HVConnectionError,
    InvalidRequestError,
    InvalidSizeError,
    InvalidStateError,
    InvalidURIError,
    OperationTimeoutError,
    PartialChangeError,
    PermissionDeniedError,
    ScenarioError,
    SessionExpiredError,
    StatsUnavailableError,
    TargetAboveMaximumError,
    TargetBelowFloorError,
    TargetNotObservableWarning,
    UnsupportedOperationError,
    VMNotFoundError,
    WaitTimeoutError,
)
from hvballoon.models import (
    VM,
    Capabilities,
    Change,
    HostStats,
    Mechanism,
    MemoryConfig,
    MemoryStats,
    PowerState,
)
from hvballoon.registry import backends
from hvballoon.retry import RetryPolicy
from hvballoon.session import GuardRails, Hypervisor, TargetResults, TargetsInterrupted, connect
from hvballoon.units import format_size, parse_size

__all__ = [
    "AmbiguousVMError",
    "AuthenticationError",
    "BackendBrokenError",
    "BackendError",
    "BackendNotInstalledError",
    "BackendUnavailableError",
    "BalloonStalledError",
    "Capabilities",
    "Change",
    "GuardRailError",
    "GuardRails",
    "HVBalloonError",
    "HVConnectionError",
    "HostStats",
    "Hypervisor",
    "InvalidRequestError",
    "InvalidSizeError",
    "InvalidStateError",
    "InvalidURIError",
    "Mechanism",
    "MemoryConfig",
    "MemoryStats",
    "OperationTimeoutError",
    "PartialChangeError",
    "PermissionDeniedError",
    "PowerState",
    "RetryPolicy",
    "ScenarioError",
    "SessionExpiredError",
    "StatsUnavailableError",
    "TargetAboveMaximumError",
    "TargetBelowFloorError",
    "TargetNotObservableWarning",
    "TargetResults",
    "TargetsInterrupted",
    "UnsupportedOperationError",
    "VM",
    "VMNotFoundError",
    "WaitTimeoutError",
    "__version__",
    "backends",
    "connect",
    "format_size",
    "parse_size",
]

# A library logs; the application decides where that goes. Without this, logging's "last
# resort" would print hvballoon's warnings on stderr a second time next to the warnings proper.
logging.getLogger("hvballoon").addHandler(logging.NullHandler())
