"""The QMP backend of hvballoon: ``hvballoon.connect("qmp:///var/run/qemu-server")``.

QEMU's own monitor protocol over its UNIX sockets, without libvirt: Proxmox VE nodes, hand-rolled
QEMU, CI runners. Installed as the ``hvballoon-qmp`` distribution and found through the
``hvballoon.backends`` entry-point group; it needs ``qemu.qmp``, QEMU's own QMP client library.
"""

from hvballoon_qmp.backend import CAPABILITIES, QMPBackend

__all__ = ["CAPABILITIES", "QMPBackend"]
