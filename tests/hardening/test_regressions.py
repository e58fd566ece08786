"""Regression tests for what the hardening runs found."""

from __future__ import annotations

import pytest

from hvballoon._uri import parse_uri, redact_uri
from hvballoon.errors import InvalidURIError


@pytest.mark.parametrize(
    "uri",
    [
        "://x:s3cret@",  # empty scheme (found by the URI fuzzer)
        "e$xi://root:s3cret@host",  # a scheme the parser rejects
        "esxi://root:s3/cret@host",  # a "/" inside the password: urlsplit sees no password
        "esxi://root:s3?cret@host",
        "esxi://root:s3#cret@host",
        "root:s3cret@host",  # no scheme at all
        "esxi://root:s3cret@host:99999",  # a bad port
    ],
)
def test_a_password_in_a_broken_uri_is_never_echoed(uri: str) -> None:
    with pytest.raises(InvalidURIError) as info:
        parse_uri(uri)
    for text in (str(info.value), repr(info.value), repr(info.value.to_dict())):
        assert "s3" not in text.replace("esxi", "")
    assert "s3" not in redact_uri(uri).replace("esxi", "")


def test_redaction_keeps_ordinary_uris_readable() -> None:
    assert redact_uri("vcenter://admin@vc:8443/?datacenter=DC") == "vcenter://admin@vc:8443/?datacenter=DC"
    assert redact_uri("esxi://root:pw@h1?password=x&a=1") == "esxi://root:***@h1?password=***&a=1"


@pytest.mark.parametrize("module", ["target", "config"])
@pytest.mark.parametrize(
    "names", [{"vm": ""}, {"vm": None}, {"vms": []}, {"vms": [""]}, {"vm": None, "vms": None}]
)
def test_ansible_changing_modules_refuse_an_empty_vm_name(module: str, names: dict[str, object]) -> None:
    """Found by the Ansible fuzzer: an empty or null vm crashed the module with a TypeError."""
    pytest.importorskip("ansible")
    from tests.support.ansible import run_module

    args = {"uri": "fake://seed", **names, "size": "8GiB", "priority": 5}
    if module == "config":
        del args["size"]
    else:
        del args["priority"]
    result = run_module(module, args, check_mode=False)
    assert result["failed"] and not result.get("changed")
    assert "exception" not in result


@pytest.mark.parametrize(
    ("module", "args", "says"),
    [
        # libvirt-python raised OverflowError: its stats period is a C int
        ("config", {"uri": "test:///default", "vm": "test", "stats_period": 2**32}, "2147483647"),
        ("config", {"uri": "fake://seed?flavor=esxi", "vm": "web01", "shares": 10**20}, "2147483647"),
        # a thread's wait raised OverflowError past threading.TIMEOUT_MAX
        ("memory_info", {"uri": "test:///default", "timeout": 1e20}, "at most 3650d"),
    ],
)
def test_ansible_modules_refuse_what_the_hypervisor_cannot_take(
    module: str, args: dict[str, object], says: str
) -> None:
    pytest.importorskip("ansible")
    pytest.importorskip("libvirt")
    from tests.support.ansible import run_module

    result = run_module(module, args, check_mode=False)
    assert result["failed"] and not result.get("changed") and "exception" not in result, result
    assert result["error"]["code"] == "invalid_request" and says in result["msg"], result
