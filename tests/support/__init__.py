"""Test support: what the tests, the hardening matrix and the benchmarks import.

Nothing here is a test, and nothing here imports a ``conftest.py`` or a test module; the
``conftest.py`` files only turn these into fixtures.

- Real peers the suite starts itself: :mod:`.kvm_guest` (a tiny Linux guest under libvirt's
  embedded QEMU), :mod:`.qmp_guest` (the same guest, and bare machines, under plain QEMU over
  QMP), :mod:`.vsphere` (govmomi's vCenter simulator and the ESXi fleet), :mod:`.winrm` (a
  loopback WinRM server) with :mod:`.hyperv` (the Hyper-V host model behind it).
- In-test peers and fixtures' data: :mod:`.qmp_server` (a QMP server speaking the real
  protocol), :mod:`.libvirt_xml` (hosts for libvirt's test driver), :mod:`.real_guest` (what
  the KVM and QMP real-guest suites share), :mod:`.plugin_backend` (a third-party backend).
- Drivers: :mod:`.cli` (the ``hvballoon`` command, in a subprocess or in-process),
  :mod:`.ansible` (``ansible-playbook`` set-ups, modules run in-process).
- :mod:`.require`: a missing prerequisite skips locally and fails in CI.
- :mod:`.schemas`: ``jsonschema.validate`` with each schema checked once per process.
- :mod:`.source`: the import statements of a Python file, read statically (the layout tests).
"""
