"""vSphere test peer: govmomi's vCenter simulator, populated with a test's VMs (see harness)."""
