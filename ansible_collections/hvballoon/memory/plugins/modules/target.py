#!/usr/bin/python
# Copyright: the hvballoon authors
# Apache License 2.0 (see LICENSE in the repository)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: target
short_description: Set a VM's memory target (balloon, ESXi limit, Hyper-V dynamic memory or runtime resize)
version_added: 0.1.0
description:
  - Moves the memory target of one or several VMs to an absolute O(size), through the hvballoon SDK.
  - "What a target means depends on the hypervisor: KVM sets the virtio-balloon target; ESXi sets
    the memory limit (ESXi then inflates the balloon); Hyper-V raises the maximum of a Dynamic
    Memory VM or resizes a static-memory VM at run time."
  - Guard rails refuse a target below what the guest uses plus a safety margin, or when the
    guest's usage is unknown or stale (O(force) overrides), and always refuse a target above the
    VM's maximum. The refusal states the numbers.
  - Idempotent, a VM already at the (aligned) target is reported unchanged.
  - "Several VMs (O(vms)) are resolved, read and checked first, and only then changed, in one bulk
    call where the hypervisor allows (one PowerShell command on Hyper-V, ESXi tasks awaited
    together). When any VM is refused (not found, a guard rail, a live-change rule) nothing is
    changed, unless O(skip_invalid) asks to change the others. When some VMs were changed and
    others failed, the task fails with code V(partial_change) and C(changed=true); RV(results)
    says what happened to each VM."
  - Check mode computes the change without touching anything; C(--diff) shows the target before
    and after, per VM. It fails with the code the run would fail with (V(partial_change) when
    O(skip_invalid) would change some VMs and skip others).
author:
  - hvballoon authors (@hvballoon)
extends_documentation_fragment:
  - hvballoon.memory.connection
  - hvballoon.memory.connection.vms
options:
  size:
    description:
      - The target, absolute. An integer of bytes or a string with a unit.
      - A number without a unit below 1 MiB (V(4), meant as V(4GiB)) fails the task with code
        V(invalid_size), as it would be read as bytes.
      - "IEC units are powers of 1024 (V(6GiB), V(512MiB), V(1.5GiB), also V(6Gi), V(512Mi)); SI units
        are powers of 1000 (V(8GB) is 8,000,000,000 bytes). A bare V(G) or V(M) is refused as ambiguous."
      - The target is rounded up to the backend's granularity (KiB on KVM, MiB on ESXi, 2 MiB on Hyper-V).
    type: raw
    required: true
  force:
    description:
      - Go below the guard rail's floor (the guest may swap or crash). Never above the VM's maximum.
    type: bool
    default: false
  wait:
    description:
      - "After changing, wait until the VM's memory reaches the target (where the backend can observe it:
        KVM and Hyper-V static memory). Not done in check mode."
      - "Where it cannot (an ESXi limit, Hyper-V Dynamic Memory) the target is applied, the task
        warns that it did not wait and succeeds, with the VM's current stats (as C(hvballoon set --wait)
        and the SDK's C(wait_for_target) do)."
      - Fails with code V(balloon_stalled) when the balloon stops short of the target, or V(wait_timeout).
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds O(wait) waits at most.
    type: float
    default: 60
  skip_invalid:
    description:
      - When some of O(vms) are refused before anything is changed, change the others anyway
        (the task then fails with V(partial_change)). By default nothing is changed then.
    type: bool
    default: false
attributes:
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
seealso:
  - module: hvballoon.memory.memory_info
  - module: hvballoon.memory.config
"""

EXAMPLES = r"""
- name: Balloon web01 down to 6 GiB (KVM, on the hypervisor host)
  hvballoon.memory.target:
    uri: qemu:///system
    vm: web01
    size: 6GiB
    wait: true

- name: Cap several VMs at 8 GiB through vCenter (an ESXi memory limit)
  hvballoon.memory.target:
    uri: vcenter://automation@vc01/?datacenter=DC1
    password: "{{ vault_vcenter_password }}"
    vms: [app01, app02]
    size: 8GiB
  delegate_to: localhost

- name: Release the limit again by targeting the configured memory
  hvballoon.memory.target:
    uri: esxi://root@esx01
    password: "{{ vault_esx_password }}"
    vm: app01
    size: 16GiB
  delegate_to: localhost

- name: Below the guard rail, knowingly
  hvballoon.memory.target:
    uri: fake://seed
    vm: batch01
    size: 1GiB
    force: true
