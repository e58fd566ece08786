"""The Hyper-V backend: PowerShell over WinRM, with pywinrm: ``hyperv://user@host/?transport=ntlm``.

Installed with hvballoon's ``hyperv`` extra (``pip install 'hvballoon[hyperv]'``, from a clone
``pip install -e '.[hyperv]'``), which brings pywinrm and requests-ntlm (NTLM, the default
transport); Kerberos and CredSSP need ``pip install 'pywinrm[kerberos]'`` / ``'pywinrm[credssp]'``.

```python
import hvballoon

with hvballoon.connect("hyperv://admin@hv01.example/?transport=ntlm", ca_file="ca.pem") as hv:
    print(hv.get_stats())  # every VM, one PowerShell command
```

- :mod:`.backend` — the backend: URIs, mapping, the Dynamic Memory rules (from the Hyper-V kind);
- :mod:`._scripts` — the fixed PowerShell templates; parameters travel as base64 JSON;
- :mod:`._client` — one reused WinRM shell per session, restored once when it breaks;
- :mod:`._errors` — the one table mapping pywinrm, requests and script errors;
- :mod:`._options` — the URI parameters it accepts.

Importing this package imports no pywinrm: it only declares :data:`SPEC` for the registry.
User documentation: ``docs/backends/hyperv.md``; tests: ``tests/backends/hyperv/`` (against the
loopback WinRM peer in ``tests/support/winrm/``).
"""

from hvballoon.registry import BackendSpec

__all__ = ["SPEC"]

SPEC = BackendSpec(
    "hyperv",
    "hvballoon.backends.hyperv.backend:HyperVBackend",
    ("hyperv",),
    extra="hyperv",
    native_module="winrm",
    requirements=("pywinrm>=0.5", "requests-ntlm>=1.2"),
)
