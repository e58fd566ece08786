"""The controller's journal: what it lowered, recorded durably *before* each change.

A controller that dies (a crash, ``kill -9``, a host reboot) must not leave VMs lowered with
nobody knowing what they had: before every change it records, in one SQLite transaction that
is on disk before the call goes out (``synchronous=FULL``), which VM moves from what to what.
A VM stays *lowered* in the journal from the first time the controller lowers it until it is
back at (or above) what it had before — ``before_bytes``, the value it had when the controller
first touched it (for an ESXi VM whose limit was unlimited, ``before_unlimited``). A controller
started on the same journal resumes from it, and ``hvballoon release`` returns every lowered VM
to what it had (:mod:`hvballoon.policy.release`).

One journal per URI: by default under the user's state directory — systemd's
``$STATE_DIRECTORY`` (``StateDirectory=hvballoon``), ``$XDG_STATE_HOME/hvballoon``, else
``/var/lib/hvballoon`` for root and ``~/.local/state/hvballoon`` for others — in ``journal/``, named
after the URI (redacted: never a password). A controller holds the journal's lock while it runs,
so a second controller, or a release, on the same URI is refused while it does. The change log
keeps the last :data:`KEEP_CHANGES` changes.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "j.db")
>>> with Journal.open(path, uri="fake://seed") as j:
...     j.intend(1, [Move("id-1", "web01", "balloon", 16 * 2**30, 8 * 2**30)])
...     given_back = j.settle(1, {"id-1": None})
...     [(e.vm, e.before_bytes // 2**30, e.target_bytes // 2**30) for e in j.lowered()]
[('web01', 16, 8)]
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from hvballoon._sqlitefiles import foreign_tables
from hvballoon.errors import InvalidRequestError, InvalidStateError
from hvballoon.models import Timestamp

__all__ = ["KEEP_CHANGES", "Journal", "Lowered", "Move", "default_journal_path", "state_directory"]

log = logging.getLogger("hvballoon.policy")

#: Rows of the change log kept (the lowered VMs are kept whatever their age).
KEEP_CHANGES = 10_000
_FORMAT = "1"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS lowered (
        vm_id TEXT PRIMARY KEY,
        vm TEXT NOT NULL,
        mechanism TEXT NOT NULL,
        before_bytes INTEGER NOT NULL,
        before_unlimited INTEGER NOT NULL DEFAULT 0,
        target_bytes INTEGER NOT NULL,
        marked INTEGER NOT NULL DEFAULT 0,
        since TEXT NOT NULL,
        updated TEXT NOT NULL,
        prior_bytes INTEGER,
        run TEXT)""",
    """CREATE TABLE IF NOT EXISTS changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        round INTEGER NOT NULL,
        vm_id TEXT NOT NULL,
        vm TEXT NOT NULL,
        from_bytes INTEGER,
        to_bytes INTEGER,
        state TEXT NOT NULL,
        error TEXT)""",
    # how a round's moves ended is written by VM and round: without it each of a round's moves
    # scanned the whole change log (10,000 moves over 10,000 rows kept took 5 s)
    "CREATE INDEX IF NOT EXISTS changes_by_vm ON changes (vm_id, round)",
)
#: Columns added to ``lowered`` since the first journals: added to a journal that lacks them.
_ADDED_COLUMNS = {"prior_bytes": "INTEGER", "run": "TEXT"}


