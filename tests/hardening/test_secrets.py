"""A known password appears nowhere: CLI output (text and JSON), stderr, debug logs of hvballoon
and of the backends' libraries, exception text and reprs, Prometheus scrapes, and Ansible -vvv.

Run against the real ESXi and Hyper-V peers with the right password and a wrong one."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

import hvballoon
from hvballoon.errors import HVBalloonError
from hvballoon.retry import RetryPolicy
from tests.support.require import require

SECRET = "Kn0wn-pa55word-7Zq"
WRONG = "Wr0ng-pa55word-4Xy"
LOGGERS = ["", "hvballoon", "pyVmomi", "pyVmomi.VmomiSupport", "winrm", "requests", "urllib3", "spnego"]
NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every logger the SDK or its libraries use, at DEBUG, into one buffer."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    import http.client

    old_debug = http.client.HTTPConnection.debuglevel
    try:
        yield buf
    finally:
        http.client.HTTPConnection.debuglevel = old_debug
        for logger, level in saved:
            logger.setLevel(level)
            logger.removeHandler(handler)


def assert_clean(*texts: Any) -> None:
    for text in texts:
        s = text if isinstance(text, str) else repr(text)
        for secret in (SECRET, WRONG):
            assert secret not in s, f"the password leaked into: {s[:2000]}"


def exercise(hv: Any) -> list[Any]:
    """Every read, a dry run and a real change, and reprs of everything returned."""
    seen: list[Any] = [repr(hv), repr(hv.backend), str(hv.uri), hv.capabilities.model_dump_json()]
    vms = hv.list_vms()
    stats = hv.get_stats()
    seen += [repr(vms), repr(stats), [s.model_dump_json() for s in stats]]
    name = vms[0].name
    cfg = hv.get_config(name)
    seen.append(cfg.model_dump_json())
    for attempt in (lambda: hv.set_target(name, "1MiB"), lambda: hv.set_config(name, priority=150)):
        try:
            attempt()
        except HVBalloonError as exc:
            seen += [str(exc), repr(exc), exc.to_dict(), repr(exc.__cause__), exc.details]
    return seen


def error_texts(exc: BaseException) -> list[Any]:
    out: list[Any] = [str(exc), repr(exc)]
    if isinstance(exc, HVBalloonError):
        out.append(exc.to_dict())
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        out += [str(cause), repr(cause), getattr(cause, "args", ())]
        cause = cause.__cause__ or cause.__context__
    import traceback

    out.append("".join(traceback.format_exception(exc)))
    return out


@pytest.mark.peer
def test_esxi_peer_password_never_shown(debug_log: io.StringIO) -> None:
    from tests.support.vsphere.fleet import FLEET
    from tests.support.vsphere.harness import VcsimServer, prerequisites

    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))
    with VcsimServer(FLEET[:3], https=True, password=SECRET) as peer:
        uri = f"esxi://{peer.username}@{peer.host}:{peer.port}"
        seen: list[Any] = []
        with hvballoon.connect(uri, password=SECRET, ca_file=str(peer.ca_file), retry=NO_RETRY) as hv:
            seen += exercise(hv)
        with pytest.raises(HVBalloonError) as info:
            hvballoon.connect(uri, password=WRONG, ca_file=str(peer.ca_file), retry=NO_RETRY)
        assert info.value.code == "auth_failed"
        seen += error_texts(info.value)
        with pytest.raises(HVBalloonError) as info:  # untrusted certificate
            hvballoon.connect(uri, password=SECRET, retry=NO_RETRY)
        seen += error_texts(info.value)
        seen += cli_run(uri, ca_file=str(peer.ca_file))
        seen += scrape(uri, ca_file=str(peer.ca_file))
    with pytest.raises(HVBalloonError) as info:  # the peer is gone
        hvballoon.connect(uri, password=SECRET, ca_file=str(peer.ca_file), retry=NO_RETRY, timeout=2)
    seen += error_texts(info.value)
    assert_clean(*seen, debug_log.getvalue())


@pytest.mark.peer
def test_hyperv_peer_password_never_shown(debug_log: io.StringIO) -> None:
    from tests.support.hyperv.fakehost import FakeHyperVHost
    from tests.support.hyperv.peer import USER, require_peer
    from tests.support.winrm.harness import WinRMServer

    require_peer("ntlm", True)
    for transport, https in (("ntlm", True), ("basic", True)):
        with WinRMServer(FakeHyperVHost(), transport=transport, https=https, users={USER: SECRET}) as server:
            uri = f"hyperv://{USER}@{server.host}:{server.port}/?transport={transport}"
            seen: list[Any] = []
            with hvballoon.connect(uri, password=SECRET, ca_file=server.ca_file, retry=NO_RETRY) as hv:
                seen += exercise(hv)
            with pytest.raises(HVBalloonError) as info:
                hvballoon.connect(uri, password=WRONG, ca_file=server.ca_file, retry=NO_RETRY)
            assert info.value.code == "auth_failed"
            seen += error_texts(info.value)
            with pytest.raises(HVBalloonError) as info:
                hvballoon.connect(uri, password=SECRET, retry=NO_RETRY)
            seen += error_texts(info.value)
            seen += cli_run(uri, ca_file=server.ca_file)
            seen += scrape(uri, ca_file=server.ca_file)
        assert_clean(*seen, debug_log.getvalue())


def cli_run(uri: str, *, ca_file: str) -> list[str]:
    """stats/vms/set/config/capabilities, text and --json, right and wrong password."""
    from hvballoon.cli import main

    runner = CliRunner()
    out: list[str] = []
    commands = [
        ["vms", uri],
        ["stats", uri, "--json"],
        ["stats", uri],
        ["set", uri, "web01", "1MiB", "--dry-run", "--json"],
        ["set", uri, "web01", "12GiB", "--dry-run"],
        ["config", uri, "web01", "--json"],
        ["config", uri, "web01", "--priority", "500"],
        ["capabilities", uri, "--json"],
        ["stats", uri, uri, "--json"],  # several hosts: the fleet path
    ]
    for password in (SECRET, WRONG):
        for args in commands:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = runner.invoke(
                    main, [*args, "--ca-file", ca_file], env={"HVBALLOON_PASSWORD": password}
                )
            out += [result.output, repr(result.exception)]
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise AssertionError(f"{args}: {result.exception!r}\n{result.output}")
    return out


def scrape(uri: str, *, ca_file: str) -> list[str]:
    pytest.importorskip("prometheus_client")
    from hvballoon.exporter import Exporter
    from hvballoon.fleet import Fleet

    out = []
    for password in (SECRET, WRONG):
        with Fleet([uri], password=password, ca_file=ca_file, host_timeout=10) as fleet:
            out.append(Exporter(fleet, interval=0).render().decode())
    return out


def test_fake_error_paths_and_env_password_never_shown(
    debug_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HVBALLOON_PASSWORD", SECRET)
    seen: list[Any] = []
    for uri in ("fake://seed", f"fake://root:{SECRET}@seed", "esxi://root@127.0.0.1:1", "bogus://x"):
        try:
            with hvballoon.connect(uri, timeout=1, retry=NO_RETRY) as hv:
                seen += exercise(hv)
        except HVBalloonError as exc:
            seen += error_texts(exc)
    from pydantic import SecretStr

    from hvballoon._uri import parse_uri
    from hvballoon.backend import ConnectOptions

    opts = ConnectOptions(
        parse_uri("fake://"), password=SecretStr(SECRET), timeout=1.0, verify=True, ca_file=None, options={}
    )
    seen.append(repr(opts))
    assert_clean(*seen, debug_log.getvalue())


@pytest.mark.slow
def test_ansible_vvv_never_shows_the_password(ansible: Any) -> None:
    result = ansible_run(ansible)
    assert result.returncode in (0, 2), result.stdout[-3000:] + result.stderr[-3000:]
    assert_clean(result.stdout, result.stderr)
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in result.stdout  # the -vvv module args were printed


def ansible_run(ansible: Any) -> Any:
    import subprocess

    play = ansible.tmp / "secret.yml"
    play.write_text(
        "- hosts: web01\n  gather_facts: false\n  tasks:\n"
        "    - hvballoon.memory.memory_info: {uri: '{{ hv_uri }}', vm: web01, password: '{{ hv_secret }}'}\n"
        "    - hvballoon.memory.target: {uri: '{{ hv_uri }}', vm: web01, size: 1MiB, password: '{{ hv_secret }}'}\n"
        "      ignore_errors: true\n"
        "    - hvballoon.memory.config:\n"
        "        {uri: 'esxi://root@127.0.0.1:1', vm: web01, priority: 5, timeout: 1, password: '{{ hv_secret }}'}\n"
        "      ignore_errors: true\n",
        # not tested: a task's `environment:` — ansible-playbook -vvv prints it on the EXEC
        # line (documented in docs/reliability.md); use the modules' no_log `password` option
        encoding="utf-8",
    )
    # as a vaulted variable would be: the playbook's own text holds no password (Ansible quotes
    # the offending playbook line when a task fails)
    extra = ansible.tmp / "secret-vars.yml"
    extra.write_text(f"hv_secret: '{SECRET}'\n", encoding="utf-8")
    env = dict(ansible.env, ANSIBLE_DEBUG="0")
    return subprocess.run(
        ["ansible-playbook", str(play), "-vvv", "-e", f"@{extra}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=ansible.tmp,
    )
