"""The KVM (libvirt) backend of hvballoon."""
