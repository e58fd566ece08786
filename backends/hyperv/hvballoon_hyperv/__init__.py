"""The Hyper-V (PowerShell over WinRM) backend of hvballoon.

hvballoon loads :class:`hvballoon_hyperv.backend.HyperVBackend` for ``hyperv://`` URIs through
the ``hvballoon.backends`` entry point; use it through :func:`hvballoon.connect`, not directly.
"""
