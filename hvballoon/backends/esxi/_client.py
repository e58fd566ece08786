"""The vSphere connection: TLS, API version, login, the inventory view and bulk retrieval.

Nothing here touches a managed object's attributes: in pyvmomi every ``vm.name`` is a
``Fetch`` round trip, so all reading goes through :meth:`Client.retrieve`, which asks the
PropertyCollector for exactly the property paths wanted, for many objects at once, and follows
``ContinueRetrievePropertiesEx`` tokens when the server pages the answer.

The session's cookie can expire (vCenter drops idle sessions after ~30 minutes): every operation
runs through :class:`VSphereLink` (the toolkit's :class:`~hvballoon.backend_kit.Link`), which maps
faults and, on ``vim.fault.NotAuthenticated``, logs in again once on the same stub
(:meth:`Client.relogin`, which recreates the inventory view: views die with their session) and
runs the operation again.

Tasks (``ReconfigVM_Task``) are awaited together (:meth:`Client.wait_for_tasks`): one read of
all their states, then, while any is still running, one filter on their ``info.state`` and
``WaitForUpdatesEx`` on a PropertyCollector of the session's own — the server answers when a
task ends, however many there are, instead of one poll loop per task.
"""

from __future__ import annotations

import http.client
import logging
import math
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyVmomi import VmomiSupport as _VmomiSupport
from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl
from pyVmomi.SoapAdapter import SoapStubAdapter as _SoapStubAdapter

from hvballoon.backend import check_ca_file
from hvballoon.backend_kit import Link
from hvballoon.errors import InvalidRequestError, OperationTimeoutError

from . import _fast
from ._faults import ERRORS

# pyvmomi's types are generated at run time: typed as Any at this boundary, and only here.
SoapStubAdapter: Any = _SoapStubAdapter
VmomiSupport: Any = _VmomiSupport
vim: Any = _vim
vmodl: Any = _vmodl

