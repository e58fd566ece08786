"""The core of a :class:`~hvballoon.session.Hypervisor` session: its state and plumbing (every
backend call goes through :meth:`_SessionCore._call`), and knowing the VMs — the index of names
and ids, resolving refs, and the fresh bulk read that re-resolves a VM renamed or vanished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar, cast

from hvballoon._guardrails import GuardRails
from hvballoon._uri import ParsedURI
from hvballoon._vmindex import SUGGESTED_MISSES, VMIndex
from hvballoon.backend import Backend
from hvballoon.errors import (
    AmbiguousVMError,
    HVBalloonError,
    InvalidRequestError,
    InvalidStateError,
    VMNotFoundError,
)
from hvballoon.models import VM, Capabilities
from hvballoon.retry import RetryPolicy
from hvballoon.units import is_number

VMRef = str | VM
R = TypeVar("R")


class _Resolved(NamedTuple):
    """A ref resolved to a VM: ``name`` when it was a name, ``cached`` when the index answered
    (no look-up in this call), so a fresh read showing another name means the index was stale."""

    vm: VM
    name: str | None
    cached: bool


class _SessionCore:
    """A session's state, its calls to the backend, and how it finds the VMs it is asked about."""

    def __init__(
        self,
        backend: Backend,
        *,
        uri: ParsedURI,
        retry: RetryPolicy | None = None,
        guard_rails: GuardRails | None = None,
    ) -> None:
        self._backend = backend
        self._uri = uri
        self.retry = retry or RetryPolicy()
        self.guard_rails = guard_rails or GuardRails()
        self._targets: dict[str, int] = {}
        self._index = VMIndex(ttl_seconds=60.0)
        self._closed = False

    # -- plumbing -----------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """The connection URI, redacted."""
        return self._uri.redacted

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def native(self) -> Any:
        """The backend's own client object, for what hvballoon does not cover."""
        return self._backend.native

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can read and change (declared)."""
        return self._backend.capabilities

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._backend.close()

    def _call(self, what: str, fn: Any, vm: str | None = None, *, retry: RetryPolicy | None = None) -> Any:
        if self._closed:
            raise InvalidStateError("this session is closed", backend=self.backend_name, uri=self.uri)
        try:
            return (retry or self.retry).call(fn, what=what)
        except HVBalloonError as exc:
            exc.with_context(backend=self.backend_name, uri=self.uri, vm=vm)
            raise

    def _with_context(self, fn: Any, vm: VM) -> Any:
        """Run a local check; its error gets the session's context (backend, URI, VM)."""
        try:
            return fn()
        except HVBalloonError as exc:
            exc.with_context(backend=self.backend_name, uri=self.uri, vm=vm.name)
            raise

    # -- knowing the VMs -----------------------------------------------------------------

    @property
    def name_cache_seconds(self) -> float:
        """How long a VM found by *name* is trusted without looking again (default 60 s).

        Every listing and sweep (``list_vms``, ``get_stats()``, ``get_configs()``) feeds the
        session's index of VM names and ids, so naming a VM costs no listing. A name unknown
        to the index, a VM renamed meanwhile or one that vanished makes the session look
        again (natively where the backend can: libvirt by name or UUID, one filtered
        ``Get-VM`` on Hyper-V; else a listing). Power states and figures never come from the
        index: each operation reads them fresh. ``0`` looks every name up again each time.
        """
        return self._index.ttl_seconds

    @name_cache_seconds.setter
    def name_cache_seconds(self, seconds: float) -> None:
        if not is_number(seconds) or not seconds >= 0:
            raise InvalidRequestError(f"name_cache_seconds must be >= 0, got {seconds!r}")
        self._index.ttl_seconds = float(seconds)

    def _lookup(self, refs: Sequence[str]) -> None:
        """Look ``refs`` up on the hypervisor (natively, else by listing) into the index."""
        wanted = list(dict.fromkeys([*refs, *(self._id_form(r) for r in refs)]))
        found: list[VM] | None = self._call("lookup_vms", lambda: self._backend.lookup_vms(wanted))
        if found is None:
            self.list_vms()
            return
        if self._backend.lookup_lists_every_vm:
            self._index.replace(found)  # a sweep of every VM: a listing
        else:
            self._index.update(found)  # a backend may answer more than asked: remember it all
        # each ref's VMs from one pass over the answer: a look-up of thousands of names, answered
        # by a sweep of thousands of VMs, is not a scan of the sweep per name
        answered: dict[str, list[VM]] = {}
        for v in found:
            answered.setdefault(v.id, []).append(v)
            if v.name != v.id:
                answered.setdefault(v.name, []).append(v)
        for ref in wanted:
            self._index.settle(ref, answered.get(ref, []))

    def _id_form(self, ref: str) -> str:
        """``ref`` as the backend's kind writes VM ids (a Hyper-V GUID in lower case)."""
        kind = self._backend.kind
        return kind.canonical_id(ref) if kind is not None else ref

    def _by_id(self, ref: str) -> VM | None:
        """The VM whose id ``ref`` is, as written or in the kind's own form."""
        vm = self._index.by_id(ref)
        return vm if vm is not None else self._index.by_id(self._id_form(ref))

    def _only_by_id(self, ref: str, vm: VM) -> bool:
        """Whether no other VM the index knows is named ``ref`` (``vm``'s id)."""
        return all(v.id == vm.id for v in self._index.by_name(ref, max_age=None) or [])

    def _pick(self, ref: str, *, suggest: bool = True, by_id: bool = False) -> VM | HVBalloonError:
        """``ref`` from the index just refreshed: by id, else the one VM of that name (when
        none, the error suggests close names unless not ``suggest``); a ref that is one VM's id
        and another's name is ambiguous, unless ``by_id`` (the ref is a :class:`VM`'s id)."""
        vm = self._by_id(ref)
        named = self._index.by_name(ref, max_age=None) or []
        if by_id:  # never the VM that only bears a gone VM's id for a name
            return vm if vm is not None else self._not_found(ref, suggest=False)
        if vm is not None:
            others = sorted(v.id for v in named if v.id != vm.id)
            if not others:
                return vm
            # one VM's id is another's name (a VM named after a UUID): either may be meant
            said = f"{ref!r} is the id of {vm.name!r} and the name of another VM; use its id: {', '.join(others)}"
            return self._ambiguous(ref, said, [vm.id, *others])
        if len(named) == 1:
            return named[0]
        if not named:
            return self._not_found(ref, suggest=suggest)
        ids = sorted(v.id for v in named)
        return self._ambiguous(ref, f"{len(named)} VMs are named {ref!r}; use an id: {', '.join(ids)}", ids)

    def _ambiguous(self, ref: str, message: str, ids: list[str]) -> AmbiguousVMError:
        """``ref`` may mean any of the VMs ``ids`` (``details["candidates"]``)."""
        return AmbiguousVMError(
            message, backend=self.backend_name, uri=self.uri, vm=ref, details={"candidates": ids}
        )

    def _not_found(self, ref: str, *, suggest: bool = True) -> VMNotFoundError:
        """No VM has ``ref`` for name or id: the error names up to three names the session
        knows that look like it (``details["close_matches"]``, none when nothing is close or
        not ``suggest``)."""
        close = self._index.close_names(ref) if suggest else []
        guess = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
        if "://" in ref and not close:  # a second URI where VM names go (one session, one URI)
            guess = (
                f"; it looks like a URI, not a VM of this session ({self.uri}): a session talks to one URI"
            )
        return VMNotFoundError(
            f"no VM named or with id {ref!r}{guess}",
            backend=self.backend_name,
            uri=self.uri,
            vm=ref,
            details={"close_matches": close},
        )

    def close_matches(self, ref: str) -> list[str]:
        """Up to three names of VMs the session knows that look like ``ref`` (case-insensitive,
        closest first): what a :class:`~hvballoon.errors.VMNotFoundError` suggests."""
        return self._index.close_names(ref)

    def _learn_names(self) -> None:
        """Before naming a ref that matched no VM: the names to suggest come from a full
        listing. One the session made within the name TTL (or the look-up just made, when it
        listed) is used as it is; otherwise one listing is made — only on this error path. A
        listing that fails leaves the suggestions to what the session knows."""
        if self._index.listed():
            return
        try:
            self.list_vms()
        except HVBalloonError:
            pass

    def _resolve(self, refs: Sequence[VMRef]) -> list[_Resolved | HVBalloonError]:
        """Each ref as a VM (from the index when it knows it), or its typed error."""
        out: list[_Resolved | HVBalloonError | None] = []
        misses: list[int] = []
        for ref in refs:
            if isinstance(ref, VM) and ref.backend != self.backend_name:
                out.append(
                    InvalidRequestError(
                        f"{ref.name!r} is a VM of the {ref.backend} backend, and this session is of the "
                        f"{self.backend_name} backend ({self.uri}): name it by its name or id here",
                        backend=self.backend_name,
                        uri=self.uri,
                        vm=ref.name,
                    )
                )
            elif isinstance(ref, VM):
                out.append(_Resolved(ref, None, cached=True))
            elif not isinstance(ref, str) or not ref:
                out.append(
                    InvalidRequestError(
                        f"a VM is named by a non-empty name or id, got {ref!r}",
                        backend=self.backend_name,
                        uri=self.uri,
                    )
                )
            elif (known := self._by_id(ref)) is not None:
                if self._only_by_id(ref, known):
                    out.append(_Resolved(known, None, cached=True))
                else:  # also another VM's name: looked up afresh, and ambiguous if it still is
                    misses.append(len(out))
                    out.append(None)
            elif (named := self._index.by_name(ref)) is not None and len(named) == 1:
                out.append(_Resolved(named[0], ref, cached=True))
            else:
                misses.append(len(out))
                out.append(None)
        if misses:
            names = [cast(str, refs[i]) for i in misses]
            self._lookup(names)
            if any(isinstance(self._pick(ref, suggest=False), VMNotFoundError) for ref in names):
                self._learn_names()
            suggested = 0
            for i, ref in zip(misses, names, strict=True):
                # the first few missing names get a "did you mean": each costs a pass over the
                # names the session knows (1,000 of 10,000 VMs' took a minute)
                picked = self._pick(ref, suggest=suggested < SUGGESTED_MISSES)
                suggested += isinstance(picked, VMNotFoundError)
                out[i] = (
                    picked if isinstance(picked, HVBalloonError) else _Resolved(picked, ref, cached=False)
                )
        return [r for r in out if r is not None]

    def _read_fresh(
        self,
        what: str,
        refs: Sequence[VMRef],
        fetch: Callable[[list[VM]], list[R]],
        vm_of: Callable[[R], VM],
        *,
        retry: RetryPolicy | None = None,
    ) -> list[R | HVBalloonError]:
        """One bulk read (``fetch``) of the VMs named by ``refs``: per ref, its row or error.

        A VM the index knew that is gone, or whose name changed, sends the session to look its
        ref up again (once) and read what it names now; a read that still fails is repeated VM
        by VM, so that each ref gets its own answer.
        """
        resolved = self._resolve(refs)
        out: list[R | HVBalloonError | None] = [
            r if isinstance(r, HVBalloonError) else None for r in resolved
        ]
        pending = [i for i, r in enumerate(resolved) if isinstance(r, _Resolved)]

        def again(indices: list[int], cause: VMNotFoundError | None = None) -> list[int]:
            """Look the refs up again; a VM still missing keeps the backend's own word for it
            (``cause``, when it was the only VM read or the one the error names)."""
            lookup = [r if isinstance(r, str) else r.id for r in (refs[i] for i in indices)]
            self._lookup(lookup)
            kept = []
            for i, ref in zip(indices, lookup, strict=True):
                was = cast(_Resolved, resolved[i]).vm
                picked = self._pick(ref, by_id=not isinstance(refs[i], str))
                if isinstance(picked, HVBalloonError):
                    named = cause is not None and (len(indices) == 1 or cause.vm == was.name)
                    out[i] = cause if named and isinstance(picked, VMNotFoundError) else picked
                else:
                    resolved[i] = _Resolved(picked, ref if isinstance(refs[i], str) else None, cached=False)
                    kept.append(i)
            return kept

        def bulk(vms: list[VM]) -> tuple[list[R], dict[str, HVBalloonError]]:
            """``fetch(vms)``; a refusal that names one of several VMs (one the account may not
            read) is that VM's own: the others are read again without it."""
            errors: dict[str, HVBalloonError] = {}
            while True:
                try:
                    rows: list[R] = self._call(what, lambda vms=vms: fetch(vms), retry=retry)
                except VMNotFoundError:
                    raise
                except HVBalloonError as exc:
                    named = [vm for vm in vms if exc.vm is not None and vm.name == exc.vm]
                    if len(vms) < 2 or len(named) != 1:
                        raise
                    errors[named[0].id] = exc
                    vms = [vm for vm in vms if vm is not named[0]]
                    continue
                return rows, errors

        for attempt in range(3):
            if not pending:
                break
            vms = list({r.vm.id: r.vm for r in (cast(_Resolved, resolved[i]) for i in pending)}.values())
            errors: dict[str, HVBalloonError] = {}
            try:
                rows, errors = bulk(vms)
            except VMNotFoundError as exc:
                if attempt == 0:
                    pending = again(pending, exc)
                    continue
                rows = []
                for vm in vms:
                    try:
                        rows.extend(self._call(what, lambda vm=vm: fetch([vm]), vm.name, retry=retry))
                    except HVBalloonError as exc:
                        errors[vm.id] = exc
            by_id = {vm_of(row).id: row for row in rows}
            self._index.update(vm_of(row) for row in rows)
            renamed = []
            for i in pending:
                res = cast(_Resolved, resolved[i])
                row = by_id.get(res.vm.id)
                if row is None:
                    out[i] = errors.get(res.vm.id) or VMNotFoundError(
                        f"VM {res.vm.name!r} ({res.vm.id}) no longer exists",
                        backend=self.backend_name,
                        uri=self.uri,
                        vm=res.vm.name,
                    )
                elif res.cached and res.name is not None and vm_of(row).name != res.name:
                    renamed.append(i)  # the index was stale: the name may be another VM's now
                else:
                    out[i] = row
            pending = again(renamed) if renamed else []
        return [r if r is not None else self._unreached(refs[i]) for i, r in enumerate(out)]

    def _unreached(self, ref: VMRef) -> HVBalloonError:
        name = ref.name if isinstance(ref, VM) else str(ref)
        return VMNotFoundError(
            f"VM {name!r} could not be read: it changed name or vanished twice while being read",
            backend=self.backend_name,
            uri=self.uri,
            vm=name,
        )

    @staticmethod
    def _first_error(rows: Sequence[R | HVBalloonError]) -> list[R]:
        for row in rows:
            if isinstance(row, HVBalloonError):
                raise row
        return cast(list[R], list(rows))

    def list_vms(self) -> list[VM]:
        """Every VM on the hypervisor."""
        result: list[VM] = self._call("list_vms", self._backend.list_vms)
        self._index.replace(result)
        return result