class Lowered(BaseModel):
    """One VM the controller lowered and has not given back yet.

    ``before_bytes`` is the target it had when the controller first lowered it (with
    ``before_unlimited``: an ESXi VM without a limit — release removes the limit; an ESXi VM
    whose limit was above its memory size: that limit, which release sets back);
    ``target_bytes`` the last target the controller asked for (0: unknown, a VM found marked);
    ``prior_bytes`` what the VM was at when the controller last moved it, while that move is not
    known to have been made (either may be in force); ``marked``: the VM also carries the controller's mark (ESXi, KVM);
    ``run``: the VM's run when the controller last moved it, where a target lasts only one run
    (KVM's domain ID, :attr:`Kind.run_key <hvballoon.kinds.Kind.run_key>`; ``None``: a target
    that survives a restart, or a run not known).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vm_id: str
    vm: str
    mechanism: str
    before_bytes: int = Field(ge=0)
    before_unlimited: bool = False
    target_bytes: int = Field(ge=0)
    marked: bool = False
    since: Timestamp
    updated: Timestamp
    prior_bytes: int | None = None
    run: str | None = None

    def set_by_controller(self, value: int, tolerance: int = 1) -> bool | None:
        """Whether ``value``, the target the hypervisor holds the VM to, is one the controller
        set (its last target or, while that move is not known made, what the VM was at), within
        ``tolerance`` bytes; ``None`` when the controller's target is not known (a VM found
        marked). ``False``: someone else resized the VM since."""
        if self.target_bytes <= 0:
            return None
        ours = [self.target_bytes] + ([self.prior_bytes] if self.prior_bytes is not None else [])
        return any(abs(value - v) < max(1, tolerance) for v in ours)


@dataclass(frozen=True)
class Move:
    """A change the controller is about to make: ``vm_id`` from ``from_bytes`` to ``to_bytes``.

    ``before_unlimited`` says, for a VM's first lower, that what it had was no limit at all;
    ``marked`` that the VM carries the controller's mark; ``run`` the VM's run now, where a
    target lasts only one (see :attr:`Lowered.run`); ``before_bytes``, for a VM's first lower,
    what it had where that is not ``from_bytes``: an ESXi limit above the VM's memory size (its
    target reads as the memory size, all such a limit lets it have), kept as it was so that
    release sets that limit back.
    """

    vm_id: str
    vm: str
    mechanism: str
    from_bytes: int
    to_bytes: int
    before_unlimited: bool = False
    marked: bool = False
    run: str | None = None
    before_bytes: int | None = None

    @property
    def lowering(self) -> bool:
        return self.to_bytes < self.from_bytes


def state_directory() -> Path:
    """Where hvballoon keeps state: systemd's ``$STATE_DIRECTORY`` (its first entry), else
    ``$XDG_STATE_HOME/hvballoon`` when that is set, else ``/var/lib/hvballoon`` for root and
    ``~/.local/state/hvballoon`` for anyone else."""
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = os.environ.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "hvballoon"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/hvballoon")
    return Path.home() / ".local" / "state" / "hvballoon"


def _private_dirs(directory: Path) -> None:
    """``mkdir -p directory``, each directory it creates private (0700, whatever the umask: a
    journal says which VMs were lowered); those already there are left as they are.
    (``Path.mkdir(parents=True, mode=…)`` gives the mode to the last one only.)"""
    missing: list[Path] = []
    for d in (directory, *directory.parents):
        if d.exists():
            break
        missing.append(d)
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # made by another process meanwhile: its own
            continue
        os.chmod(d, 0o700)
    if not directory.is_dir():  # a file where the directory should be
        directory.mkdir(exist_ok=True)  # raises the OSError that says so


def default_journal_path(uri: str) -> Path:
    """The journal of the controller of ``uri`` (redacted first: a password never names a file).

    >>> default_journal_path("qemu:///system").name
    'qemu_system-1021ab2bc87a.db'
    """
    from hvballoon._uri import redact_uri

    shown = redact_uri(uri)
    slug = re.sub(r"[^A-Za-z0-9.@-]+", "_", shown)[:80].strip("_") or "uri"
    digest = hashlib.sha256(shown.encode()).hexdigest()[:12]
    return state_directory() / "journal" / f"{slug}-{digest}.db"


def _identity(path: Path, missing: Any = ...) -> Any:
    """``(device, inode)`` of the file at ``path`` (``missing`` when there is none, if given)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if missing is ...:
            raise
        return missing
    return (st.st_dev, st.st_ino)


