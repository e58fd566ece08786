"""The fast sweep (hand-written SOAP + ElementTree) against pyvmomi's: same figures, same faults."""

from __future__ import annotations

import http.client
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from pyVmomi import vim, vmodl

import hvballoon
from hvballoon.backends.esxi import _fast
from hvballoon.backends.esxi._faults import ERRORS
from hvballoon.errors import (
    BackendError,
    HVConnectionError,
    InvalidRequestError,
    PermissionDeniedError,
    SessionExpiredError,
    VMNotFoundError,
)
from hvballoon.units import MiB
from tests.support.vsphere.fleet import FLEET, connect, vm_figures
from tests.support.vsphere.harness import VcsimServer

NAMES = ["données-é", "日本語の VM", "a<b>&\"c'd", "]]>&amp;", "plain"]

ODD_FLEET: list[dict[str, Any]] = [
    *FLEET,
    *(vm_figures(name) for name in NAMES),
    # zeros everywhere the simulator omits them (read back as unset), limit 0, no quickStats
    vm_figures(
        "zeros01",
        memoryAllocation={"reservation": 0, "limit": 0, "shares": {"level": "low", "shares": 0}},
        quickStats={"guestMemoryUsage": 0, "hostMemoryUsage": 0, "balloonedMemory": 0},
    ),
    vm_figures("empty01", quickStats={}),
    vm_figures("susp01", powerState="suspended"),
]


def _dump(hv: hvballoon.Hypervisor) -> list[dict[str, Any]]:
    stats = [s.model_dump(exclude={"collected_at"}) for s in hv.get_stats()]
    return sorted(stats, key=lambda d: d["vm"]["id"])


@pytest.mark.peer
@pytest.mark.parametrize("page_size", [1, 4, 1000])
def test_both_sweeps_give_identical_stats_and_requests(page_size: int) -> None:
    with VcsimServer(ODD_FLEET, hosts=3) as peer:
        dumps, counts, listed = [], [], []
        for fast in (True, False):
            with connect(peer, fast_sweep=fast, page_size=page_size) as hv:
                peer.reset_counts()
                dumps.append(_dump(hv))
                counts.append(peer.counts())
                listed.append(sorted((v.model_dump() for v in hv.list_vms()), key=lambda d: d["id"]))
    assert dumps[0] == dumps[1]
    assert counts[0] == counts[1]  # the same requests, page for page
    assert listed[0] == listed[1]
    by_name = {d["vm"]["name"]: d for d in dumps[0]}
    assert set(NAMES) <= set(by_name)  # names decoded, not mangled
    zeros = by_name["zeros01"]
    assert zeros["target_bytes"] == 0 and zeros["extra"]["limit_bytes"] == 0
    assert zeros["guest_used_bytes"] is None and zeros["stale"]
    assert by_name["susp01"]["vm"]["power_state"] == "suspended"
    assert by_name["web01"]["compressed_bytes"] == 2048 * 1024
    assert by_name["a<b>&\"c'd"]["configured_bytes"] == 16384 * MiB
    assert all(d["vm"]["host"] and d["vm"]["host"].startswith("DC0_") for d in dumps[0])


@pytest.mark.peer
def test_the_fast_sweep_re_logs_in_once_when_the_session_expired() -> None:
    with VcsimServer(FLEET) as peer, connect(peer) as hv:
        hv.get_stats()
        peer.expire_sessions()
        peer.reset_counts()
        assert len(hv.get_stats()) == len(FLEET)
        counts = peer.counts()
        assert (counts["Login"], counts["RetrievePropertiesEx"]) == (1, 2)


def test_fast_sweep_option_is_validated() -> None:
    with pytest.raises(InvalidRequestError, match="fast_sweep"):
        hvballoon.connect("esxi://root@127.0.0.1:1", password="x", fast_sweep="yes")


# -- requests: every value escaped ---------------------------------------------------------------


def test_requests_escape_every_value() -> None:
    evil = "a<b>&\"c'd</token><x>"
    for envelope in (
        _fast.retrieve_request(evil, evil, [("VirtualMachine", [evil])], 5),
        _fast.continue_request(evil, evil),
    ):
        root = ET.fromstring(envelope)  # still well-formed
        texts = [e.text for e in root.iter() if e.text and "<" in e.text]
        assert texts and all(t == evil for t in texts)
        this = next(e for e in root.iter() if e.tag.endswith("_this"))
        assert this.text == evil and this.get("type") == "PropertyCollector"


# -- answers: values, missing properties, faults ---------------------------------------------------

