"""The VMware ESXi / vCenter (pyvmomi) backend of hvballoon.

hvballoon loads it through the ``hvballoon.backends`` entry point when a URI's scheme is
``esxi`` or ``vcenter``; import :class:`~hvballoon_esxi.backend.ESXiBackend` directly only to
read its declared :data:`~hvballoon_esxi.backend.CAPABILITIES`.
"""

from hvballoon_esxi.backend import CAPABILITIES, ESXiBackend

__all__ = ["CAPABILITIES", "ESXiBackend"]
