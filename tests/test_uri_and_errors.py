from __future__ import annotations

import pytest

import hvballoon
from hvballoon import errors
from hvballoon._uri import parse_uri, redact_uri
from hvballoon.errors import HVBalloonError, InvalidURIError


@pytest.mark.parametrize(
    ("uri", "scheme", "user", "host", "port", "query"),
    [
        ("qemu:///system", "qemu", None, None, None, {}),
        ("qemu+ssh://root@kvm01/system", "qemu+ssh", "root", "kvm01", None, {}),
        ("test:///default", "test", None, None, None, {}),
        ("esxi://root@esx01:8443", "esxi", "root", "esx01", 8443, {}),
        (
            "vcenter://admin@vc01/?datacenter=DC1&cluster=C",
            "vcenter",
            "admin",
            "vc01",
            None,
            {"datacenter": "DC1", "cluster": "C"},
        ),
        ("hyperv://admin@hv01:5986/?transport=ntlm", "hyperv", "admin", "hv01", 5986, {"transport": "ntlm"}),
        ("fake://seed?flavor=esxi&seed=3", "fake", None, "seed", None, {"flavor": "esxi", "seed": "3"}),
    ],
)
def test_parse(
    uri: str, scheme: str, user: str | None, host: str | None, port: int | None, query: dict
) -> None:
    p = parse_uri(uri)
    assert (p.scheme, p.username, p.host, p.port, p.query) == (scheme, user, host, port, query)
    assert p.raw == uri


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "seed",
        "://x",
        "esxi://h:99999",
        "esxi://h:port",
        "1abc://x",
        "fake://x#frag",
        "fake://x?a=1&a=2",
        "fake://x\n",
        None,
        42,
        "fake://x?novalue",
    ],
)
def test_malformed_uris_are_typed_errors(bad: object) -> None:
    with pytest.raises(InvalidURIError):
        parse_uri(bad)


@pytest.mark.parametrize(
    "uri", ["esxi://root:hunter2@esx01", "hyperv://a@h/?password=hunter2", "hyperv://a@h/?token=hunter2"]
)
def test_secrets_in_uris_are_refused_without_echo(uri: str) -> None:
    with pytest.raises(InvalidURIError) as info:
        parse_uri(uri)
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(info.value)


def test_redact() -> None:
    assert redact_uri("esxi://root:pw@h:443/x?password=pw&b=2") == "esxi://root:***@h:443/x?password=***&b=2"
    assert redact_uri("qemu:///system") == "qemu:///system"


def test_error_tree_codes_are_unique_and_documented() -> None:
    codes = errors.error_codes()
    assert len({cls for cls in codes.values()}) == len(codes)
    doc = errors.__doc__ or ""
    for code, cls in codes.items():
        assert code in doc and cls.__name__ in doc, f"{cls.__name__} missing from the drawn tree"
        assert issubclass(cls, HVBalloonError)
        assert cls.__name__ in hvballoon.__all__


def test_error_carries_context() -> None:
    err = errors.TargetBelowFloorError("below", vm="web01", backend="fake", details={"floor_bytes": 5})
    d = err.to_dict()
    assert d["code"] == "below_floor" and d["vm"] == "web01" and d["details"]["floor_bytes"] == 5
    assert err.exit_code == 8 and not err.retryable
    assert errors.HVConnectionError("x").retryable and errors.OperationTimeoutError("x").retryable
    assert not errors.HVConnectionError("x", retryable=False).retryable


def test_native_cause_is_kept() -> None:
    try:
        try:
            raise ConnectionResetError("peer reset")
        except ConnectionResetError as exc:
            raise errors.HVConnectionError("lost") from exc
    except errors.HVConnectionError as err:
        assert isinstance(err.native, ConnectionResetError)


