"""The VMware ESXi / vCenter (pyvmomi) backend of hvballoon."""
