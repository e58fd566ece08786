"""The fast bulk sweep: ``RetrievePropertiesEx`` as hand-written SOAP, read with ElementTree.

pyvmomi turns every property of every object into a Python data object through its generic
SOAP deserializer; for a sweep of thousands of VMs that costs more than the server's work. Here
the same requests (``RetrievePropertiesEx``, then ``ContinueRetrievePropertiesEx`` per token)
go over the pyvmomi stub's own connection pool — same session cookie, TLS context and
timeouts — and the answer is parsed with :mod:`xml.etree.ElementTree` straight into plain
values: strings, ints, bools, moref ids (``"host-12"``) and, for a ``ResourceAllocationInfo``,
an :class:`Allocation`.

Every value placed in a request (moref ids, the token, property paths) is XML-escaped. A SOAP
fault is raised as the pyvmomi fault class named by its ``xsi:type`` (with its message), so the
caller's fault table and the transparent re-login on ``NotAuthenticated`` work unchanged.
Properties listed in an object's ``missingSet`` are absent, and their faults are under
:data:`MISSING`, as :meth:`~hvballoon.backends.esxi._client.Client.retrieve` gives them.
"""

from __future__ import annotations

import http.client
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from xml.sax.saxutils import escape, quoteattr, unescape

from pyVmomi import VmomiSupport as _VmomiSupport
from pyVmomi import vmodl as _vmodl

# pyvmomi's types are generated at run time: typed as Any at this boundary, and only here.
VmomiSupport: Any = _VmomiSupport
vmodl: Any = _vmodl

__all__ = [
    "MISSING",
    "Allocation",
    "OptionValue",
    "Row",
    "Shares",
    "continue_request",
    "parse_result",
    "peek_token",
    "retrieve_request",
    "soap_call",
]

_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_V = "{urn:vim25}"
_SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"

_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
)

#: The key under which a retrieved object's properties lists the paths it could not read, with
#: their faults (``RetrievePropertiesEx``'s ``missingSet``: "Properties for which values could not
#: be retrieved and the associated fault", a NoPermission for one the account may not read).
MISSING = "__missing__"

#: One retrieved object: its type ("VirtualMachine"), its moref id, and {path: value}.
Row = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class Shares:
    """``SharesInfo``: ``level`` ("normal", "custom", …) and the share count."""

    level: str | None = None
    shares: int | None = None


@dataclass(frozen=True)
class Allocation:
    """``ResourceAllocationInfo`` (MB), read with the same attribute names as pyvmomi's."""

    reservation: int | None = None
    expandableReservation: bool | None = None
    limit: int | None = None
    shares: Shares | None = None
    overheadLimit: int | None = None


@dataclass(frozen=True)
class OptionValue:
    """One ``OptionValue`` of ``config.extraConfig`` (``key``, ``value``), as pyvmomi names them."""

    key: str
    value: Any


#: ``RetrieveResult`` lists its ``token`` before its objects (the WSDL's sequence order), so the
#: next page can be asked for before this one is parsed.
_TOKEN = re.compile(rb"<(?:\w+:)?returnval\b[^>]*>\s*<(?:\w+:)?token>([^<]*)</(?:\w+:)?token>")


def peek_token(body: bytes) -> str | None:
    """The paging token of a ``RetrievePropertiesEx`` answer without parsing it (``None``: the
    last page, or not a result — :func:`parse_result` then tells which)."""
    match = _TOKEN.search(body, 0, 4096)
    return unescape(match.group(1).decode("utf-8")) if match else None


def _moref(kind: str, moid: str) -> str:
    return f"<_this type={quoteattr(kind)}>{escape(moid)}</_this>"


def retrieve_request(
    collector: str, view: str, props: Sequence[tuple[str, Sequence[str]]], max_objects: int
) -> str:
    """``RetrievePropertiesEx`` over every object of the ContainerView ``view``.

    ``props``: (managed object type, property paths) pairs.
    """
    prop_set = "".join(
        f"<propSet><type>{escape(kind)}</type>"
        + "".join(f"<pathSet>{escape(p)}</pathSet>" for p in paths)
        + "</propSet>"
        for kind, paths in props
    )
    body = (
        f'<RetrievePropertiesEx xmlns="urn:vim25">{_moref("PropertyCollector", collector)}'
        f'<specSet><objectSet><obj type="ContainerView">{escape(view)}</obj><skip>true</skip>'
        '<selectSet xsi:type="TraversalSpec"><name>view</name><type>ContainerView</type>'
        "<path>view</path><skip>false</skip></selectSet></objectSet>"
        f"{prop_set}</specSet>"
        f"<options><maxObjects>{int(max_objects)}</maxObjects></options></RetrievePropertiesEx>"
    )
    return _ENVELOPE.format(body=body)


def continue_request(collector: str, token: str) -> str:
    """``ContinueRetrievePropertiesEx`` for the page ``token``."""
    body = (
        f'<ContinueRetrievePropertiesEx xmlns="urn:vim25">{_moref("PropertyCollector", collector)}'
        f"<token>{escape(token)}</token></ContinueRetrievePropertiesEx>"
    )
    return _ENVELOPE.format(body=body)


