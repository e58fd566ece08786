# Copyright: the hvballoon authors
# Apache License 2.0 (see LICENSE in the repository)
"""What the hvballoon.memory modules share: options, the SDK import, connecting, errors, diffs,
and changing several VMs all or nothing."""

from __future__ import annotations

import json
import re
import traceback
import warnings

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    import hvballoon
    from hvballoon._results import first_few
    from hvballoon._uri import uri_secrets
    from hvballoon.errors import (
        BackendUnavailableError,
        HVBalloonError,
        InvalidRequestError,
        PartialChangeError,
    )
    from hvballoon.units import format_size
except ImportError:
    HAS_HVBALLOON = False
    HVBALLOON_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_HVBALLOON = True
    HVBALLOON_IMPORT_ERROR = None


def connection_argument_spec():
    """The options of the ``connection`` doc fragment."""
    return dict(
        uri=dict(type="str", required=True),
        password=dict(type="str", no_log=True, fallback=(env_fallback, ["HVBALLOON_PASSWORD"])),
        validate_certs=dict(type="bool", default=True),
        ca_file=dict(type="path"),
        timeout=dict(type="float", default=30.0),
    )


def vms_argument_spec():
    """``vm`` (alias ``name``, as community.vmware and community.libvirt call it) / ``vms``
    (the ``connection.VMS`` doc fragment)."""
    # raw, not str: Ansible would turn a list or a mapping given by mistake (a template that
    # rendered a list) into its Python text, then looked up as a VM name; selected_vms refuses it
    return dict(vm=dict(type="raw", aliases=["name"]), vms=dict(type="list", elements="raw"))


def hide_uri_secrets(module):
    """Mask every password or token written in a URI (``scheme://user:password@host``,
    ``?password=…``) in whichever option holds it — O(uri), a URI given to another option by
    mistake, an unknown option — in everything the task returns and logs, as Ansible masks
    C(no_log) options. Without the SDK to find them, a URI with user information or a query is
    masked whole. :func:`secret_safe` calls it on the raw arguments, before the argument spec
    checks them: a task the spec refuses echoes its arguments too."""
    for text in _uri_texts(module.params):
        if HAS_HVBALLOON:
            uris = set(_URI_RE.findall(text))
            if _URI_RE.match(text.strip()):
                # a value that is a URI is one whole, blanks included: a password of several
                # words (``esxi://root:correct horse@h``) is all of it a secret
                uris.add(text.strip())
            secrets = [s for uri in uris for s in uri_secrets(uri)]
        else:
            secrets = [text] if ("@" in text or "?" in text) else []
        module.no_log_values.update(secrets)


#: A URI within a text: its scheme, ``://`` and everything up to the next blank.
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S*")


def _escaped_forms(secrets):
    """Every secret of ``secrets`` as an error message may quote it: its ``repr`` (a VM or a
    size is quoted with ``!r``) and its JSON text, where these differ from the secret itself
    (a backslash, a quote, a tab in it). Ansible masks a secret only as written."""
    forms = set()
    for secret in secrets:
        if isinstance(secret, str) and secret:
            for form in (
                repr(secret)[1:-1],
                json.dumps(secret)[1:-1],
                json.dumps(secret, ensure_ascii=False)[1:-1],
            ):
                if form != secret:
                    forms.add(form)
    return forms


def _uri_texts(value):
    """Every text in ``value`` (the module's arguments: nested lists and mappings) that holds
    a URI, the mappings' keys included."""
    if isinstance(value, str):
        if "://" in value:
            yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _uri_texts(key)
            yield from _uri_texts(item)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from _uri_texts(item)


def secret_safe(module_class):
    """``module_class`` (AnsibleModule) masking the URI secrets of its arguments from the
    moment it reads them (:func:`hide_uri_secrets`), before the argument spec is checked and
    the invocation logged: every way out of the module — a refused spec, ``fail_json``, an
    exception, check mode, diff — is masked alike."""

    class SecretSafeModule(module_class):
        def _load_params(self):
            super()._load_params()
            hide_uri_secrets(self)

        # Ansible masks the values of a result, not its mappings' keys (a result keyed by the
        # VMs as named): those are masked here; and each secret as a message quotes it too
        def exit_json(self, **kwargs):
            self.no_log_values.update(_escaped_forms(list(self.no_log_values)))
            super().exit_json(**_utf8(_masked_keys(kwargs, self.no_log_values)))

        def fail_json(self, msg, **kwargs):
            self.no_log_values.update(_escaped_forms(list(self.no_log_values)))
            super().fail_json(_utf8(msg), **_utf8(_masked_keys(kwargs, self.no_log_values)))

    return SecretSafeModule


