"""Several hypervisors at once: concurrent sweeps with a per-host deadline.

A :class:`Fleet` reads the memory stats of every host it was given, one thread per host, and
returns one :class:`HostResult` per host, in the order given. A host that fails is reported with
its error (its ``code`` and whether it is retryable); a host that does not answer within
``host_timeout`` seconds is reported as a ``timeout`` and abandoned, so one dead host never
delays the others beyond its deadline. Used by ``hvballoon stats URI1 URI2 …``,
``hvballoon watch`` and the Prometheus exporter.

>>> with Fleet(["fake://seed", "fake://seed?flavor=hyperv"], host_timeout=10) as fleet:
...     results = fleet.sweep()
>>> [(r.uri, r.ok, len(r.stats)) for r in results]
[('fake://seed', True, 10), ('fake://seed?flavor=hyperv', True, 10)]

For hundreds of hosts the documented path is Ansible (an inventory and ``forks``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvballoon._freesnothing import with_notes_read
from hvballoon._uri import parse_uri, redact_uri
from hvballoon.errors import (
    BackendError,
    HVBalloonError,
    HVConnectionError,
    Interface,
    InvalidRequestError,
    OperationTimeoutError,
)
from hvballoon.units import positive_seconds, true_or_false

if TYPE_CHECKING:
    from pydantic import SecretStr

    from hvballoon.models import HostStats, MemoryStats
    from hvballoon.session import Hypervisor

__all__ = ["Fleet", "HostResult", "backend_of", "is_uri", "read_inventory", "split_targets"]

log = logging.getLogger("hvballoon.fleet")


def is_uri(arg: str) -> bool:
    """A command-line argument is a URI when it contains ``://`` (else it names a VM)."""
    return "://" in arg