"""

RETURN = r"""
changes:
  description:
    - The change of each VM that got its target (or, in check mode, would), in the order given.
    - Empty when a refusal stopped the task before anything was changed (see RV(results)).
  returned: always
  type: list
  elements: dict
  contains:
    vm:
      description: The VM (id, name, backend, host, power_state).
      type: dict
      returned: always
    changed:
      description: Whether the target differed from the requested one.
      type: bool
      returned: always
    dry_run:
      description: True in check mode (nothing was applied).
      type: bool
      returned: always
    forced:
      description: Whether O(force) was used.
      type: bool
      returned: always
    mechanism:
      description: What the target set, V(balloon), V(limit), V(dynamic_memory) or V(runtime_resize).
      type: str
      returned: always
    before:
      description: The target before, as C(target_bytes).
      type: dict
      returned: always
      sample: {"target_bytes": 17179869184}
    after:
      description: The target after (aligned), as C(target_bytes).
      type: dict
      returned: always
      sample: {"target_bytes": 6442450944}
    requested:
      description: The target asked for, in bytes, before alignment.
      type: dict
      returned: always
    warnings:
      description: Warnings, for example when forced below the floor.
      type: list
      elements: str
      returned: always
    operation:
      description: The operation, V(set_target).
      type: str
      returned: always
  sample:
    - vm: {"id": "307c5e41-641f-56de-b145-10e25d9a09e5", "name": "web01", "backend": "kvm"}
      changed: true
      dry_run: false
      mechanism: balloon
      before: {"target_bytes": 17179869184}
      after: {"target_bytes": 6442450944}
results:
  description: One record per VM, in the order given, whatever happened to it.
  returned: always
  type: list
  elements: dict
  contains:
    vm:
      description: The VM as the task named it.
      type: str
      returned: always
    ok:
      description: Whether this VM got (or, in check mode or when another VM was refused, would get) its target.
      type: bool
      returned: always
    changed:
      description: Whether this VM's target was moved (in check mode, whether it would be).
      type: bool
      returned: always
    change:
      description: Its change (as in RV(changes)), or null when it failed.
      type: dict
      returned: always
    error:
      description: Its error (message, code, details), or null.
      type: dict
      returned: always
    stats:
      description: Its memory stats once its target was reached (as in RV(stats)) when O(wait=true), else null.
      type: dict
      returned: always
  sample:
    - {"vm": "app01", "ok": true, "changed": false, "change": {"dry_run": true, "changed": true}, "error": null}
    - {"vm": "nosuch", "ok": false, "changed": false, "change": null, "error": {"code": "vm_not_found"}}
stats:
  description:
    - The memory stats of each VM once its target was reached (see hvballoon.memory.memory_info);
      where the target cannot be observed arriving, its stats right after the change.
  returned: when O(wait=true), not in check mode
  type: list
  elements: dict
code:
  description:
    - The stable hvballoon error code, for example V(below_floor), V(above_maximum), V(invalid_size).
    - V(partial_change) when some VMs were changed and others were not.
  returned: failure
  type: str
  sample: below_floor
retryable:
  description: Whether the error is transient (connection lost, timeout) and worth retrying.
  returned: failure
  type: bool
error:
  description: The whole error (message, code, backend, redacted URI, VM, details with the numbers compared).
  returned: failure
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - after the documentation, by convention

from ansible_collections.hvballoon.memory.plugins.module_utils.hvballoon_common import (  # noqa: E402
    HAS_HVBALLOON,
    connect,
    connection_argument_spec,
    exit_bulk,
    fail_error,
    require_sdk,
    required_vms,
    secret_safe,
    vms_argument_spec,
)

if HAS_HVBALLOON:
    from hvballoon.errors import HVBalloonError
    from hvballoon.units import parse_typed_target


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(vms_argument_spec())
    argument_spec.update(
        size=dict(type="raw", required=True),
        force=dict(type="bool", default=False),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="float", default=60.0),
        skip_invalid=dict(type="bool", default=False),
    )
    module = secret_safe(AnsibleModule)(
        argument_spec=argument_spec,
        mutually_exclusive=[("vm", "vms")],
        required_one_of=[("vm", "vms")],
        supports_check_mode=True,
    )
    require_sdk(module)
    p = module.params
    result = dict(changed=False, changes=[], results=[])
    try:
        parse_typed_target(p["size"], what="size")  # a bad size fails before connecting
    except HVBalloonError as exc:
        fail_error(module, exc, **result)
    vms = required_vms(module)
    waiting = p["wait"] and not module.check_mode
    hv = connect(module)
    try:
        with hv:
            res = hv.set_targets(
                [(ref, p["size"]) for ref in vms],
                dry_run=module.check_mode,
                force=p["force"],
                wait=waiting,
                wait_timeout=p["wait_timeout"],
                skip_invalid=p["skip_invalid"],
            )
    except HVBalloonError as exc:  # the request itself (a VM named twice), before anything
        fail_error(module, exc, **result)
    exit_bulk(module, res, result, stats=waiting)


if __name__ == "__main__":
    main()