def _fd_identity(handle: IO[str]) -> tuple[int, int]:
    st = os.fstat(handle.fileno())
    return (st.st_dev, st.st_ino)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Journal:
    """The journal of one controller (one URI): a small SQLite file, or in memory (``path=None``).

    Open it with :meth:`open`; it is a context manager. ``lock=True`` (the default) holds an
    exclusive lock (``flock`` on ``PATH.lock``) until :meth:`close`; a second opener is refused
    with :class:`~hvballoon.errors.InvalidStateError` naming the process that holds it.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path | None, uri: str, lock: IO[str] | None) -> None:
        self._conn = conn
        self.path = path
        self.uri = uri
        self._lock = lock
        #: the file's (device, inode) as opened: a file deleted or replaced since is noticed
        self._identity: tuple[int, int] | None = None

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path | None, *, uri: str, lock: bool = True, create: bool = True) -> Journal:
        """Open (or, with ``create``, create) the journal at ``path`` for ``uri``.

        Refused with a clear error: a file that is not a journal, a journal of another URI, a
        directory that cannot be created or written, a journal another process holds.
        """
        from hvballoon._uri import redact_uri

        shown = redact_uri(uri)
        if path is None:
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            journal = cls(conn, None, shown, None)
            journal._init(shown)
            return journal
        where = Path(path).expanduser()
        if where.is_dir():
            raise InvalidRequestError(f"the journal {str(where)!r} is a directory; name a file")
        if not where.exists() and not create:
            raise InvalidRequestError(
                f"no journal at {str(where)!r}: the controller of {shown} keeps one there once it "
                "runs (give --journal PATH for another)",
                details={"journal": str(where)},
            )
        try:
            _private_dirs(where.parent)
        except OSError as exc:
            raise InvalidRequestError(
                f"cannot create the journal's directory {str(where.parent)!r}: {exc.strerror or exc}",
                details={"journal": str(where)},
            ) from None
        held = cls._take_lock(where) if lock else None
        try:
            conn = sqlite3.connect(str(where), isolation_level=None, timeout=10, check_same_thread=False)
            journal = cls(conn, where, shown, held)
            journal._init(shown)
        except sqlite3.DatabaseError as exc:
            if held is not None:
                held.close()
            raise InvalidRequestError(
                f"{str(where)!r} is not a hvballoon journal (or it is damaged): {exc}",
                details={"journal": str(where)},
            ) from None
        except BaseException:
            if held is not None:
                held.close()
            raise
        with contextlib.suppress(OSError):
            os.chmod(where, 0o600)
        journal._identity = _identity(where)
        return journal

    @staticmethod
    def _lock_path(where: Path) -> Path:
        """The lock beside the journal's real file: a journal named through a symbolic link is
        locked as the file it names."""
        real = where.resolve()
        return real.with_name(real.name + ".lock")

    @staticmethod
    def _take_lock(where: Path) -> IO[str]:
        import fcntl

        lock_path = Journal._lock_path(where)
        try:
            handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held until close()
        except OSError as exc:
            raise InvalidRequestError(
                f"cannot open the journal's lock {str(lock_path)!r}: {exc.strerror or exc}",
                details={"journal": str(where)},
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise InvalidStateError(
                f"the journal {str(where)!r} is in use by a running controller ({holder}): stop it "
                "first (it releases on exit with --release-on-exit), or name another journal",
                details={"journal": str(where), "holder": holder},
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        return handle

    def _init(self, uri: str) -> None:
        c = self._conn
        foreign = foreign_tables(c, {"meta", "lowered", "changes"})  # a fake world's state, anything
        if foreign:
            raise sqlite3.DatabaseError(f"it is a database with other tables ({foreign})")
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = FULL")  # a committed change is on disk before the call
        with self._tx():
            for statement in _SCHEMA:
                c.execute(statement)
            have = {row[1] for row in c.execute("PRAGMA table_info(lowered)").fetchall()}
            for column, sql_type in _ADDED_COLUMNS.items():
                if column not in have:
                    c.execute(f"ALTER TABLE lowered ADD COLUMN {column} {sql_type}")
            meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                c.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("format", _FORMAT), ("uri", uri), ("created", _now())],
                )
            elif meta.get("format") != _FORMAT or "uri" not in meta:
                raise sqlite3.DatabaseError(f"unknown journal format {meta.get('format')!r}")
            elif meta["uri"] != uri:
                raise InvalidRequestError(
                    f"the journal {str(self.path)!r} belongs to the controller of {meta['uri']}, "
                    f"not of {uri}: name the journal of this URI (or none: each URI has its own)",
                    details={"journal": str(self.path), "journal_uri": meta["uri"], "uri": uri},
                )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _still_there(self, *, writing: bool = False) -> None:
        """The journal's file as it was opened, before anything is read or written. One deleted
        while the journal is open (by hand, a clean-up of the state directory) is written again
        at its path with everything the journal holds (``"event": "journal_restored"``): a
        release after this process would find nothing otherwise. One replaced by another file
        is not this journal's to overwrite: a write is
        :class:`~hvballoon.errors.InvalidStateError` (it would not last), a read reads what this
        journal holds."""
        if self.path is None or self._identity is None:
            return
        try:
            now = _identity(self.path)
        except FileNotFoundError:
            now = None
        except OSError:
            return  # what is wrong is said by the read or the write
        if now == self._identity:
            return
        where = str(self.path)
        if now is not None:
            if not writing:
                return
            raise InvalidStateError(
                f"the journal {where!r} was replaced by another file while this controller held it: "
                "it is not written over; stop the controller and see which file is the journal",
                details={"journal": where},
            )
        try:
            self._rewrite()
        except (OSError, sqlite3.Error) as exc:
            raise InvalidStateError(
                f"the journal {where!r} was deleted while this controller held it, and cannot be "
                f"written again: {exc}",
                details={"journal": where},
            ) from None
        held = len(self.lowered_names())
        log.warning(
            "the journal %s was deleted while the controller held it: written again, with the %d VMs "
            "it holds lowered", where, held,
            extra={"event": "journal_restored", "journal": where, "lowered": held},
        )  # fmt: skip

    def _rewrite(self) -> None:
        """Write the journal again at its path (its file was deleted), holding its lock there."""
        assert self.path is not None
        where = self.path
        copy = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._conn.backup(copy)
        _private_dirs(where.parent)
        if self._lock is not None and _identity(Journal._lock_path(where), missing=None) != _fd_identity(
            self._lock
        ):
            self._lock.close()  # the lock file went with it: take the one at the path now
            self._lock = None
            self._lock = Journal._take_lock(where)
        self._conn.close()  # the last connection to the deleted file: its WAL goes with it
        self._conn = copy  # what the journal holds, in memory until its file is back
        for stale in (where.with_name(where.name + "-wal"), where.with_name(where.name + "-shm")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        conn = sqlite3.connect(str(where), isolation_level=None, timeout=10, check_same_thread=False)
        try:
            copy.backup(conn)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        copy.close()
        with contextlib.suppress(OSError):
            os.chmod(where, 0o600)
        self._identity = _identity(where)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A transaction of the running journal: a file that can no longer be written (a full
        disk, a read-only file system, an I/O error) is an
        :class:`~hvballoon.errors.InvalidStateError` naming it, and nothing of the transaction
        is kept."""
        self._still_there(writing=True)
        try:
            with self._tx() as c:
                yield c
        except sqlite3.Error as exc:
            raise self._unusable(exc, "written") from None

    def _unusable(self, exc: sqlite3.Error, what: str) -> InvalidStateError:
        where = str(self.path) if self.path is not None else ":memory:"
        return InvalidStateError(
            f"the journal {where!r} cannot be {what}: {exc}",
            details={"journal": where, "sqlite_error": str(exc)},
        )

    def close(self) -> None:
        """Close the file and let go of the lock."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Journal {self.path or ':memory:'} {self.uri}>"

    # -- reading --------------------------------------------------------------------------

    def lowered(self) -> list[Lowered]:
        """Every VM lowered and not given back yet, oldest first."""
        self._still_there()
        try:
            rows = self._conn.execute(
                "SELECT vm_id, vm, mechanism, before_bytes, before_unlimited, target_bytes, marked, since, "
                "updated, prior_bytes, run FROM lowered ORDER BY since, vm"
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._unusable(exc, "read") from None
        return [
            Lowered(
                vm_id=r[0],
                vm=r[1],
                mechanism=r[2],
                before_bytes=r[3],
                before_unlimited=bool(r[4]),
                target_bytes=r[5],
                marked=bool(r[6]),
                since=r[7],
                updated=r[8],
                prior_bytes=r[9],
                run=r[10],
            )
            for r in rows
        ]

    def lowered_names(self) -> dict[str, str]:
        """VM id → name of every VM lowered and not given back yet (a cheaper :meth:`lowered`)."""
        self._still_there()
        try:
            return dict(self._conn.execute("SELECT vm_id, vm FROM lowered").fetchall())
        except sqlite3.Error as exc:
            raise self._unusable(exc, "read") from None

    def runs(self) -> dict[str, tuple[str, int, bool]]:
        """VM id → (run, target, marked) of every VM lowered whose run is known (a cheaper
        :meth:`lowered`, read each round)."""
        self._still_there()
        try:
            rows = self._conn.execute(
                "SELECT vm_id, run, target_bytes, marked FROM lowered WHERE run IS NOT NULL"
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._unusable(exc, "read") from None
        return {vm_id: (run, target, bool(marked)) for vm_id, run, target, marked in rows}

    def get(self, vm_id: str) -> Lowered | None:
        """The VM's entry, if the controller holds it lowered."""
        return next((e for e in self.lowered() if e.vm_id == vm_id), None)

    def changes(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last ``limit`` changes recorded, newest last."""
        try:
            cur = self._conn.execute(
                "SELECT seq, at, round, vm_id, vm, from_bytes, to_bytes, state, error FROM changes "
                "ORDER BY seq DESC LIMIT ?",
                (limit,),
            )
            rows = cur.fetchall()
        except sqlite3.Error as exc:
            raise self._unusable(exc, "read") from None
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in reversed(rows)]

    # -- writing --------------------------------------------------------------------------

    def intend(self, round_no: int, moves: Iterable[Move]) -> None:
        """Record ``moves`` before they are made (one transaction, on disk when this returns).

        A VM's first lower makes it *lowered*, with what it had before; a later move of a
        lowered VM updates the target the controller asked for.
        """
        now = _now()
        with self._writing() as c:
            for m in moves:
                c.execute(
                    "INSERT INTO changes (at, round, vm_id, vm, from_bytes, to_bytes, state) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'intended')",
                    (now, round_no, m.vm_id, m.vm, m.from_bytes, m.to_bytes),
                )
                # what the VM was at stays in force (as far as the controller knows) until the
                # move is known made
                c.execute(
                    "UPDATE lowered SET prior_bytes = ?, target_bytes = ?, vm = ?, updated = ?, "
                    "run = ? WHERE vm_id = ?",
                    (m.from_bytes, m.to_bytes, m.vm, now, m.run, m.vm_id),
                )
                if m.lowering:
                    c.execute(
                        "INSERT OR IGNORE INTO lowered (vm_id, vm, mechanism, before_bytes, before_unlimited, "
                        "target_bytes, marked, since, updated, run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            m.vm_id,
                            m.vm,
                            m.mechanism,
                            m.from_bytes if m.before_bytes is None else m.before_bytes,
                            int(m.before_unlimited),
                            m.to_bytes,
                            int(m.marked),
                            now,
                            now,
                            m.run,
                        ),
                    )
            self._prune(c)

    def settle(self, round_no: int, outcomes: Mapping[str, str | None]) -> list[str]:
        """Record how the moves of ``round_no`` ended: VM id → ``None`` (made) or an error code.

        A VM raised back to (or above) what it had before is no longer lowered; the ids of
        those are returned (their marks, if any, can go).
        """
        given_back: list[str] = []
        with self._writing() as c:
            for vm_id, error in outcomes.items():
                c.execute(
                    "UPDATE changes SET state = ?, error = ? WHERE seq = (SELECT MAX(seq) FROM changes "
                    "WHERE vm_id = ? AND round = ? AND state = 'intended')",
                    ("failed" if error else "made", error, vm_id, round_no),
                )
                if error:
                    continue  # either target may be in force (a timeout may have made it)
                c.execute("UPDATE lowered SET prior_bytes = NULL WHERE vm_id = ?", (vm_id,))
                row = c.execute(
                    "SELECT before_bytes, before_unlimited, target_bytes FROM lowered WHERE vm_id = ?",
                    (vm_id,),
                ).fetchone()
                if row is not None and not row[1] and row[2] >= row[0]:
                    c.execute("DELETE FROM lowered WHERE vm_id = ?", (vm_id,))
                    given_back.append(vm_id)
        return given_back

    def adopt(self, entries: Iterable[Lowered]) -> None:
        """Take in VMs found lowered elsewhere (marks on the VMs) that the journal lacks."""
        with self._writing() as c:
            for e in entries:
                c.execute(
                    "INSERT OR IGNORE INTO lowered (vm_id, vm, mechanism, before_bytes, before_unlimited, "
                    "target_bytes, marked, since, updated, prior_bytes, run) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        e.vm_id,
                        e.vm,
                        e.mechanism,
                        e.before_bytes,
                        int(e.before_unlimited),
                        e.target_bytes,
                        int(e.marked),
                        e.since.isoformat(),
                        e.updated.isoformat(),
                        e.prior_bytes,
                        e.run,
                    ),
                )

    def released(
        self, vm_id: str, *, vm: str, to_bytes: int | None, round_no: int = 0, why: str | None = None
    ) -> None:
        """The VM was given back what it had (or more): it is no longer lowered. With ``why``,
        it was not given back but its lowering no longer holds (the VM restarted at its boot
        size, someone else resized it): the change log says ``lapsed`` and why."""
        state = "released" if why is None else "lapsed"
        with self._writing() as c:
            c.execute(
                "INSERT INTO changes (at, round, vm_id, vm, from_bytes, to_bytes, state, error) "
                "SELECT ?, ?, ?, ?, target_bytes, ?, ?, ? FROM lowered WHERE vm_id = ?",
                (_now(), round_no, vm_id, vm, to_bytes, state, why, vm_id),
            )
            c.execute("DELETE FROM lowered WHERE vm_id = ?", (vm_id,))

    def rerun(self, vm_id: str, run: str | None) -> None:
        """The VM came back lowered in another run (restored from a save, say): its lowering
        still holds, in ``run`` now."""
        with self._writing() as c:
            c.execute("UPDATE lowered SET run = ?, updated = ? WHERE vm_id = ?", (run, _now(), vm_id))

    def _prune(self, c: sqlite3.Connection) -> None:
        c.execute("DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - ?", (KEEP_CHANGES,))