def split_targets(args: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split positional arguments into (URIs, VM names), keeping their order.

    >>> split_targets(["fake://seed", "web01", "fake://other", "db01"])
    (['fake://seed', 'fake://other'], ['web01', 'db01'])
    """
    uris: list[str] = []
    vms: list[str] = []
    for arg in args:
        (uris if is_uri(arg) else vms).append(arg)
    return uris, vms


_INLINE_COMMENT = re.compile(r"\s#")


def read_inventory(path: str | Path) -> list[str]:
    """The URIs listed in an inventory file.

    Either one URI per line (blank lines and ``#`` comments, whole-line or after a URI,
    ignored), or a YAML list whose items are URIs or mappings with a ``uri`` key. Passwords never go in it: every host gets
    ``HVBALLOON_PASSWORD`` (use Ansible's inventory and vault for per-host secrets).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequestError(f"cannot read the inventory {str(p)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidRequestError(f"the inventory {str(p)!r} is not UTF-8 text") from None
    from hvballoon._yamltext import load_yaml

    broken: str | None = None  # where the YAML parser stopped, if it did
    try:
        data: Any = load_yaml(text)
    except ValueError as exc:
        data = None
        # the problem and its place only: the parser's snippet of the file could show a secret
        broken = str(exc)
    except RecursionError:
        raise InvalidRequestError(f"the inventory {str(p)!r} is nested too deeply") from None
    if isinstance(data, dict):
        raise InvalidRequestError(
            f"the inventory {str(p)!r} is a mapping; expected one URI per line, or a YAML list of URIs "
            "or of mappings with 'uri'"
        )
    uris: list[str] = []
    if isinstance(data, list):
        for i, item in enumerate(data, 1):
            uri = item.get("uri") if isinstance(item, dict) else item
            if not isinstance(uri, str) or not uri.strip():
                # a mapping's values are never echoed: a password put there by mistake stays unprinted
                got = (
                    f"a mapping with keys {', '.join(sorted(map(str, item)))}"
                    if isinstance(item, dict)
                    else repr(item)
                )
                raise InvalidRequestError(
                    f"inventory {str(p)!r}, item {i}: expected a URI or a mapping with 'uri', got {got}"
                )
            extra = sorted(str(k) for k in item if k != "uri") if isinstance(item, dict) else []
            if extra:
                raise InvalidRequestError(
                    f"inventory {str(p)!r}, item {i}: unknown key(s) {', '.join(extra)}; an item has only "
                    "'uri' (passwords never go in an inventory: every host gets HVBALLOON_PASSWORD)"
                )
            uris.append(uri.strip())
    else:
        for line in text.splitlines():
            # a comment starts a line or follows a blank, as in YAML (a URI has no blank, and
            # a '#' inside one is a fragment, refused with its own message)
            line = _INLINE_COMMENT.split(line, maxsplit=1)[0].strip()
            if line.startswith("-") and broken is not None:
                # a YAML list the parser refused: its items are no URIs
                raise InvalidRequestError(
                    f"the inventory {str(p)!r} is a YAML list that cannot be read: {broken}"
                )
            if line and not line.startswith("#"):
                uris.append(line)
    if not uris:
        raise InvalidRequestError(f"the inventory {str(p)!r} lists no URI")
    return uris


@dataclass
class HostResult:
    """One host's part of a sweep: its stats, or the error that stopped it.

    With a fleet that reads host figures (``host_stats=True``), ``hosts`` holds the URI's
    :class:`~hvballoon.HostStats` (a vCenter has several), and ``host_error`` the error that
    kept them from being read, if any; the VM stats stand either way.
    """

    uri: str  # redacted, safe to print
    stats: list[MemoryStats] = field(default_factory=list)
    error: HVBalloonError | None = None
    elapsed_seconds: float = 0.0
    backend: str | None = None
    host: str | None = None
    hosts: list[HostStats] = field(default_factory=list)
    host_error: HVBalloonError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, interface: Interface = "api", *, hosts: bool = False) -> dict[str, Any]:
        """JSON-ready: ``uri``, ``backend``, ``ok``, ``elapsed_seconds``, ``stats``, ``error`` (its
        hint in the words of ``interface``); with ``hosts``, also ``host_stats`` and ``host_error``."""
        out: dict[str, Any] = {
            "uri": self.uri,
            "backend": self.backend,
            "ok": self.ok,
            "elapsed_seconds": round(self.elapsed_seconds, 4),
            "stats": [s.model_dump(mode="json") for s in self.stats],
            "error": self.error.to_dict(interface) if self.error is not None else None,
        }
        if hosts:
            out["host_stats"] = [h.model_dump(mode="json") for h in self.hosts]
            out["host_error"] = self.host_error.to_dict(interface) if self.host_error is not None else None
        return out


class _Slot:
    """One host: its URI, its open session (kept between sweeps) and whether a call is pending."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.redacted = redact_uri(raw)
        #: the backend by the URI's scheme (the registry's), known before any connection
        self.backend = backend_of(raw)
        self.session: Hypervisor | None = None
        self.busy = threading.Event()  # set while a worker thread owns the slot


class Fleet:
    """Hosts swept concurrently. A context manager; sessions are kept open between sweeps.

    ``host_timeout`` bounds each host's part of a sweep (connecting included); a host still
    busy from an earlier sweep that timed out is reported as a timeout at once rather than
    queried twice; a URI listed twice is one host. ``concurrency`` caps the threads querying at
    the same time. ``keep_sessions``
    False closes every session after each sweep (what a one-shot command wants). ``host_stats``
    also reads each URI's host figures (:meth:`~hvballoon.Hypervisor.get_host_stats`, summing
    the sweep just read, so the VMs are not read twice). ``frees_nothing_notes`` also reads the
    configurations of the VMs of a kind with such a rule (one bulk call per host) to note each VM
    whose balloon gives its host nothing back, as ``hvballoon stats`` does
    (:mod:`hvballoon._freesnothing`).
    """

    def __init__(
        self,
        uris: Sequence[str],
        *,
        password: str | SecretStr | None = None,
        timeout: float | None = None,
        host_timeout: float = 30.0,
        verify: bool = True,
        ca_file: str | None = None,
        concurrency: int = 32,
        keep_sessions: bool = True,
        host_stats: bool = False,
        frees_nothing_notes: bool = False,
    ) -> None:
        if isinstance(uris, (str, bytes, Mapping)) or not isinstance(uris, Iterable):
            # a string alone would be a fleet of one-letter URIs
            raise InvalidRequestError(
                f"a fleet takes a list of URIs (e.g. ['qemu+ssh://kvm01/system']), got {type(uris).__name__}"
            )
        uris = list(uris)
        if not uris:
            raise InvalidRequestError("a fleet needs at least one URI")
        for uri in uris:
            if not isinstance(uri, str) or not uri.strip():
                raise InvalidRequestError(
                    f"a fleet's URIs are non-empty strings (e.g. 'qemu+ssh://kvm01/system'), got {uri!r}"
                )
        host_timeout = positive_seconds(host_timeout, what="host_timeout")
        if timeout is not None:
            timeout = positive_seconds(timeout, what="timeout")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidRequestError(
                f"concurrency must be a whole number of at least 1, got {concurrency!r}"
            )
        for name, flag in (
            ("verify", verify),
            ("keep_sessions", keep_sessions),
            ("host_stats", host_stats),
            ("frees_nothing_notes", frees_nothing_notes),
        ):
            true_or_false(flag, what=name)
        # a host named twice (on the command line and in an inventory, say) is queried once:
        # twice would cost it a second call and give the exporter duplicate series
        self._slots = [_Slot(u) for u in dict.fromkeys(uris)]
        self._password = password
        self._timeout = timeout if timeout is not None else host_timeout
        self.host_timeout = float(host_timeout)
        self._verify = verify
        self._ca_file = ca_file
        self.concurrency = concurrency
        self.keep_sessions = keep_sessions
        self.host_stats = host_stats
        self.frees_nothing_notes = frees_nothing_notes
        self._sweep_lock = threading.Lock()

    @property
    def uris(self) -> list[str]:
        """The hosts' URIs, redacted."""
        return [s.redacted for s in self._slots]

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for slot in self._slots:
            if not slot.busy.is_set():
                self._drop(slot)

    @staticmethod
    def _drop(slot: _Slot) -> None:
        session, slot.session = slot.session, None
        if session is not None:
            try:
                session.close()
            except Exception:  # closing a dead session must not hide the result
                log.debug("closing the session of %s failed", slot.redacted, exc_info=True)

    # -- one host -----------------------------------------------------------------------

    def _connect(self, slot: _Slot) -> Hypervisor:
        import hvballoon

        parse_uri(slot.raw)  # a bad URI is reported before any backend loads
        return hvballoon.connect(
            slot.raw,
            password=self._password,
            timeout=self._timeout,
            verify=self._verify,
            ca_file=self._ca_file,
        )

    def _poll(self, slot: _Slot, vms: Sequence[str] | None) -> HostResult:
        start = time.monotonic()
        result = HostResult(uri=slot.redacted)
        try:
            if slot.session is None:
                slot.session = self._connect(slot)
            hv = slot.session
            result.backend = hv.backend_name
            stats = hv.get_stats()
            if self.host_stats:
                try:
                    result.hosts = hv.get_host_stats(vm_stats=stats)
                except HVBalloonError as exc:
                    result.host_error = exc.with_context(uri=slot.redacted)
                    log.warning("cannot read the host figures of %s: %s", slot.redacted, exc)
            if vms:
                wanted = set(vms)
                stats = [s for s in stats if s.vm.name in wanted or s.vm.id in wanted]
            if self.frees_nothing_notes:
                stats = with_notes_read(hv, stats, failed=lambda exc: self._unread_configs(slot, exc))
            result.stats = stats
            result.host = next((s.vm.host for s in stats if s.vm.host), None)
        except HVBalloonError as exc:
            result.error = exc.with_context(uri=slot.redacted)
            if isinstance(exc, (HVConnectionError, OperationTimeoutError)):
                self._drop(slot)  # reconnect on the next sweep
        except Exception as exc:  # a backend bug must not take the other hosts down
            log.exception("unexpected failure sweeping %s", slot.redacted)
            result.error = BackendError(
                f"unexpected {type(exc).__name__} while reading {slot.redacted}", uri=slot.redacted
            )
            self._drop(slot)
        finally:
            if not self.keep_sessions:
                self._drop(slot)
        if result.backend is None:
            result.backend = slot.backend
        result.elapsed_seconds = time.monotonic() - start
        return result

    @staticmethod
    def _unread_configs(slot: _Slot, exc: HVBalloonError) -> None:
        log.warning("cannot read the configurations of %s (for the notes): %s", slot.redacted, exc)

    # -- the sweep ----------------------------------------------------------------------

    def sweep(self, vms: Sequence[str] | None = None) -> list[HostResult]:
        """Every host's stats (all VMs, or those named by name or id: one name alone, or a list
        of them), in the order given. Anything else (a mapping, which would be read as its keys;
        a number; bytes) is an :class:`~hvballoon.errors.InvalidRequestError`, raised before any
        host is queried."""
        with self._sweep_lock:
            return self._sweep(_names(vms) or None)

    def _sweep(self, vms: list[str] | None) -> list[HostResult]:
        results: list[HostResult | None] = [None] * len(self._slots)
        done = threading.Condition()
        finished: dict[int, HostResult] = {}
        pending = list(range(len(self._slots)))
        running: dict[int, float] = {}  # index -> deadline

        def work(i: int, slot: _Slot) -> None:
            try:
                res = self._poll(slot, vms)
            finally:
                slot.busy.clear()
            with done:
                finished[i] = res
                done.notify_all()

        while pending or running:
            while pending and len(running) < self.concurrency:
                i = pending.pop(0)
                slot = self._slots[i]
                if slot.busy.is_set():
                    results[i] = HostResult(
                        uri=slot.redacted,
                        backend=slot.backend,
                        error=OperationTimeoutError(
                            f"{slot.redacted} is still busy with an earlier request that timed out",
                            uri=slot.redacted,
                        ),
                    )
                    continue
                slot.busy.set()
                running[i] = time.monotonic() + self.host_timeout
                # daemon: a host stuck past its deadline must not keep the process alive
                threading.Thread(
                    target=work, args=(i, slot), name=f"hvballoon-sweep-{i}", daemon=True
                ).start()
            with done:
                if running and not any(i in finished for i in running):
                    done.wait(max(0.0, min(running.values()) - time.monotonic()))
                now = time.monotonic()
                for i in list(running):
                    if i in finished:
                        results[i] = finished.pop(i)
                        del running[i]
                    elif now >= running[i]:
                        slot = self._slots[i]
                        results[i] = HostResult(
                            uri=slot.redacted,
                            backend=slot.backend,
                            error=OperationTimeoutError(
                                f"no answer from {slot.redacted} within {self.host_timeout:g} s",
                                uri=slot.redacted,
                                details={"host_timeout_seconds": self.host_timeout},
                            ),
                            elapsed_seconds=self.host_timeout,
                        )
                        del running[i]
        return [r for r in results if r is not None]


