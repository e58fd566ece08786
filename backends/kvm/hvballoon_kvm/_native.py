"""The one place libvirt-python is imported: it ships no type information, so it is ``Any`` here.

Everything else in this package reaches libvirt through the names below, which keeps the
untyped boundary narrow and lets a missing or broken install fail on import (the registry
tells those two apart).
"""

from __future__ import annotations

from typing import Any

import libvirt as _libvirt  # type: ignore[import-untyped,unused-ignore]

__all__ = ["libvirt", "libvirt_error"]

#: The libvirt-python module, untyped.
libvirt: Any = _libvirt

#: ``libvirt.libvirtError``: what every failing libvirt call raises.
libvirt_error: type[Exception] = _libvirt.libvirtError
