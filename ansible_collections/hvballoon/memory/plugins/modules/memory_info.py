#!/usr/bin/python
# Copyright: the hvballoon authors
# Apache License 2.0 (see LICENSE in the repository)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_info
short_description: Read guest memory statistics and memory configuration of VMs, and the host's memory
version_added: 0.1.0
description:
  - Returns the memory picture of all VMs on a hypervisor (one bulk call), or of the VMs named, through
    the hvballoon SDK, and optionally each VM's memory configuration and capabilities, and the memory
    picture of each host behind the URI (physical, used and free memory, swap, page sharing, what its
    running VMs were promised and hold in balloons, and the overcommit ratio).
  - "A figure the hypervisor cannot supply is null, never 0: for example Hyper-V reports demand but
    not the guest's used memory; KVM reports guest figures only once the balloon driver has
    reported (the C(stale) flag of the stats says so)."
  - Without O(vm) and O(vms) it reads every VM. An empty O(vm) or O(vms) is refused with code
    V(invalid_request), as hvballoon.memory.target and hvballoon.memory.config refuse it, rather
    than read as every VM.
  - Changes nothing; runs in check mode.
author:
  - hvballoon authors (@hvballoon)
extends_documentation_fragment:
  - hvballoon.memory.connection
  - hvballoon.memory.connection.vms
options:
  gather:
    description:
      - What to read. V(stats) and V(config) are one bulk call each for all the VMs read;
        V(capabilities) may cost a call per VM; V(host) reads each host's figures (one call,
        summing the VMs' stats when V(stats) is read too) into RV(hosts).
    type: list
    elements: str
    choices: [stats, config, capabilities, host]
    default: [stats, config, host]
attributes:
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
seealso:
  - module: hvballoon.memory.target
  - module: hvballoon.memory.config
"""

EXAMPLES = r"""
- name: Memory of every VM on a KVM host
  hvballoon.memory.memory_info:
    uri: qemu:///system
  register: mem

- name: VMs whose guest is short of memory
  ansible.builtin.debug:
    msg: "{{ mem.vms | selectattr('stats.pressure_ratio', 'gt', 0.9) | map(attribute='name') | list }}"

- name: How overcommitted is each ESXi host of a vCenter?
  hvballoon.memory.memory_info:
    uri: vcenter://readonly@vc01/?datacenter=DC1
    password: "{{ vault_vcenter_password }}"
    gather: [host]
  delegate_to: localhost
  register: hosts

- name: Hosts promising more than 1.5 times their memory
  ansible.builtin.debug:
    msg: "{{ hosts.hosts | selectattr('overcommit_ratio', 'gt', 1.5) | map(attribute='host') | list }}"

- name: Two VMs through vCenter, stats only
  hvballoon.memory.memory_info:
    uri: vcenter://readonly@vc01/?datacenter=DC1
    password: "{{ vault_vcenter_password }}"
    vms: [db01, app01]
    gather: [stats]
  delegate_to: localhost
"""

RETURN = r"""
backend:
  description: The backend that answered (V(kvm), V(esxi), V(hyperv), V(fake)).
  returned: success
  type: str
  sample: kvm
uri:
  description: The URI, redacted (no password).
  returned: success
  type: str
  sample: qemu:///system
capabilities:
  description: What the backend can read and change (mechanism, settable fields live and offline, alignment).
  returned: success
  type: dict
vms:
  description: One entry per VM, in the hypervisor's order (or the order given); a VM named twice (by name and by id, say) has one entry.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The VM's name.
      type: str
      returned: always
    id:
      description: The VM's backend-unique id.
      type: str
      returned: always
    power_state:
      description: V(running), V(stopped), V(paused), V(suspended) or V(unknown).
      type: str
      returned: always
    host:
      description: The hypervisor host the VM runs on.
      type: str
      returned: always
    backend:
      description: The backend that reported the VM (as RV(backend)).
      type: str
      returned: always
    stats:
      description:
        - The memory stats, sizes in bytes (C(configured_bytes), C(current_bytes), C(target_bytes),
          C(ballooned_bytes), C(guest_used_bytes), C(guest_available_bytes), C(demand_bytes),
          C(swapped_bytes), ...), C(pressure_ratio) and C(stale).
        - C(used_bytes) is what the guest needs on every backend (guest used, else demand, as
          Hyper-V reports only demand); plan with it for playbooks that run on any hypervisor.
      type: dict
      returned: when V(stats) is in O(gather)
      sample: {"configured_bytes": 17179869184, "current_bytes": 17179869184, "guest_used_bytes": 3221225472, "stale": false}
    config:
      description: The memory configuration (C(maximum_bytes), C(reservation_bytes), C(limit_bytes), C(dynamic), ...).
      type: dict
      returned: when V(config) is in O(gather)
    capabilities:
      description: The VM's own capabilities (its mechanism may differ from the backend's, for example on Hyper-V).
      type: dict
      returned: when V(capabilities) is in O(gather)