def soap_call(stub: Any, envelope: str) -> bytes:
    """POST ``envelope`` on a pooled connection of the pyvmomi ``stub``; the response body.

    The stub's cookie, SOAPAction (API version), path, TLS context and timeouts apply; a new
    cookie from the server is kept, as pyvmomi does. Connection errors drop the pool (the
    server may be sick) and propagate; an HTTP status other than 200 or 500 (a fault) is an
    :class:`http.client.HTTPException`.
    """
    headers = {
        "Cookie": stub.cookie,
        "SOAPAction": stub.versionId,
        "Content-Type": "text/xml; charset=UTF-8",
        "User-Agent": "hvballoon-esxi",
    }
    conn = stub.GetConnection()
    try:
        conn.request("POST", stub.path, envelope.encode("utf-8"), headers)
        resp = conn.getresponse()
        body: bytes = resp.read()
    except (TimeoutError, OSError, http.client.HTTPException):
        conn.close()
        stub.DropConnections()
        raise
    cookie = resp.getheader("Set-Cookie")
    if cookie:
        session = SimpleCookie(cookie).get("vmware_soap_session")
        if session is not None:
            stub.SetSessionId(session.value)
        else:
            stub.cookie = cookie
    if resp.status not in (200, 500):
        conn.close()
        raise http.client.HTTPException(f"{resp.status} {resp.reason}")
    stub.ReturnConnection(conn)
    return body


def _fault(fault: ET.Element) -> BaseException:
    """The pyvmomi exception for a SOAP ``Fault`` element (its ``detail``'s xsi:type)."""
    msg = fault.findtext("faultstring") or ""
    kind = None
    detail = fault.find("detail")
    if detail is not None:
        for child in detail:
            kind = child.get(_XSI_TYPE)
            if kind is None and child.tag.endswith("Fault"):
                kind = child.tag.rsplit("}", 1)[-1][: -len("Fault")]
            break
    return _fault_of(kind, msg)


def _missing_fault(missing: ET.Element) -> BaseException:
    """The pyvmomi exception of a ``MissingProperty`` (its ``LocalizedMethodFault``)."""
    wrapper = missing.find(_V + "fault")
    inner = wrapper.find(_V + "fault") if wrapper is not None else None
    kind = inner.get(_XSI_TYPE) if inner is not None else None
    msg = (wrapper.findtext(_V + "localizedMessage") if wrapper is not None else None) or ""
    return _fault_of(kind, msg)


def _fault_of(kind: str | None, msg: str) -> BaseException:
    """An instance of the pyvmomi fault class named ``kind`` (an unknown one: MethodFault)."""
    cls: Any = vmodl.MethodFault
    if kind:
        try:
            cls = VmomiSupport.GetWsdlType("urn:vim25", kind.rsplit(":", 1)[-1])
        except KeyError:
            cls = vmodl.MethodFault
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = vmodl.MethodFault
    exc: BaseException = cls(msg=msg)
    return exc


def _value(val: ET.Element) -> Any:
    """One ``val`` (or nested field) element as a plain Python value, by its xsi:type."""
    kind = (val.get(_XSI_TYPE) or "").rsplit(":", 1)[-1]
    text = val.text or ""
    if kind in ("int", "long", "short", "byte"):
        return int(text)
    if kind == "boolean":
        return text.strip() in ("true", "1")
    if kind == "ResourceAllocationInfo":
        return _allocation(val)
    if kind == "ArrayOfOptionValue":
        return [
            OptionValue(
                key=opt.findtext(_V + "key") or "",
                value=_value(v) if (v := opt.find(_V + "value")) is not None else None,
            )
            for opt in val.iterfind(_V + "OptionValue")
        ]
    # strings, enums (VirtualMachinePowerState), morefs (their id) and anything else: the text
    return text


def _opt_int(elem: ET.Element, tag: str) -> int | None:
    text = elem.findtext(_V + tag)
    return None if text is None else int(text)


def _allocation(val: ET.Element) -> Allocation:
    shares_el = val.find(_V + "shares")
    shares = None
    if shares_el is not None:
        shares = Shares(level=shares_el.findtext(_V + "level"), shares=_opt_int(shares_el, "shares"))
    expandable = val.findtext(_V + "expandableReservation")
    return Allocation(
        reservation=_opt_int(val, "reservation"),
        expandableReservation=None if expandable is None else expandable.strip() in ("true", "1"),
        limit=_opt_int(val, "limit"),
        shares=shares,
        overheadLimit=_opt_int(val, "overheadLimit"),
    )


def parse_result(body: bytes, rows: list[Row]) -> str | None:
    """Append a ``RetrievePropertiesEx``/``Continue…`` answer's objects to ``rows``; its token.

    A SOAP fault is raised as its pyvmomi exception. An empty answer (no ``returnval``: nothing
    matched) gives no rows and no token.
    """
    root = ET.fromstring(body)  # noqa: S314 - the answer of the endpoint the session trusts
    soap_body = root.find(_SOAP + "Body")
    if soap_body is None or len(soap_body) == 0:
        raise vmodl.MethodFault(msg="the vSphere answer has no SOAP body")
    response = soap_body[0]
    if response.tag == _SOAP + "Fault":
        raise _fault(response)
    result = response.find(_V + "returnval")
    if result is None:
        return None
    for obj in result.iterfind(_V + "objects"):
        ref = obj.find(_V + "obj")
        if ref is None:
            continue
        props: dict[str, Any] = {}
        for prop in obj.iterfind(_V + "propSet"):
            name = prop.findtext(_V + "name")
            val = prop.find(_V + "val")
            if name is not None and val is not None:
                props[name] = _value(val)
        missing = {m.findtext(_V + "path") or "": _missing_fault(m) for m in obj.iterfind(_V + "missingSet")}
        if missing:
            props[MISSING] = missing
        rows.append((ref.get("type") or "", ref.text or "", props))
    return result.findtext(_V + "token") or None
