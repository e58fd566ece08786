# Copyright: the hvballoon authors
# Apache License 2.0 (see LICENSE in the repository)


class ModuleDocFragment:
    # What every hvballoon.memory module shares: the connection options, the requirements and
    # notes, and the attributes all three have alike (each module adds its own diff_mode).
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - The hypervisor to talk to, as an hvballoon connection URI.
      - "KVM: V(qemu:///system), V(qemu+ssh://root@kvm01/system) (libvirt URIs, passed through)."
      - "ESXi / vCenter: V(esxi://root@esx01), V(vcenter://admin@vc01/?datacenter=DC1&cluster=C1)."
      - "Hyper-V: V(hyperv://administrator@hv01/?transport=ntlm)."
      - "The simulator: V(fake://seed), V(fake://seed?flavor=esxi&state=/tmp/world.db) (a world shared by processes)."
      - A password is never part of the URI; use O(password).
    type: str
    required: true
  password:
    description:
      - The password for the user named in O(uri).
      - If not set, the environment variable E(HVBALLOON_PASSWORD) on the managed host is used.
      - Never logged nor returned.
    type: str
  validate_certs:
    description:
      - Verify the hypervisor's TLS certificate (vCenter / ESXi, WinRM over HTTPS).
      - Turning this off is insecure and reported as a warning.
    type: bool
    default: true
  ca_file:
    description:
      - A PEM CA bundle to verify the hypervisor's certificate with.
    type: path
  timeout:
    description:
      - Seconds each remote call may take before it fails with the error code V(timeout).
    type: float
    default: 30
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  platform:
    description: Runs where the SDK can reach the hypervisor.
    support: full
    platforms: posix
requirements:
  - Python 3.10 or later on the host that runs the module.
  - The hvballoon Python package (C(pip install hvballoon)) and the backend for O(uri)
    (C(pip install 'hvballoon[kvm]'), C(hvballoon[esxi]) or C(hvballoon[hyperv])).
notes:
  - "The module runs where the task runs. For KVM over a local socket run it on the hypervisor
    host; for vCenter / ESXi and Hyper-V run it on the controller (C(delegate_to: localhost))
    or any host that reaches the management API."
  - "On failure the result has C(code) (the stable hvballoon error code, for example V(below_floor),
    V(vm_not_found), V(timeout)), C(retryable) and C(error) (the whole error: message, backend,
    redacted URI, VM, details), so a task can C(retry) only what is worth retrying."
"""

    VMS = r"""
options:
  vm:
    description:
      - One VM, by name or id. Mutually exclusive with O(vms).
      - O(name) is an alias, as community.vmware and community.libvirt name this option.
      - An empty name (a template that rendered empty, say) fails the task with code
        V(invalid_request); it never means every VM. So does a list or a mapping (use O(vms)
        for several VMs).
    type: raw
    aliases: [name]
  vms:
    description:
      - Several VMs, by name or id. Mutually exclusive with O(vm).
      - An empty list, or an empty name in it, fails the task with code V(invalid_request); it
        never means every VM. So does an item that is a list or a mapping.
    type: list
    elements: raw
"""