def _names(vms: object) -> list[str]:
    """The VM names or ids of :meth:`Fleet.sweep` (``None``: every VM)."""
    if vms is None:
        return []
    if isinstance(vms, str):
        return [vms]  # one name, never a list of one-letter names
    if isinstance(vms, (bytes, bytearray, Mapping)) or not isinstance(vms, Iterable):
        raise InvalidRequestError(
            "sweep() vms: VMs are named by a name or an id, or a list of them "
            f"(e.g. 'web01' or ['web01', 'web02']), got {type(vms).__name__}"
        )
    names = list(vms)
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(
                f"sweep() vms: a VM is named by a non-empty name or id (a string), got {name!r}"
            )
    return names


def backend_of(uri: str) -> str | None:
    """The backend serving ``uri``'s scheme, by the registry (``None`` if the URI has no scheme
    or no backend serves it), without importing the backend. A URI refused for what follows its
    scheme (a password written in it, a bad port) still names its backend.

    >>> backend_of("esxi://root:secret@esx01"), backend_of("nosuch://h"), backend_of("web01")
    ('esxi', None, None)
    """
    from hvballoon import registry

    try:
        scheme = parse_uri(uri).scheme
    except HVBalloonError:
        head, sep, _ = uri.partition("://") if isinstance(uri, str) else ("", "", "")
        if not sep or not _SCHEME_RE.fullmatch(head):
            return None
        scheme = head
    try:
        return registry.spec_for_scheme(scheme).name
    except HVBalloonError:
        return None


#: A URI scheme (RFC 3986): a letter, then letters, digits, ``+``, ``-`` or ``.``.
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")


def first_error(results: Iterable[HostResult]) -> HVBalloonError | None:
    """The first failed host's error, in the order the hosts were given."""
    return next((r.error for r in results if r.error is not None), None)
