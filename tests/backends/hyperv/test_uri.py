"""hyperv:// URIs and connect options: endpoint, transport, TLS and credentials (no network:
the shell runner is replaced by a recorder)."""

from __future__ import annotations

from typing import Any

import pytest

import hvballoon
from hvballoon.errors import (
    BackendError,
    BackendNotInstalledError,
    InvalidRequestError,
    InvalidURIError,
)
from hvballoon.retry import RetryPolicy

pytest.importorskip("winrm")  # the whole module needs the backend's client library


class RecordingRunner:
    """Stands in for ShellRunner: remembers how it was built, answers the probe."""

    built: list[RecordingRunner] = []  # noqa: RUF012 - a test recorder
    hyperv = True

    def __init__(self, endpoint: str, **kw: Any) -> None:
        self.endpoint, self.kw, self.closed = endpoint, kw, False
        RecordingRunner.built.append(self)

    def run(self, template: Any, params: dict[str, Any]) -> Any:
        return {"host": "HV01", "powershell": "5.1", "hyperv": self.hyperv}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> type[RecordingRunner]:
    import hvballoon.backends.hyperv.backend as backend

    monkeypatch.setattr(backend, "ShellRunner", RecordingRunner)
    monkeypatch.delenv("HVBALLOON_PASSWORD", raising=False)
    RecordingRunner.built = []
    RecordingRunner.hyperv = True
    return RecordingRunner


def connect(uri: str, **kw: Any) -> Any:
    kw.setdefault("password", "pw")
    return hvballoon.connect(uri, retry=RetryPolicy(max_attempts=1), **kw)


@pytest.mark.parametrize(
    ("uri", "endpoint", "transport", "user"),
    [
        ("hyperv://admin@hv01", "https://hv01:5986/wsman", "ntlm", "admin"),
        ("hyperv://admin@hv01/?scheme=http", "http://hv01:5985/wsman", "ntlm", "admin"),
        ("hyperv://admin@hv01:6000/?transport=basic", "https://hv01:6000/wsman", "basic", "admin"),
        ("hyperv://admin@[fe80::1]/?transport=ntlm", "https://[fe80::1]:5986/wsman", "ntlm", "admin"),
        (
            "hyperv://CORP%5Cadmin@hv01.corp.example",
            "https://hv01.corp.example:5986/wsman",
            "ntlm",
            "CORP\\admin",
        ),
        (
            "hyperv://admin%40corp.example@hv01/?transport=NTLM",
            "https://hv01:5986/wsman",
            "ntlm",
            "admin@corp.example",
        ),
    ],
)
def test_endpoint(runner: type[RecordingRunner], uri: str, endpoint: str, transport: str, user: str) -> None:
    with connect(uri, timeout=12.5) as hv:
        assert hv.backend_name == "hyperv"
    (built,) = runner.built
    assert built.endpoint == endpoint
    assert built.kw["transport"] == transport and built.kw["username"] == user
    assert built.kw["verify"] is True and built.kw["ca_file"] is None and built.kw["timeout"] == 12.5
    assert built.kw["password"].get_secret_value() == "pw"
    assert built.closed


def test_tls_options_reach_the_client(runner: type[RecordingRunner], tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with connect("hyperv://admin@hv01", ca_file=str(ca)):
        pass
    with pytest.warns(UserWarning, match="verification is OFF"), connect("hyperv://admin@hv01", verify=False):
        pass
    assert [(r.kw["ca_file"], r.kw["verify"]) for r in runner.built] == [(str(ca), True), (None, False)]


def test_password_from_the_environment(
    runner: type[RecordingRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HVBALLOON_PASSWORD", "from-env")
    with hvballoon.connect("hyperv://admin@hv01"):
        pass
    assert runner.built[0].kw["password"].get_secret_value() == "from-env"


@pytest.mark.parametrize(
    ("uri", "kw", "error", "words"),
    [
        ("hyperv://admin@hv01/?datacenter=x", {}, InvalidURIError, "accepted: scheme, transport"),
        ("hyperv://admin@hv01/?transport=digest", {}, InvalidURIError, "ntlm, kerberos, credssp, basic"),
        ("hyperv://admin@hv01/?scheme=ftp", {}, InvalidURIError, "https or http"),
        ("hyperv:///", {}, InvalidURIError, "names a host"),
        ("hyperv://hv01", {}, InvalidURIError, "needs a user"),
        ("hyperv://admin@hv01", {"password": None}, InvalidRequestError, "HVBALLOON_PASSWORD"),
        ("hyperv://admin@hv01", {"ca_file": "/no/such/ca.pem"}, InvalidRequestError, "not a file"),
        ("hyperv://admin@hv01", {"shell": "pwsh"}, InvalidRequestError, "unknown option"),
    ],
)
def test_refused_before_connecting(
    runner: type[RecordingRunner], uri: str, kw: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        connect(uri, **kw)
    assert runner.built == []


@pytest.mark.parametrize(("transport", "flag"), [("kerberos", "HAVE_KERBEROS"), ("credssp", "HAVE_CREDSSP")])
def test_missing_transport_library_says_what_to_install(
    runner: type[RecordingRunner], monkeypatch: pytest.MonkeyPatch, transport: str, flag: str
) -> None:
    import winrm.transport

    monkeypatch.setattr(winrm.transport, flag, False)
    with pytest.raises(BackendNotInstalledError) as info:
        connect(f"hyperv://admin@hv01/?transport={transport}")
    assert f"pywinrm[{transport}]" in info.value.details["install"]
    monkeypatch.setattr(winrm.transport, flag, True)
    user = "" if transport == "kerberos" else "admin@"  # Kerberos uses the ticket cache
    with connect(f"hyperv://{user}hv01/?transport={transport}", password=None if not user else "pw"):
        pass


def test_host_without_hyperv_is_refused_and_closed(runner: type[RecordingRunner]) -> None:
    runner.hyperv = False
    with pytest.raises(BackendError, match="Install-WindowsFeature Hyper-V-PowerShell"):
        connect("hyperv://admin@hv01")
    assert runner.built[0].closed


def test_password_is_never_shown(runner: type[RecordingRunner]) -> None:
    with connect("hyperv://admin@hv01", password="Sup3r-Secret") as hv:
        shown = repr(hv) + repr(hv.backend.opts) + hv.uri
    assert "Sup3r-Secret" not in shown
