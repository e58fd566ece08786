"""Real peers the test suite starts itself: QEMU guests (under libvirt and bare, over QMP), a vSphere simulator, a WinRM server."""
