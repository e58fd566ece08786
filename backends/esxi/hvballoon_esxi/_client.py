"""The vSphere connection: TLS, API version, login, the inventory view and bulk retrieval.

Nothing here touches a managed object's attributes: in pyvmomi every ``vm.name`` is a
``Fetch`` round trip, so all reading goes through :meth:`Client.retrieve`, which asks the
PropertyCollector for exactly the property paths wanted, for many objects at once, and follows
``ContinueRetrievePropertiesEx`` tokens when the server pages the answer.

The session's cookie can expire (vCenter drops idle sessions after ~30 minutes): :meth:`Client.call`
runs an operation, and on ``vim.fault.NotAuthenticated`` logs in again once on the same stub,
recreates the inventory view (views die with their session) and runs it again.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyVmomi import VmomiSupport as _VmomiSupport
from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl
from pyVmomi.SoapAdapter import SoapStubAdapter as _SoapStubAdapter

from hvballoon.errors import InvalidRequestError, OperationTimeoutError, SessionExpiredError

from . import _fast
from ._faults import mapped

# pyvmomi's types are generated at run time: typed as Any at this boundary, and only here.
SoapStubAdapter: Any = _SoapStubAdapter
VmomiSupport: Any = _VmomiSupport
vim: Any = _vim
vmodl: Any = _vmodl

__all__ = ["Client", "Endpoint", "make_ssl_context"]

log = logging.getLogger("hvballoon.esxi")

T = TypeVar("T")

#: What the API version is when the server publishes no vimServiceVersions.xml (vSphere 6.5).
FALLBACK_VERSION = "vim.version.version12"

_PC = vmodl.query.PropertyCollector


def make_ssl_context(*, verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """A client TLS context: verifying (system CAs, or only ``ca_file``) unless ``verify=False``.

    Built here rather than left to pyvmomi, whose ``SmartConnect`` quietly disables verification
    when the host is ``localhost``, ``127.0.0.1`` or ``::1``.
    """
    if not verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidRequestError(f"cannot load the CA file {ca_file!r}: {exc}") from exc


@dataclass(frozen=True)
class Endpoint:
    """Where to connect: ``https`` unless a test asked for plain ``http`` explicitly."""

    host: str
    port: int
    https: bool = True
    path: str = "/sdk"
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        return f"{'https' if self.https else 'http'}://{self.host}:{self.port}"

    def http_connection(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.ssl_context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)


def negotiate_version(endpoint: Endpoint) -> str:
    """The newest API version both pyvmomi and the server speak (one plain GET, not SOAP)."""
    conn = endpoint.http_connection()
    try:
        conn.request("GET", f"{endpoint.path}/vimServiceVersions.xml")
        res = conn.getresponse()
        body = res.read()
    finally:
        conn.close()
    if res.status != 200:
        return FALLBACK_VERSION
    try:
        root = ET.fromstring(body)  # noqa: S314 - a small document from the endpoint we trust
    except ET.ParseError:
        return FALLBACK_VERSION
    offered: set[str] = set()
    for ns in root.iter("namespace"):
        if ns.findtext("name") != "urn:vim25":
            continue
        offered.update(v.text or "" for v in ns.iter("version"))
    for candidate in VmomiSupport.GetServiceVersions("vim25"):
        if VmomiSupport.versionIdMap.get(candidate) in offered:
            return str(candidate)
    return FALLBACK_VERSION


class Client:
    """A logged-in vSphere session with one ContainerView over the inventory root.

    ``root`` names the container the view spans (``None``: the root folder); ``types`` the
    managed object types it holds.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        username: str,
        password: str,
        page_size: int,
    ) -> None:
        self.endpoint = endpoint
        self.page_size = page_size
        self._username = username
        self._password = password
        self.relogins = 0
        with mapped(where=endpoint.where):
            version = negotiate_version(endpoint)
            self.stub: Any = SoapStubAdapter(
                host=endpoint.host,
                port=endpoint.port if endpoint.https else -endpoint.port,
                path=endpoint.path,
                version=version,
                sslContext=endpoint.ssl_context if endpoint.https else None,
                httpConnectionTimeout=endpoint.timeout,
                connectionPoolTimeout=max(60.0, endpoint.timeout),
            )
            try:
                self.si: Any = vim.ServiceInstance("ServiceInstance", self.stub)
                self.content: Any = self.si.RetrieveContent()
                self._login()
            except BaseException:
                self.stub.DropConnections()  # a refused login leaves no connection open
                raise
        self.root: Any = self.content.rootFolder
        self.view: Any = None
        self.view_types: list[Any] = [vim.VirtualMachine, vim.HostSystem]

    # -- session ---------------------------------------------------------------------------

    def _login(self) -> None:
        self.content.sessionManager.Login(self._username, self._password, None)

    def open_view(self, root: Any | None = None) -> None:
        """(Re)create the ContainerView of VMs and hosts under ``root``."""
        if root is not None:
            self.root = root
        self.view = self.content.viewManager.CreateContainerView(self.root, self.view_types, True)

    def call(self, fn: Callable[[], T], *, vm: str | None = None) -> T:
        """Run ``fn`` with faults mapped; re-login once, transparently, if the session expired."""
        with mapped(where=self.endpoint.where, vm=vm):
            try:
                return fn()
            except vim.fault.NotAuthenticated:
                log.info("vSphere session at %s expired: logging in again", self.endpoint.where)
            self.relogins += 1
            try:
                self._login()
                self.open_view()
            except vim.fault.NotAuthenticated as exc:
                raise SessionExpiredError(
                    f"the vSphere session at {self.endpoint.where} expired and logging in again failed",
                    vm=vm,
                    native_code=type(exc).__name__,
                ) from exc
            return fn()

    def logout(self) -> None:
        try:
            with mapped(where=self.endpoint.where):
                if self.view is not None:
                    self.view.DestroyView()
                self.content.sessionManager.Logout()
        except Exception as exc:  # closing must not fail: the session may already be gone
            log.debug("logout from %s failed: %s", self.endpoint.where, exc)
        finally:
            self.view = None
            self.stub.DropConnections()

    # -- retrieval --------------------------------------------------------------------------

    def view_filter(self, props: dict[Any, Sequence[str]]) -> Any:
        """A FilterSpec: every object of ``props``' types in the view, with those paths."""
        traverse = _PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
        return _PC.FilterSpec(
            objectSet=[_PC.ObjectSpec(obj=self.view, skip=True, selectSet=[traverse])],
            propSet=[_PC.PropertySpec(type=t, pathSet=list(paths)) for t, paths in props.items()],
        )

    @staticmethod
    def objects_filter(objects: Iterable[Any], props: dict[Any, Sequence[str]]) -> Any:
        """A FilterSpec for exactly ``objects`` (morefs), with ``props``' paths per type."""
        return _PC.FilterSpec(
            objectSet=[_PC.ObjectSpec(obj=o, skip=False) for o in objects],
            propSet=[_PC.PropertySpec(type=t, pathSet=list(paths)) for t, paths in props.items()],
        )

    def retrieve(self, spec: Any) -> list[tuple[Any, dict[str, Any]]]:
        """Every object the filter selects, as ``(moref, {path: value})``, across all pages.

        An unset property (vSphere omits it, the simulator omits zeros too) is absent from the
        dict. Paging: ``maxObjects`` per page, then ``ContinueRetrievePropertiesEx`` per token.
        """
        pc = self.content.propertyCollector
        options = _PC.RetrieveOptions(maxObjects=self.page_size)
        rows: list[tuple[Any, dict[str, Any]]] = []
        result = pc.RetrievePropertiesEx([spec], options)
        while result is not None:
            for obj in result.objects or ():
                rows.append((obj.obj, {p.name: p.val for p in obj.propSet or ()}))
            if not result.token:
                break
            result = pc.ContinueRetrievePropertiesEx(result.token)
        return rows

    def retrieve_view_fast(self, props: Sequence[tuple[str, Sequence[str]]]) -> list[_fast.Row]:
        """Like ``retrieve(view_filter(...))``, as hand-written SOAP read with ElementTree.

        ``props``: (type name, paths) pairs, e.g. ``("HostSystem", ["name"])``. The same
        requests as :meth:`retrieve` (one per page) over the same stub, so the same session,
        TLS and timeouts; rows are ``(type, moref id, {path: plain value})``.
        """
        collector = str(self.content.propertyCollector._moId)
        rows: list[_fast.Row] = []
        body = _fast.soap_call(
            self.stub, _fast.retrieve_request(collector, str(self.view._moId), props, self.page_size)
        )
        token = _fast.parse_result(body, rows)
        while token:
            body = _fast.soap_call(self.stub, _fast.continue_request(collector, token))
            token = _fast.parse_result(body, rows)
        return rows

    def wait_for_task(self, task: Any, timeout: float) -> None:
        """Poll the task's state through the PropertyCollector until it ends or ``timeout``.

        A failed task raises its own fault (mapped by the caller's :func:`mapped`). On timeout
        the task may still complete: the error says so, with its id.
        """
        spec = self.objects_filter([task], {vim.Task: ["info.state", "info.error"]})
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            rows = self.retrieve(spec)
            props = rows[0][1] if rows else {}
            state = props.get("info.state")
            if state == vim.TaskInfo.State.success:
                return
            if state == vim.TaskInfo.State.error:
                error = props.get("info.error")
                if isinstance(error, BaseException):
                    raise error
                raise vmodl.MethodFault(msg=f"task {task._moId} failed without a fault")
            if time.monotonic() + delay > deadline:
                raise OperationTimeoutError(
                    f"task {task._moId} did not finish within {timeout:g} s; it may still complete "
                    "(reading the configuration again shows whether it did)",
                    details={"task": task._moId},
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