_ENV = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<soapenv:Body>{}</soapenv:Body></soapenv:Envelope>"
)


def _answer(inner: str) -> bytes:
    return _ENV.format(
        f'<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval>{inner}</returnval>'
        "</RetrievePropertiesExResponse>"
    ).encode()


def test_values_are_decoded_and_missing_properties_are_absent() -> None:
    body = _answer(
        "<token>t&amp;1</token>"
        '<objects><obj type="VirtualMachine">vm-1</obj>'
        '<propSet><name>name</name><val xsi:type="xsd:string">x&lt;&amp;&quot;é</val></propSet>'
        '<propSet><name>runtime.host</name><val type="HostSystem" xsi:type="ManagedObjectReference">'
        "host-9</val></propSet>"
        '<propSet><name>config.memoryAllocation</name><val xsi:type="ResourceAllocationInfo">'
        "<reservation>0</reservation><expandableReservation>false</expandableReservation>"
        "<limit>-1</limit><shares><shares>163840</shares><level>normal</level></shares></val></propSet>"
        '<propSet><name>summary.quickStats.compressedMemory</name><val xsi:type="xsd:long">7</val></propSet>'
        "<missingSet><path>summary.quickStats.guestMemoryUsage</path><fault>"
        '<fault xsi:type="NoPermission"><privilegeId>System.Read</privilegeId></fault></fault>'
        "</missingSet></objects>"
    )
    rows: list[_fast.Row] = []
    assert _fast.parse_result(body, rows) == "t&1"
    ((kind, moid, props),) = rows
    assert (kind, moid) == ("VirtualMachine", "vm-1")
    assert props["name"] == 'x<&"é'
    assert props["runtime.host"] == "host-9"
    assert props["config.memoryAllocation"] == _fast.Allocation(
        reservation=0,
        expandableReservation=False,
        limit=-1,
        shares=_fast.Shares(level="normal", shares=163840),
    )
    assert props["summary.quickStats.compressedMemory"] == 7
    assert "summary.quickStats.guestMemoryUsage" not in props


def test_an_empty_answer_has_no_rows_and_no_token() -> None:
    body = _ENV.format('<RetrievePropertiesExResponse xmlns="urn:vim25"/>').encode()
    rows: list[_fast.Row] = []
    assert _fast.parse_result(body, rows) is None and rows == []


def _fault(xsi_type: str, msg: str = "boom") -> bytes:
    return _ENV.format(
        "<soapenv:Fault><faultcode>ServerFaultCode</faultcode>"
        f"<faultstring>{msg}</faultstring><detail>"
        f'<{xsi_type}Fault xmlns="urn:vim25" xsi:type="{xsi_type}"></{xsi_type}Fault>'
        "</detail></soapenv:Fault>"
    ).encode()


@pytest.mark.parametrize(
    ("xsi_type", "native", "error"),
    [
        ("NotAuthenticated", vim.fault.NotAuthenticated, SessionExpiredError),
        ("NoPermission", vim.fault.NoPermission, PermissionDeniedError),
        ("ManagedObjectNotFound", vmodl.fault.ManagedObjectNotFound, VMNotFoundError),
        ("InvalidArgument", vmodl.fault.InvalidArgument, InvalidRequestError),
        ("NoSuchFaultType", vmodl.MethodFault, BackendError),
    ],
)
def test_faults_become_the_same_pyvmomi_type_and_hvballoon_error(
    xsi_type: str, native: type[BaseException], error: type[Exception]
) -> None:
    with pytest.raises(native) as raw:
        _fast.parse_result(_fault(xsi_type, "the &lt;msg&gt;"), [])
    assert type(raw.value) is native and raw.value.msg == "the <msg>"  # type: ignore[attr-defined]
    with pytest.raises(error) as mapped_err:
        with ERRORS.mapped("vc"):
            _fast.parse_result(_fault(xsi_type), [])
    assert isinstance(mapped_err.value.__cause__, native)


class _Resp:
    def __init__(self, status: int, body: bytes, cookie: str | None = None) -> None:
        self.status, self.reason, self._body, self._cookie = status, "Reason", body, cookie

    def read(self) -> bytes:
        return self._body

    def getheader(self, name: str) -> str | None:
        return self._cookie if name == "Set-Cookie" else None


class _Conn:
    def __init__(self, resp: _Resp | Exception) -> None:
        self.resp, self.sent, self.closed = resp, [], False

    def request(self, *args: Any) -> None:
        self.sent.append(args)

    def getresponse(self) -> _Resp:
        if isinstance(self.resp, Exception):
            raise self.resp
        return self.resp

    def close(self) -> None:
        self.closed = True