#: An unpaired UTF-16 surrogate: a Hyper-V VM's name can hold one (names are UTF-16, read
#: through PowerShell's \\uXXXX escapes); UTF-8 cannot, and Ansible refuses the whole result.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _utf8(value):
    """``value`` (a result, at any depth, keys included) with every unpaired surrogate in its
    texts as U+FFFD: one VM's odd name must not fail the task that reads every VM."""
    if isinstance(value, str):
        return _SURROGATE_RE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_utf8(key): _utf8(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_utf8(item) for item in value]
    return value


def _masked_keys(value, secrets):
    """``value`` with every secret in its mappings' keys (at any depth) replaced by asterisks."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, str):
                for secret in sorted((s for s in secrets if isinstance(s, str) and s), key=len, reverse=True):
                    key = key.replace(secret, "********")
            out[key] = _masked_keys(item, secrets)
        return out
    if isinstance(value, (list, tuple)):
        return [_masked_keys(item, secrets) for item in value]
    return value


def require_sdk(module):
    """Fail with Ansible's standard message when the hvballoon package is missing."""
    if not HAS_HVBALLOON:
        module.fail_json(msg=missing_required_lib("hvballoon"), exception=HVBALLOON_IMPORT_ERROR)


def fail_error(module, exc, **result):
    """``fail_json`` with the error's message, stable ``code``, ``retryable`` and the whole error."""
    if isinstance(exc, BackendUnavailableError) and exc.details.get("install"):
        msg = missing_required_lib(
            exc.details.get("distribution") or exc.details.get("missing") or "the hvballoon backend"
        )
        msg = f"{msg} ({exc.message}; install with: {exc.details['install']})"
    else:
        msg = exc.describe("ansible")  # the hint in this interface's words (force: true, …)
    module.fail_json(msg=msg, code=exc.code, retryable=exc.retryable, error=exc.to_dict("ansible"), **result)


def connect(module):
    """Open an hvballoon session from the module's connection options (fails the task on error)."""
    p = module.params
    if not p["validate_certs"]:
        module.warn(
            "validate_certs is false: the hypervisor's TLS certificate is not verified "
            "and the connection can be intercepted"
        )
    try:
        with warnings.catch_warnings():
            # told once through module.warn above, not again on stderr
            warnings.simplefilter("ignore")
            return hvballoon.connect(
                p["uri"],
                password=p["password"],
                timeout=p["timeout"],
                verify=p["validate_certs"],
                ca_file=p["ca_file"],
            )
    except HVBalloonError as exc:
        fail_error(module, exc)
    return None  # not reached: fail_json exits


EMPTY_VMS = "vm or vms must name at least one VM (got an empty or null value)"


def _refuse_empty(module):
    # a typed error, as the SDK's own: code invalid_request, changed false, nothing done
    fail_error(module, InvalidRequestError(EMPTY_VMS), changed=False)


def selected_vms(module):
    """The VMs the task names (``vm`` or ``vms``), or None when it names none (every VM, for
    ``memory_info``). A ``vm`` or ``vms`` that is given but empty (``vm: ""``, ``vms: []``, a
    null or empty name in the list) fails the task: a templated name that rendered empty must
    never fall through to every VM."""
    vm, vms = module.params.get("vm"), module.params.get("vms")
    if vm is None and vms is None:
        return None
    option = "vm" if vm is not None else "vms"
    refs = [vm] if vm is not None else list(vms)
    if not refs or any(r is None or r == "" for r in refs):
        _refuse_empty(module)
    return [_vm_ref(module, option, r) for r in refs]


def _vm_ref(module, option, ref):
    """A VM name or id as text: a string, or a whole number (a name YAML read as one). Anything
    else fails the task, by its type only (a mapping's values are never echoed)."""
    if isinstance(ref, str):
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool):
        return str(ref)
    hint = "; name several VMs with vms: [a, b]" if option == "vm" and isinstance(ref, list) else ""
    fail_error(
        module,
        InvalidRequestError(
            f"{option} must name VMs by name or id (strings), got a {type(ref).__name__}{hint}"
        ),
        changed=False,
    )
    return None  # not reached: fail_json exits


def required_vms(module):
    """The VMs a changing task names; fails the task when ``vm``/``vms`` is empty or null (a
    templated name that rendered empty must never fall through to a crash, nor to every VM)."""
    refs = selected_vms(module)
    if refs is None:
        _refuse_empty(module)
    return refs


