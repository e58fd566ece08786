#!/usr/bin/python
# Copyright: the hvballoon authors
# Apache License 2.0 (see LICENSE in the repository)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: config
short_description: Set a VM's memory configuration (dynamic-memory range, reservation, limit, shares, balloon cap)
version_added: 0.1.0
description:
  - Changes only the memory configuration fields given, to absolute values, through the hvballoon SDK.
  - Idempotent; check mode computes the change without applying it; C(--diff) shows each field
    before and after, per VM.
  # BEGIN generated per-kind by scripts/config_fields.py from hvballoon.models.ConfigUpdate: do not edit
  - "Which options each hypervisor has: KVM O(maximum), O(deflate_on_oom), O(free_page_reporting),
    O(stats_period); ESXi O(maximum), O(reservation), O(limit), O(shares), O(shares_level),
    O(memory_reservation_lock), O(balloon_cap); Hyper-V O(startup), O(minimum), O(maximum),
    O(dynamic), O(buffer_percent), O(priority)."
  # END generated per-kind
  - A field the backend cannot change, or not in the VM's power state, fails with code
    V(unsupported) or V(invalid_state) before anything is sent; a change the hypervisor's rules
    refuse fails the same way, naming the rule in C(error.details.rule). Hyper-V allows, while a
    VM runs, only raising the maximum and lowering the minimum; the others need the VM off.
    Hyper-V's O(minimum), O(maximum) and O(buffer_percent) need Dynamic Memory.
  - "Several VMs (O(vms)) are all resolved, read and their changes checked against each VM's
    configuration and the hypervisor's rules first, and only then changed, one by one. When any
    VM is refused (not found, named twice, a rule) nothing is changed: the task fails with that
    VM's code and C(changed=false). When a VM then fails while being changed (a remote error),
    the others are still changed and the task fails with code V(partial_change) and
    C(changed=true), its C(error.details) listing what was C(applied) and what was
    C(not_applied); RV(results) says what happened to each VM."
  - Check mode reports the same plan, and the same refusals, without changing anything.
author:
  - hvballoon authors (@hvballoon)
extends_documentation_fragment:
  - hvballoon.memory.connection
  - hvballoon.memory.connection.vms