class _Stub:
    cookie = 'vmware_soap_session="abc"'
    versionId = '"urn:vim25/8.0.1.0"'
    path = "/sdk"

    def __init__(self, conn: _Conn) -> None:
        self.conn, self.returned, self.dropped, self.session = conn, 0, 0, None

    def GetConnection(self) -> _Conn:
        return self.conn

    def ReturnConnection(self, conn: _Conn) -> None:
        self.returned += 1

    def DropConnections(self) -> None:
        self.dropped += 1

    def SetSessionId(self, value: str) -> None:
        self.session = value


def test_soap_call_uses_the_stubs_session_and_pool() -> None:
    stub = _Stub(_Conn(_Resp(200, b"<ok/>", cookie='vmware_soap_session="new"; Path=/')))
    assert _fast.soap_call(stub, "<x/>") == b"<ok/>"
    ((method, path, body, headers),) = stub.conn.sent
    assert (method, path, body) == ("POST", "/sdk", b"<x/>")
    assert headers["Cookie"] == 'vmware_soap_session="abc"' and headers["SOAPAction"] == stub.versionId
    assert stub.returned == 1 and stub.session == "new"


def test_soap_call_drops_the_pool_on_connection_errors_and_refuses_odd_statuses() -> None:
    stub = _Stub(_Conn(ConnectionResetError("reset")))
    with pytest.raises(HVConnectionError), ERRORS.mapped("vc"):
        _fast.soap_call(stub, "<x/>")
    assert stub.dropped == 1 and stub.conn.closed
    stub = _Stub(_Conn(_Resp(503, b"busy")))
    with pytest.raises(http.client.HTTPException):
        _fast.soap_call(stub, "<x/>")
    assert stub.returned == 0 and stub.conn.closed


def test_the_token_is_seen_before_parsing() -> None:
    body = _answer('<token>t&amp;1</token><objects><obj type="VirtualMachine">vm-1</obj></objects>')
    assert _fast.peek_token(body) == "t&1" == _fast.parse_result(body, [])
    last = _answer('<objects><obj type="VirtualMachine">vm-1</obj></objects>')
    assert _fast.peek_token(last) is None and _fast.parse_result(last, []) is None
    # a token after the objects (not the WSDL's order) is not guessed at: the parser finds it
    late = _answer('<objects><obj type="VirtualMachine">vm-1</obj></objects><token>t2</token>')
    assert _fast.peek_token(late) is None and _fast.parse_result(late, []) == "t2"


@pytest.mark.peer
@pytest.mark.parametrize("peek", [True, False], ids=["overlapped", "token_found_late"])
def test_pages_fetched_while_the_last_is_parsed_are_all_there(peek: bool, monkeypatch: Any) -> None:
    fleet = [vm_figures(f"vm{i:03d}") for i in range(23)]
    if not peek:  # a server that puts the token last: every page asked for after parsing
        monkeypatch.setattr(_fast, "peek_token", lambda body: None)
    with VcsimServer(fleet, hosts=2) as peer, connect(peer, page_size=4) as hv:
        peer.reset_counts()
        stats = hv.get_stats()
        counts = peer.counts()
    assert sorted(s.vm.name for s in stats) == [v["name"] for v in fleet]
    assert counts == {"RetrievePropertiesEx": 1, "ContinueRetrievePropertiesEx": 6}  # 25 objects


@pytest.mark.peer
def test_a_fault_on_a_later_page_leaves_no_request_behind() -> None:
    fleet = [vm_figures(f"vm{i:03d}") for i in range(12)]
    with VcsimServer(fleet) as peer, connect(peer, page_size=4) as hv:
        client = hv.backend.client
        original = _fast.parse_result
        calls = []

        def failing_second_page(body: bytes, rows: list[_fast.Row]) -> str | None:
            calls.append(1)
            if len(calls) == 2:
                raise vmodl.MethodFault(msg="a broken page")
            return original(body, rows)

        _fast.parse_result = failing_second_page  # type: ignore[assignment]
        try:
            with pytest.raises(vmodl.MethodFault):
                client.retrieve_view_fast((("VirtualMachine", ("name",)),))
        finally:
            _fast.parse_result = original  # type: ignore[assignment]
        # the page asked for while the broken one was parsed has been answered and read: the
        # connection is back in the pool and the next sweep works
        assert len(hv.get_stats()) == 12