def _named_twice(refs):
    """An error when the same name or id is given twice, else None."""
    seen = set()
    for ref in refs:
        if ref in seen:
            return InvalidRequestError(f"VM {ref!r} is named twice: give each VM once", vm=ref)
        seen.add(ref)
    return None


def set_configs(hv, refs, fields, dry_run):
    """``set_config(**fields)`` on every VM of ``refs``, all or nothing, through the SDK's
    ``set_configs``: the answer is a :class:`hvballoon.TargetResults` keyed as the VMs were named.

    Every VM is read in one bulk read and planned first (the backend's and the hypervisor's
    rules); when any VM is refused, or the same VM is named twice, nothing is applied and the
    others' changes come back as a dry run with a warning. Otherwise the VMs that need a change
    get it, one by one; a VM that then fails (a remote error) does not stop the others, and the
    answer's ``error`` is ``partial_change`` when some were changed and others were not.
    """
    twice = _named_twice(refs)
    if twice is not None:
        raise twice.with_context(backend=hv.backend_name, uri=hv.uri)
    return hv.set_configs([(ref, fields) for ref in refs], dry_run=dry_run)


def exit_bulk(module, res, result, stats=False):
    """End a task that changed several VMs from their :class:`hvballoon.TargetResults`:
    ``results`` (one record per VM), ``changes`` (what got, or in check mode would get, its
    change; nothing when a refusal stopped it all), ``changed`` (the whole's and each record's:
    in check mode, what the run would change), the changes' warnings,
    ``stats`` when waited for, ``--diff``; fails with the whole's error (``partial_change``
    when some VMs were changed and others were not), else exits."""
    records = res.records("ansible")
    if module.check_mode:
        # check mode says what the run would do: every VM changed when all pass, the others
        # too when the refused ones are to be skipped, none when a refusal stops it all
        would = res.ok or bool(module.params.get("skip_invalid"))
        kept = list(res.changes.values()) if would else []
        moving = {k for k, c in res.changes.items() if would and c.changed}
        for record in records:
            record["changed"] = record["vm"] in moving
        result["changed"] = bool(moving)
    else:
        kept = list(res.changes.values()) if res.ok or res.applied else []
        result["changed"] = res.changed
    result["results"] = records
    result["changes"] = [change_result(c) for c in kept]
    for change in kept:
        for warning in change.warnings:
            module.warn(f"{change.vm.name}: {warning}")
    if stats:
        result["stats"] = [s.model_dump(mode="json") for s in res.stats.values()]
    if module._diff:
        result["diff"] = [change_diff(c) for c in kept]
    error = res.error
    if error is not None and module.check_mode and moving:
        error = _would_be_partial(res, moving, error)
    if error is not None:
        fail_error(module, error, **result)
    module.exit_json(**result)


def _would_be_partial(res, moving, error):
    """The error the real run fails with when the VMs it skips are refused and others change:
    ``partial_change``, as :attr:`hvballoon.TargetResults.error` says once they have changed."""
    errors = res.errors
    keys = list(res)
    summary = first_few([f"{k}: {e.message}" for k, e in errors.items()], "; ")
    return PartialChangeError(
        f"would change {len(moving)} of {len(keys)} VMs ({first_few(sorted(moving))}); not changed: {summary}",
        backend=error.backend,
        uri=error.uri,
        details={
            "errors": {k: e.to_dict() for k, e in errors.items()},
            "applied": sorted(moving),
            "not_applied": [k for k in keys if k not in moving],
        },
    )


def _readable(fields):
    out = {}
    for key, value in fields.items():
        out[key] = value
        if key.endswith("_bytes"):
            human = key[: -len("_bytes")]
            if value is None:
                out[human] = "unlimited" if key == "limit_bytes" else None
            else:
                out[human] = format_size(value)
    return out


def change_diff(change):
    """One ``--diff`` entry from an hvballoon ``Change``: bytes and IEC sizes, before and after."""
    return {
        "before_header": change.vm.name,
        "after_header": change.vm.name,
        "before": _readable(change.before),
        "after": _readable(change.after),
    }


def capabilities_result(caps):
    """Capabilities as JSON, with their sets as sorted lists (stable output from run to run)."""
    data = caps.model_dump(mode="json")
    for key in ("readable", "set_live", "set_offline"):
        data[key] = sorted(data.get(key) or [])
    return data


def change_result(change):
    """The JSON-ready form of a ``Change`` returned by the modules."""
    return change.model_dump(mode="json")