__all__ = ["Client", "Endpoint", "VSphereLink", "make_ssl_context"]

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
    check_ca_file(ca_file)
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
        self._waiter: Any = None  # the PropertyCollector task waits use (made on first need)
        #: fetch the next page of a fast sweep while parsing this one (benchmarks turn it off
        #: to measure what it saves)
        self.overlap_pages = True

    # -- session ---------------------------------------------------------------------------

    def _login(self) -> None:
        self.content.sessionManager.Login(self._username, self._password, None)

    def open_view(self, root: Any | None = None) -> None:
        """(Re)create the ContainerView of VMs and hosts under ``root``."""
        if root is not None:
            self.root = root
        self.view = self.content.viewManager.CreateContainerView(self.root, self.view_types, True)

    def relogin(self) -> None:
        """Log in again on the same stub and recreate the view (views and the task collector die
        with their session)."""
        self.relogins += 1
        self._waiter = None
        self._login()
        self.open_view()

    def logout(self) -> None:
        try:
            with ERRORS.mapped(self.endpoint.where):
                if self._waiter is not None:
                    self._waiter.DestroyPropertyCollector()
                if self.view is not None:
                    self.view.DestroyView()
                self.content.sessionManager.Logout()
        except Exception as exc:  # closing must not fail: the session may already be gone
            log.debug("logout from %s failed: %s", self.endpoint.where, exc)
        finally:
            self.view = None
            self._waiter = None
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
    def objects_filter(
        objects: Iterable[Any], props: dict[Any, Sequence[str]], *, follow: tuple[Any, str] | None = None
    ) -> Any:
        """A FilterSpec for exactly ``objects`` (morefs), with ``props``' paths per type.

        ``follow=(type, path)`` also selects the objects that ``path`` of each refers to (for
        example ``(vim.VirtualMachine, "runtime.host")``: the VMs' hosts, in the same answer).
        """
        select = (
            [_PC.TraversalSpec(name="follow", type=follow[0], path=follow[1], skip=False)]
            if follow is not None
            else None
        )
        return _PC.FilterSpec(
            objectSet=[_PC.ObjectSpec(obj=o, skip=False, selectSet=select) for o in objects],
            propSet=[_PC.PropertySpec(type=t, pathSet=list(paths)) for t, paths in props.items()],
        )

    def retrieve(self, spec: Any) -> list[tuple[Any, dict[str, Any]]]:
        """Every object the filter selects, as ``(moref, {path: value})``, across all pages.

        An unset property (vSphere omits it, the simulator omits zeros too) is absent from the
        dict; one that could not be read (the answer's ``missingSet``) is absent too, and its
        fault is in ``props[_fast.MISSING][path]``. Paging: ``maxObjects`` per page, then
        ``ContinueRetrievePropertiesEx`` per token.
        """
        pc = self.content.propertyCollector
        options = _PC.RetrieveOptions(maxObjects=self.page_size)
        rows: list[tuple[Any, dict[str, Any]]] = []
        result = pc.RetrievePropertiesEx([spec], options)
        while result is not None:
            for obj in result.objects or ():
                props = {p.name: p.val for p in obj.propSet or ()}
                missing = {m.path: m.fault for m in obj.missingSet or ()}
                if missing:  # what could not be read, with its fault (a NoPermission, typically)
                    props[_fast.MISSING] = missing
                rows.append((obj.obj, props))
            if not result.token:
                break
            result = pc.ContinueRetrievePropertiesEx(result.token)
        return rows

    def retrieve_view_fast(self, props: Sequence[tuple[str, Sequence[str]]]) -> list[_fast.Row]:
        """Like ``retrieve(view_filter(...))``, as hand-written SOAP read with ElementTree.

        ``props``: (type name, paths) pairs, e.g. ``("HostSystem", ["name"])``. The same
        requests as :meth:`retrieve` (one per page) over the same stub, so the same session,
        TLS and timeouts; rows are ``(type, moref id, {path: plain value})``.

        Pages overlap: as soon as a page has arrived, the request for the next one (its token
        is the answer's first element) goes out from a helper thread while this one parses the
        page, so a sweep of many pages waits on the server, not on our parsing.
        """
        collector = str(self.content.propertyCollector._moId)
        rows: list[_fast.Row] = []
        body = _fast.soap_call(
            self.stub, _fast.retrieve_request(collector, str(self.view._moId), props, self.page_size)
        )
        if not self.overlap_pages:
            token = _fast.parse_result(body, rows)
            while token:
                body = _fast.soap_call(self.stub, _fast.continue_request(collector, token))
                token = _fast.parse_result(body, rows)
            return rows
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hvballoon-esxi-page") as fetcher:
            while True:
                token = _fast.peek_token(body)
                following = (
                    fetcher.submit(_fast.soap_call, self.stub, _fast.continue_request(collector, token))
                    if token
                    else None
                )
                try:
                    parsed = _fast.parse_result(body, rows)
                    if following is not None and parsed != token:
                        raise vmodl.MethodFault(msg="the vSphere answer's paging token is ambiguous")
                except BaseException:
                    if following is not None:
                        following.cancel()
                        _settle(following)
                    raise
                if following is not None:
                    body = following.result()
                elif parsed is not None:  # a token the quick look missed: ask for its page now
                    body = _fast.soap_call(self.stub, _fast.continue_request(collector, parsed))
                else:
                    return rows

    def _task_collector(self) -> Any:
        if self._waiter is None:
            self._waiter = self.content.propertyCollector.CreatePropertyCollector()
        return self._waiter

    def wait_for_task(self, task: Any, timeout: float) -> None:
        """Wait for one task (see :meth:`wait_for_tasks`); its fault is raised."""
        (end,) = self.wait_for_tasks([task], timeout)
        if end is not None:
            raise end

    def wait_for_tasks(self, tasks: Sequence[Any], timeout: float) -> list[BaseException | None]:
        """Wait for every task at once; per task (in order) ``None`` (success) or its fault.

        First one read of all the tasks' states (fast tasks have ended by then); while some
        still run, one PropertyCollector filter on them and ``WaitForUpdatesEx``, which the
        server answers as soon as one changes, until the last ends or ``timeout`` runs out. A
        task still running then gets an :class:`~hvballoon.errors.OperationTimeoutError`: it
        may still complete (reading the configuration again shows whether it did).
        """
        if not tasks:
            return []
        paths = ["info.state", "info.error"]
        deadline = time.monotonic() + timeout
        states: dict[str, dict[str, Any]] = {}
        for ref, props in self.retrieve(self.objects_filter(tasks, {vim.Task: paths})):
            states[ref._moId] = props
        running = [t for t in tasks if not _ended(states.get(t._moId, {}))]
        if running:
            self._await_updates(running, paths, states, deadline, timeout)
        ends: list[BaseException | None] = []
        for task in tasks:
            props = states.get(task._moId, {})
            state = props.get("info.state")
            if state == vim.TaskInfo.State.success:
                ends.append(None)
            elif state == vim.TaskInfo.State.error:
                error = props.get("info.error")
                ends.append(
                    error
                    if isinstance(error, BaseException)
                    else vmodl.MethodFault(msg=f"task {task._moId} failed without a fault")
                )
            else:
                ends.append(
                    OperationTimeoutError(
                        f"task {task._moId} did not finish within {timeout:g} s; it may still complete "
                        "(reading the configuration again shows whether it did)",
                        details={"task": task._moId},
                    )
                )
        return ends

    def _await_updates(
        self,
        tasks: list[Any],
        paths: list[str],
        states: dict[str, dict[str, Any]],
        deadline: float,
        timeout: float,
    ) -> None:
        """``WaitForUpdatesEx`` on a filter over ``tasks`` until each has ended or ``deadline``."""
        collector = self._task_collector()
        watched = collector.CreateFilter(self.objects_filter(tasks, {vim.Task: paths}), partialUpdates=False)
        # the server holds a wait at most this long: below the socket's read timeout
        hold = math.floor(timeout * 2 / 3)
        try:
            version = ""
            pending = {t._moId for t in tasks}
            delay = 0.05
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                wait = max(0, min(hold, math.floor(left)))
                update = collector.WaitForUpdatesEx(version, _PC.WaitOptions(maxWaitSeconds=wait))
                if update is None:
                    if wait == 0:  # the timeout is too short to let the server hold the call
                        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                        delay = min(delay * 2, 1.0)
                    continue
                version = update.version
                # an update set may hold several changes of one task, in order: judge the end
                # only once all of them are applied
                for filter_update in update.filterSet or ():
                    for change in filter_update.objectSet or ():
                        props = states.setdefault(change.obj._moId, {})
                        for c in change.changeSet or ():
                            props[c.name] = c.val
                pending = {moid for moid in pending if not _ended(states.get(moid, {}))}
        finally:
            try:
                watched.DestroyPropertyFilter()
            except Exception as exc:  # the filter dies with the session anyway
                log.debug("could not destroy the task filter: %s", exc)