hosts:
  description:
    - One entry per hypervisor host behind the URI (a vCenter has several), sizes in bytes; a figure the
      hypervisor cannot supply is null, never 0.
    - C(physical_bytes), C(used_bytes), C(free_bytes), C(hypervisor_overhead_bytes), C(swap_total_bytes),
      C(swap_used_bytes), C(shared_bytes) come from the host; C(vms_running), C(vm_configured_bytes) (what the
      running VMs were promised), C(vm_current_bytes) and C(ballooned_bytes) are sums over its running VMs;
      C(overcommit_ratio) is C(vm_configured_bytes) / C(physical_bytes).
  returned: when V(host) is in O(gather)
  type: list
  elements: dict
  sample: [{"host": "host01", "physical_bytes": 128849018880, "vm_configured_bytes": 171798691840, "vms_running": 10, "overcommit_ratio": 1.3333}]
code:
  description: The stable hvballoon error code, for example V(vm_not_found), V(connection_failed).
  returned: failure
  type: str
retryable:
  description: Whether the error is transient and worth retrying.
  returned: failure
  type: bool
error:
  description: The whole error (message, code, backend, redacted URI, VM, details).
  returned: failure
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - after the documentation, by convention

from ansible_collections.hvballoon.memory.plugins.module_utils.hvballoon_common import (  # noqa: E402
    HAS_HVBALLOON,
    capabilities_result,
    connect,
    connection_argument_spec,
    fail_error,
    require_sdk,
    secret_safe,
    selected_vms,
    vms_argument_spec,
)

if HAS_HVBALLOON:
    from hvballoon.errors import HVBalloonError


def _entry(vm):
    return dict(
        name=vm.name,
        id=vm.id,
        power_state=vm.power_state.value,
        host=vm.host,
        backend=vm.backend,
    )


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(vms_argument_spec())
    argument_spec.update(
        gather=dict(
            type="list",
            elements="str",
            choices=["stats", "config", "capabilities", "host"],
            default=["stats", "config", "host"],
        )
    )
    module = secret_safe(AnsibleModule)(
        argument_spec=argument_spec,
        mutually_exclusive=[("vm", "vms")],
        supports_check_mode=True,
    )
    require_sdk(module)
    gather = set(module.params["gather"])
    hv = connect(module)
    try:
        with hv:
            wanted = selected_vms(module)
            vms = hv.resolve_many(wanted) if wanted else hv.list_vms()
            # a VM named twice (or by name and by id) is reported once, as the SDK's reads do
            once = {}
            for vm in vms:
                once.setdefault(vm.id, vm)
            vms = list(once.values())
            entries = [_entry(vm) for vm in vms]
            sweep = None
            if "stats" in gather:
                sweep = hv.get_stats(vms if wanted else None)
                by_id = {s.vm.id: s for s in sweep}
                for entry in entries:
                    stats = by_id.get(entry["id"])
                    entry["stats"] = stats.model_dump(mode="json", exclude={"vm"}) if stats else None
            # one bulk read of every VM's configuration (one PropertyCollector read on ESXi, one
            # command on Hyper-V), not a call per VM
            configs = {c.vm.id: c for c in hv.get_configs(vms)} if "config" in gather and vms else {}
            for entry, vm in zip(entries, vms, strict=True):
                if "config" in gather:
                    config = configs.get(vm.id) or hv.get_config(vm)
                    entry["config"] = config.model_dump(mode="json", exclude={"vm"})
                if "capabilities" in gather:
                    entry["capabilities"] = capabilities_result(hv.vm_capabilities(vm))
            result = dict(
                changed=False,
                backend=hv.backend_name,
                uri=hv.uri,
                capabilities=capabilities_result(hv.capabilities),
                vms=entries,
            )
            if "host" in gather:
                # a sweep of every VM is summed as it is; of some VMs only, the host reads its own
                hosts = hv.get_host_stats(vm_stats=sweep if sweep is not None and not wanted else None)
                result["hosts"] = [h.model_dump(mode="json") for h in hosts]
    except HVBalloonError as exc:
        fail_error(module, exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
