"""Real QEMU processes driven over QMP without libvirt: tiny booted guests and bare paused machines."""
