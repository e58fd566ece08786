"""The KVM (libvirt) backend of hvballoon: ``hvballoon.connect("qemu:///system")``.

Installed as the ``hvballoon-kvm`` distribution and found through the ``hvballoon.backends``
entry-point group; it needs libvirt-python (and, under it, libvirt's C library).
"""

from hvballoon_kvm.backend import CAPABILITIES, KVMBackend

__all__ = ["CAPABILITIES", "KVMBackend"]
