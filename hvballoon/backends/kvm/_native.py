"""The one place libvirt-python is imported: it ships no type information, so it is ``Any`` here.

Everything else in this package reaches libvirt through the names below, which keeps the
untyped boundary narrow and lets a missing or broken install fail on import (the registry
tells those two apart).
"""

from __future__ import annotations

import logging
from typing import Any

import libvirt as _libvirt  # type: ignore[import-untyped,unused-ignore]

__all__ = ["libvirt", "libvirt_error", "quiet_libvirt_errors"]

#: The libvirt-python module, untyped.
libvirt: Any = _libvirt

#: ``libvirt.libvirtError``: what every failing libvirt call raises.
libvirt_error: type[Exception] = _libvirt.libvirtError

_log = logging.getLogger("hvballoon.kvm")


def _quiet_error_handler(_ctx: object, err: Any) -> None:
    # libvirt's default handler prints every error to stderr; the backend maps each one onto
    # hvballoon's errors instead, so keep only a debug line (no credentials reach it)
    _log.debug("libvirt: %s", err[2] if isinstance(err, (tuple, list)) and len(err) > 2 else err)


def quiet_libvirt_errors() -> None:
    """Stop libvirt printing its errors to stderr (process-wide; done when a session opens)."""
    _libvirt.registerErrorHandler(_quiet_error_handler, None)
