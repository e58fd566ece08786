"""TLS: ESXi and WinRM refuse a self-signed peer by default, accept it with ``ca_file``, and turning
verification off is explicit and warned about. Environment variables that libraries honour
(REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, PYTHONHTTPSVERIFY, SSL_CERT_FILE) never turn it off."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

import hvballoon
from hvballoon.errors import HVBalloonError
from hvballoon.retry import RetryPolicy
from tests.support.require import require

pytestmark = pytest.mark.peer
NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture(scope="module")
def esxi() -> Iterator[tuple[str, str, str]]:
    from tests.support.vsphere.fleet import FLEET
    from tests.support.vsphere.harness import VcsimServer, prerequisites

    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))
    with VcsimServer(FLEET[:2], https=True) as peer:
        yield f"esxi://{peer.username}@{peer.host}:{peer.port}", peer.password, str(peer.ca_file)


@pytest.fixture(scope="module")
def winrm_peer() -> Iterator[tuple[str, str, str]]:
    from tests.support.hyperv.fakehost import FakeHyperVHost
    from tests.support.hyperv.peer import PASSWORD, USER, require_peer
    from tests.support.winrm.harness import WinRMServer

    require_peer("ntlm", True)
    with WinRMServer(FakeHyperVHost(), transport="ntlm", https=True, users={USER: PASSWORD}) as server:
        assert server.ca_file is not None
        yield f"hyperv://{USER}@{server.host}:{server.port}/?transport=ntlm", PASSWORD, server.ca_file


PEERS = ["esxi", "winrm_peer"]


def _connect(uri: str, password: str, **kw: Any) -> list[Any]:
    with hvballoon.connect(uri, password=password, retry=NO_RETRY, timeout=5, **kw) as hv:
        return hv.list_vms()


@pytest.mark.parametrize("which", PEERS)
def test_self_signed_peer_is_refused_by_default(which: str, request: pytest.FixtureRequest) -> None:
    uri, password, _ = request.getfixturevalue(which)
    with pytest.raises(HVBalloonError) as info:
        _connect(uri, password)
    assert info.value.code == "connection_failed"
    assert "certificate" in str(info.value).lower()


@pytest.mark.parametrize("which", PEERS)
def test_self_signed_peer_is_accepted_with_its_ca(which: str, request: pytest.FixtureRequest) -> None:
    uri, password, ca = request.getfixturevalue(which)
    assert _connect(uri, password, ca_file=ca)


@pytest.mark.parametrize("which", PEERS)
def test_verify_false_works_but_warns(
    which: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    uri, password, _ = request.getfixturevalue(which)
    caplog.set_level(logging.WARNING, logger="hvballoon")
    with pytest.warns(UserWarning, match="verification is OFF"):
        assert _connect(uri, password, verify=False)
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("which", PEERS)
@pytest.mark.parametrize(
    "env",
    [
        {"CURL_CA_BUNDLE": ""},
        {"REQUESTS_CA_BUNDLE": ""},
        {"PYTHONHTTPSVERIFY": "0"},
        {"CURL_CA_BUNDLE": "", "REQUESTS_CA_BUNDLE": "", "PYTHONHTTPSVERIFY": "0"},
    ],
    ids=["curl-empty", "requests-empty", "pythonhttpsverify-0", "all"],
)
def test_environment_never_turns_verification_off(
    which: str, env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    uri, password, _ = request.getfixturevalue(which)
    assert _in_subprocess(uri, password, env) == "refused"


#: what each backend trusts from the environment (measured): ESXi builds its context with the
#: ssl module, so OpenSSL's SSL_CERT_FILE applies (it only chooses the trusted CAs: the peer's
#: certificate is still verified); the WinRM backend trusts requests' certifi bundle or
#: ``ca_file`` only — none of these variables changes what it trusts.
ENV_TRUST = {
    ("esxi", "SSL_CERT_FILE"): "ok",
    ("esxi", "REQUESTS_CA_BUNDLE"): "refused",
    ("esxi", "CURL_CA_BUNDLE"): "refused",
    ("winrm_peer", "SSL_CERT_FILE"): "refused",
    ("winrm_peer", "REQUESTS_CA_BUNDLE"): "refused",
    ("winrm_peer", "CURL_CA_BUNDLE"): "refused",
}


@pytest.mark.parametrize(("which", "var"), sorted(ENV_TRUST))
def test_a_ca_bundle_from_the_environment_only_chooses_trust(
    which: str, var: str, request: pytest.FixtureRequest
) -> None:
    uri, password, ca = request.getfixturevalue(which)
    assert _in_subprocess(uri, password, {var: ca}) == ENV_TRUST[(which, var)]


def _in_subprocess(uri: str, password: str, env: dict[str, str]) -> str:
    import os

    code = textwrap.dedent(
        f"""
        import json, warnings, hvballoon
        from hvballoon.retry import RetryPolicy
        warnings.simplefilter("error")  # a silent downgrade warning would also show up here
        try:
            with hvballoon.connect({uri!r}, password={password!r}, retry=RetryPolicy(max_attempts=1), timeout=5) as hv:
                hv.list_vms()
            print(json.dumps("ok"))
        except hvballoon.HVBalloonError as exc:
            print(json.dumps("refused" if exc.code == "connection_failed" else exc.code))
        """
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout.strip().splitlines()[-1]))
