"""Real peers the test suite starts itself: a QEMU guest, a vSphere simulator, a WinRM server."""