def test_docs_have_one_anchor_per_code() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    for code, cls in errors.error_codes().items():
        assert f"{{#{code}}}" in text, f"docs/errors.md lacks an anchor for {code}"
        assert f"`{cls.__name__}` — exit code {cls.exit_code}," in text


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("esxi://root@h:0", "the port must be a number from 1 to 65535"),
        ("esxi://root@h:99999", "the port must be a number from 1 to 65535"),
        ("hyperv://root@h:65536/?transport=ntlm", "the port must be a number from 1 to 65535"),
        ("esxi://root@host name", "the host 'host name' holds a blank"),
        ("vcenter://root@vc 01/?datacenter=DC", "the host 'vc 01' holds a blank"),
    ],
)
def test_a_port_out_of_range_or_a_host_with_a_blank_is_an_invalid_uri_not_a_connection_failure(
    uri: str, said: str
) -> None:
    # refused before connecting: a connection failure would be retryable, and retried in vain
    with pytest.raises(InvalidURIError, match=said) as info:
        hvballoon.connect(uri, password="x", timeout=1)
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("uri", "secret"),
    [
        ("esxi://root:pa#ss@esx01", "pa#ss"),
        ("hyperv://admin:a/b@hv01", "a/b"),
        ("esxi://root:pa?ss@esx01", "pa?ss"),
        ("esxi://root:1234#ss@esx01", "1234#ss"),
        ("esxi://root:12/34@esx01/?x=1", "12/34"),  # a valid port, then the host in the path
        ("vcenter://admin:12?ss@vc01", "12?ss"),
    ],
)
def test_a_password_cut_short_by_a_hash_slash_or_question_mark_is_named_as_a_password(
    uri: str, secret: str
) -> None:
    # not "the port is not a number" (nor a connection to a host named after the user)
    with pytest.raises(InvalidURIError, match="a password must not be part of the URI") as info:
        parse_uri(uri)
    said = str(info.value)
    assert "%23, %2F, %3F" in said and "port" not in said
    assert secret not in said and "***" in said
    assert info.value.hint is not None and "HVBALLOON_PASSWORD" in errors.hint_text(info.value.hint)


@pytest.mark.parametrize(
    ("uri", "host", "port", "query"),
    [
        ("esxi://esx01:443/?user=a@b", "esx01", 443, {"user": "a@b"}),
        ("qemu+ssh://root@kvm01:22/system?keyfile=/k@1", "kvm01", 22, {"keyfile": "/k@1"}),
        ("hyperv://admin%40corp@hv01:5986", "hv01", 5986, {}),
    ],
)
def test_an_at_sign_after_a_port_in_a_query_is_no_password(
    uri: str, host: str, port: int, query: dict[str, str]
) -> None:
    parsed = parse_uri(uri)
    assert (parsed.host, parsed.port, parsed.query) == (host, port, query)


def test_a_port_that_is_no_number_is_still_said_so() -> None:
    with pytest.raises(InvalidURIError, match="the port is not a number"):
        parse_uri("esxi://esx01:abc/")


def test_the_ports_at_the_ends_of_the_range_are_taken() -> None:
    assert parse_uri("esxi://root@h:1").port == 1 and parse_uri("esxi://root@h:65535").port == 65535


@pytest.mark.parametrize(
    "uri",
    [
        "vcenter://admin@vc/?datacenter=",
        "vcenter://admin@vc/?datacenter=DC1&cluster=",
        "esxi://root@esx01/?scheme=",
        "hyperv://admin@hv01/?transport=",
        "fake://seed?flavor=",
        "fake://seed?seed=%20",
        "qmp:///run/qemu?read_only=",
        "qemu+ssh://root@kvm01/system?keyfile=",
    ],
)
def test_a_query_parameter_without_a_value_is_refused_naming_it(uri: str) -> None:
    name = uri.rsplit("&", 1)[-1].rsplit("?", 1)[-1].split("=")[0]
    with pytest.raises(InvalidURIError, match=f"query parameter '{name}' has no value"):
        hvballoon.connect(uri, password="x")


@pytest.mark.parametrize(
    "uri",
    ["vcenter://admin@vc/?datacenter=A&datacenter=B", "fake://seed?seed=1&seed=2", "qemu:///system?a=1&a=1"],
)
def test_a_query_parameter_given_twice_is_refused_naming_it(uri: str) -> None:
    with pytest.raises(InvalidURIError, match=r"query parameter '(datacenter|seed|a)' given twice"):
        hvballoon.connect(uri, password="x")