def _ended(props: dict[str, Any]) -> bool:
    return props.get("info.state") in (vim.TaskInfo.State.success, vim.TaskInfo.State.error)


def _settle(future: Any) -> None:
    """Wait for a cancelled or running page fetch to end, ignoring its outcome."""
    try:
        future.result()
    except BaseException:  # noqa: S110 - the caller is already raising its own error
        pass


class VSphereLink(Link[Client]):
    """The vSphere session behind the toolkit's link: faults mapped by
    :data:`~hvballoon.backends.esxi._faults.ERRORS`, an expired session logged in again once.

    pyvmomi puts a timeout on every request itself (``httpConnectionTimeout``), and its stub is
    safe to share between threads, so calls run in the caller's thread, side by side.
    """

    again = "and again after logging in once more"

    def __init__(self, endpoint: Endpoint, *, username: str, password: str, page_size: int, uri: str) -> None:
        self.endpoint = endpoint
        self._credentials = (username, password, page_size)
        super().__init__(
            ERRORS, where=endpoint.where, timeout=endpoint.timeout, uri=uri, lazy=False, serialize=False
        )

    def connect(self) -> Client:
        username, password, page_size = self._credentials
        return Client(self.endpoint, username=username, password=password, page_size=page_size)

    def lost(self, exc: BaseException, native: Client | None) -> bool:
        return isinstance(exc, vim.fault.NotAuthenticated) and native is not None

    def reconnect(self, native: Client | None, exc: BaseException) -> Client:
        if native is None:
            return self.connect()
        log.info("vSphere session at %s expired: logging in again", self.where)
        native.relogin()
        return native

    def disconnect(self, native: Client) -> None:
        native.logout()

    @property
    def client(self) -> Client:
        """The logged-in session (the same object after logging in again)."""
        client = self.native
        if client is None:
            raise RuntimeError("the vSphere session is closed")
        return client