options:
  # BEGIN generated options by scripts/config_fields.py from hvballoon.models.ConfigUpdate: do not edit
  startup:
    description:
      - Hyper-V startup memory (a static VM's memory size).
      - "A size: a string such as V(16GiB) (IEC, powers of 1024) or V(16GB) (SI, powers of 1000), or
        an integer of bytes; a number without a unit below 1 MiB (V(4), meant as V(4GiB)) fails the
        task with code V(invalid_size)."
    type: raw
  minimum:
    description:
      - Hyper-V Dynamic Memory minimum.
      - "A size: a string such as V(16GiB) (IEC, powers of 1024) or V(16GB) (SI, powers of 1000), or
        an integer of bytes; a number without a unit below 1 MiB (V(4), meant as V(4GiB)) fails the
        task with code V(invalid_size)."
    type: raw
  maximum:
    description:
      - The VM's maximum memory (KVM <memory>, ESXi memoryMB, Hyper-V Dynamic Memory maximum).
      - "A size: a string such as V(16GiB) (IEC, powers of 1024) or V(16GB) (SI, powers of 1000), or
        an integer of bytes; a number without a unit below 1 MiB (V(4), meant as V(4GiB)) fails the
        task with code V(invalid_size)."
    type: raw
  dynamic:
    description:
      - Hyper-V Dynamic Memory on or off (the VM must be off).
    type: bool
  buffer_percent:
    description:
      - Hyper-V memory buffer, 5 to 2000 percent.
    type: int
  priority:
    description:
      - Hyper-V memory weight, 0 to 100.
    type: int
  reservation:
    description:
      - ESXi memory reservation (V(0) for none).
      - "A size: a string such as V(16GiB) (IEC, powers of 1024) or V(16GB) (SI, powers of 1000), or
        an integer of bytes; a number without a unit below 1 MiB (V(4), meant as V(4GiB)) fails the
        task with code V(invalid_size)."
    type: raw
  limit:
    description:
      - ESXi memory limit, or V(unlimited) (also V(-1), as vSphere writes it) to remove it.
      - "A size: a string such as V(16GiB) (IEC, powers of 1024) or V(16GB) (SI, powers of 1000), or
        an integer of bytes; a number without a unit below 1 MiB (V(4), meant as V(4GiB)) fails the
        task with code V(invalid_size)."
    type: raw
  shares:
    description:
      - ESXi memory shares, a custom count (the level becomes V(custom); not with a O(shares_level)
        of V(low), V(normal) or V(high)).
    type: int
  shares_level:
    description:
      - "ESXi memory shares as a level: V(low), V(normal) (ESXi's default) or V(high) are 5, 10 or
        20 shares per MB of the VM's memory; V(custom) keeps the current count, or takes O(shares)."
    type: str
    choices: [low, normal, high, custom]
  memory_reservation_lock:
    description:
      - "ESXi memoryReservationLockedToMax (community.vmware's memory_reservation_lock): keep the
        reservation equal to the VM's memory size, and set it so now."
    type: bool
  balloon_cap:
    description:
      - "ESXi balloon cap, sched.mem.maxmemctl: the most the balloon may take (V(0): no
        ballooning)."
      - "A size: a string such as V(16GiB) (IEC, powers of 1024) or V(16GB) (SI, powers of 1000), or
        an integer of bytes; a number without a unit below 1 MiB (V(4), meant as V(4GiB)) fails the
        task with code V(invalid_size)."
    type: raw
  deflate_on_oom:
    description:
      - KVM virtio-balloon deflate-on-OOM (the VM must be off).
    type: bool
  free_page_reporting:
    description:
      - "KVM virtio-balloon free page reporting: the guest hands pages it frees back to the host
        (the VM must be off)."
    type: bool
  stats_period:
    description:
      - KVM balloon statistics period in seconds (V(0) turns the guest's reports off).
    type: int
  # END generated options
attributes:
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
seealso:
  - module: hvballoon.memory.target
  - module: hvballoon.memory.memory_info
"""

EXAMPLES = r"""
- name: Hyper-V dynamic memory range and buffer (running VM, maximum raised only)
  hvballoon.memory.config:
    uri: hyperv://administrator@hv01/?transport=ntlm
    password: "{{ vault_hyperv_password }}"
    vm: web01
    maximum: 24GiB
    buffer_percent: 20
    priority: 80
  delegate_to: localhost

- name: ESXi reservation for the database, no limit, high shares
  hvballoon.memory.config:
    uri: vcenter://automation@vc01/?datacenter=DC1
    password: "{{ vault_vcenter_password }}"
    vm: db01
    reservation: 8GiB
    limit: unlimited
    shares_level: high
  delegate_to: localhost

- name: ESXi, reserve all guest memory of the latency-sensitive VM
  hvballoon.memory.config:
    uri: vcenter://automation@vc01/?datacenter=DC1
    password: "{{ vault_vcenter_password }}"
    vm: rt01
    memory_reservation_lock: true
  delegate_to: localhost

- name: KVM balloon statistics every 5 seconds on every web VM
  hvballoon.memory.config:
    uri: qemu:///system
    vms: [web01, web02, web03]
    stats_period: 5
"""

RETURN = r"""
changes:
  description:
    - One record per VM that got (or, in check mode, would get) its configuration, in the order
      given; empty when a refused VM stopped the task before anything was changed.
  returned: always
  type: list
  elements: dict
  contains:
    vm:
      description: The VM (id, name, backend, host, power_state).
      type: dict
      returned: always
    changed:
      description: Whether any field given differed from the VM's configuration.
      type: bool
      returned: always
    dry_run:
      description: True in check mode (nothing was applied).
      type: bool
      returned: always
    before:
      description: The fields given, as they were (sizes in bytes, a C(limit_bytes) of null is unlimited).
      type: dict
      returned: always
      sample: {"reservation_bytes": 0, "limit_bytes": null}
    after:
      description: The fields given, as they are now (or would be, in check mode).
      type: dict
      returned: always
      sample: {"reservation_bytes": 8589934592, "limit_bytes": null}
    requested:
      description: The fields asked for, parsed.
      type: dict
      returned: always
    mechanism:
      description: The VM's target mechanism.
      type: str
      returned: always
    operation:
      description: The operation, V(set_config).
      type: str
      returned: always
    forced:
      description: Always false (the configuration has no guard rail to override).
      type: bool
      returned: always
    warnings:
      description: Warnings about the change, for example when another VM's refusal stopped it.
      type: list
      elements: str
      returned: always
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
      description: Whether this VM got (or, in check mode or when another VM was refused, would get) its configuration.
      type: bool
      returned: always
    changed:
      description: Whether this VM's configuration was changed (in check mode, whether it would be).
      type: bool
      returned: always
    change:
      description: Its change (as in RV(changes); C(dry_run) and a warning when another VM's refusal stopped it), or null when it failed.
      type: dict
      returned: always
    error:
      description: Its error (message, code, details), or null.
      type: dict
      returned: always
    stats:
      description: Always null (the module does not wait; the record has the target module's shape).
      type: dict
      returned: always
  sample:
    - {"vm": "web01", "ok": true, "changed": false, "change": {"dry_run": true, "changed": true}, "error": null}
    - {"vm": "web99", "ok": false, "changed": false, "change": null, "error": {"code": "vm_not_found"}}
code:
  description:
    - The stable hvballoon error code, for example V(unsupported), V(invalid_state), V(invalid_request).
    - V(partial_change) when some VMs were changed and others were not.
  returned: failure
  type: str
  sample: invalid_state
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
    connect,
    connection_argument_spec,
    exit_bulk,
    fail_error,
    require_sdk,
    required_vms,
    secret_safe,
    set_configs,
    vms_argument_spec,
)

if HAS_HVBALLOON:
    from hvballoon.errors import HVBalloonError
    from hvballoon.models import ConfigUpdate

# BEGIN generated fields by scripts/config_fields.py from hvballoon.models.ConfigUpdate: do not edit
FIELDS = dict(
    startup=dict(type="raw"),
    minimum=dict(type="raw"),
    maximum=dict(type="raw"),
    dynamic=dict(type="bool"),
    buffer_percent=dict(type="int"),
    priority=dict(type="int"),
    reservation=dict(type="raw"),
    limit=dict(type="raw"),
    shares=dict(type="int"),
    shares_level=dict(type="str", choices=["low", "normal", "high", "custom"]),
    memory_reservation_lock=dict(type="bool"),
    balloon_cap=dict(type="raw"),
    deflate_on_oom=dict(type="bool"),
    free_page_reporting=dict(type="bool"),
    stats_period=dict(type="int"),
)
# END generated fields


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(vms_argument_spec())
    argument_spec.update(FIELDS)
    module = secret_safe(AnsibleModule)(
        argument_spec=argument_spec,
        mutually_exclusive=[("vm", "vms")],
        required_one_of=[("vm", "vms"), tuple(FIELDS)],
        supports_check_mode=True,
    )
    require_sdk(module)
    fields = {k: module.params[k] for k in FIELDS if module.params[k] is not None}
    result = dict(changed=False, changes=[], results=[])
    try:
        # a bad value fails once, before connecting; a YAML integer size is what a person typed,
        # held to the rule the target module's size follows (minimum: 4 is a unit left out)
        ConfigUpdate.from_keywords(fields, int_bytes=False)
    except HVBalloonError as exc:
        fail_error(module, exc, **result)
    vms = required_vms(module)
    hv = connect(module)
    try:
        with hv:
            # every VM planned and checked first; applied only when all pass
            res = set_configs(hv, vms, fields, dry_run=module.check_mode)
    except HVBalloonError as exc:  # the request itself (a VM named twice), before anything
        fail_error(module, exc, **result)
    exit_bulk(module, res, result)


if __name__ == "__main__":
    main()
