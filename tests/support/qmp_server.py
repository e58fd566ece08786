"""A tiny QMP server speaking the real wire protocol, for the QMP backend's fast tests.

It is a peer, not a mock of ``qemu.qmp``: the backend's real client connects to a real UNIX
socket and gets what QEMU sends. What it models, from QEMU's documentation and source (not
from the backend under test):

- the protocol (QEMU ``docs/interop/qmp-spec``): a greeting ``{"QMP": {"version": …,
  "capabilities": […]}}``; until ``qmp_capabilities`` every other command is answered with
  ``CommandNotFound`` "Expecting capabilities negotiation with 'qmp_capabilities'"; replies are
  ``{"return": …}`` or ``{"error": {"class": …, "desc": …}}`` echoing the request's ``id``;
  asynchronous events ``{"event": …, "data": …, "timestamp": …}`` may come at any time; the
  client's objects are a JSON stream (no separator needed), QEMU's end in CRLF; one client is served at a time (a second one waits, ungreeted, in the backlog);
- the commands (QEMU ``qapi/machine.json``, ``qapi/qom.json``, ``hw/virtio/virtio-balloon.c``):
  ``query-name`` (``{}`` without ``-name``), ``query-uuid`` (all zeros without ``-uuid``),
  ``query-status``, ``query-memory-size-summary`` (``base-memory``, ``plugged-memory``),
  ``query-balloon`` (``actual``; without a balloon ``DeviceNotActive`` "No balloon device has
  been activated"), ``balloon`` (``value`` bytes; the target is capped at the RAM size; ``value``
  ≤ 0 is a ``GenericError``), ``qom-list``, ``qom-get``/``qom-set`` of the balloon's
  ``guest-stats-polling-interval`` and ``guest-stats`` (``{"stats": {"stat-…": bytes or -1},
  "last-update": host seconds}``) and ``deflate-on-oom`` (on a PCI balloon it lives on the
  ``virtio-backend`` child); an unknown path is ``DeviceNotFound``, an unknown property a
  ``GenericError``;
- the guest (a model, instant): the balloon reaches its target at once; while a stats period
  runs the guest reports every period (``last-update`` moves), and setting a period from 0
  makes it report at once, as QEMU's stats timer fires immediately.

Faults are scripted per test: ``hang_up`` (close the connection on receiving a command, the
next N times), ``errors`` (answer a command with an error class), ``silent`` (never greet),
``garbage`` (greet with something that is not QMP), ``missing`` (commands QEMU lacks),
``malformed`` (a well-formed reply whose value is not what QEMU's schema says: a broken or
foreign peer; ``qom-get``/``qom-set`` are keyed with their property, ``"qom-get guest-stats"``),
``event_before_replies``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvballoon
from hvballoon.retry import RetryPolicy
from hvballoon.session import Hypervisor

__all__ = ["FakeQemu", "Gauge", "QmpServer", "Serve", "booted_long_ago", "connect"]

MiB = 2**20
NIL = "00000000-0000-0000-0000-000000000000"


@dataclass
class FakeQemu:
    """The state of one simulated QEMU and its guest."""

    name: str | None = "vm"
    uuid: str = NIL
    status: str = "running"
    base_memory: int = 4096 * MiB
    plugged_memory: int = 0
    balloon: bool = True
    balloon_id: str | None = "balloon0"  # None: an anonymous device (no id=)
    pci: bool = True
    deflate_on_oom: bool = False
    free_page_reporting: bool | None = False  # None: a QEMU before 5.1, without the property
    actual: int | None = None
    period: int = 0
    last_update: int = 0  # 0: the guest never reported
    guest_used: int = 1024 * MiB
    guest_cache: int = 256 * MiB
    guest_alive: bool = True  # False: the guest stopped reporting (hung, or its driver unloaded)
    balloon_stuck: bool = False  # True: the guest's driver never answers: QEMU takes a target, actual stays
    # QOM types of devices in the device trees besides the balloon, as QEMU lists them
    # ("hostdev0" named, "device[N]" anonymous): e.g. a GPU passed through, "vfio-pci"
    devices: dict[str, str] = field(default_factory=dict)
    # scripted faults
    hang_up: dict[str, int] = field(default_factory=dict)
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    malformed: dict[str, Any] = field(default_factory=dict)  # command -> the "return" sent instead
    exit_on_hang_up: bool = False  # the hang-up is QEMU exiting: its socket goes too
    reply_delay: float = 0.0  # seconds QEMU takes to answer each command
    silent: bool = False
    garbage: bool = False
    event_before_replies: bool = False
    received: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.actual is None:
            self.actual = self.ram

    @property
    def ram(self) -> int:
        return self.base_memory + self.plugged_memory

    @property
    def balloon_path(self) -> str:
        tree = "/machine/peripheral" if self.balloon_id else "/machine/peripheral-anon"
        return f"{tree}/{self.balloon_id or 'device[0]'}"

    def boot_report(self, at: int) -> None:
        """The driver's one report when it loads (with the period off it is never renewed)."""
        self.last_update = at

    def _guest_tick(self) -> None:
        now = int(time.time())
        if (
            self.guest_alive
            and self.period > 0
            and self.last_update
            and now - self.last_update >= self.period
        ):
            self.last_update = now

    def guest_stats(self) -> dict[str, Any]:
        self._guest_tick()
        total = self.actual or 0
        reported = self.last_update > 0
        value = (lambda v: v) if reported else (lambda v: -1)
        stats = {
            "stat-swap-in": value(0),
            "stat-swap-out": value(0),
            "stat-major-faults": value(3),
            "stat-minor-faults": value(1000),
            "stat-free-memory": value(total - self.guest_used - self.guest_cache),
            "stat-available-memory": value(total - self.guest_used),
            "stat-total-memory": value(total),
            "stat-disk-caches": value(self.guest_cache),
            "stat-htlb-pgalloc": value(0),
            "stat-htlb-pgfail": value(0),
        }
        return {"stats": stats, "last-update": self.last_update}


class _Error(Exception):
    def __init__(self, cls: str, desc: str) -> None:
        super().__init__(desc)
        self.cls, self.desc = cls, desc


class Gauge:
    """How many commands the servers sharing it are busy with at once (from a command's arrival
    until its answer is ready to send; one per connection at most), and the most ever
    (thread-safe). A server leaves the gauge before it sends the answer: once the answer is sent
    the client may go on to another server, and each server runs on its own thread, so leaving
    after the send could count a finished command alongside the client's next one."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


class QmpServer:
    """A UNIX-socket QMP server for one :class:`FakeQemu`, on its own event loop thread."""

    def __init__(self, path: Path, vm: FakeQemu, gauge: Gauge | None = None) -> None:
        self.path = path
        self.vm = vm
        self.gauge = gauge or Gauge()
        self.connections = 0
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._one_client = asyncio.Lock()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        self._one_client = asyncio.Lock()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):  # clients still connected, or waiting their turn
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()  # its sockets with it
        with contextlib.suppress(OSError):
            self.path.unlink()

    # -- the wire ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            async with self._one_client:  # QEMU's monitor serves one client at a time
                self.connections += 1
                await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, obj: Any) -> None:
        writer.write(json.dumps(obj).encode() + b"\r\n")
        await writer.drain()

    @staticmethod
    async def _requests(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
        """The JSON objects a client sends: a stream (QEMU's parser needs no newline between them)."""
        decoder = json.JSONDecoder()
        buffer = ""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buffer += chunk.decode()
            while True:
                buffer = buffer.lstrip()
                if not buffer:
                    break
                try:
                    obj, end = decoder.raw_decode(buffer)
                except json.JSONDecodeError:
                    break  # an object not complete yet
                buffer = buffer[end:]
                yield obj

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        vm = self.vm
        if vm.silent:
            await reader.read()  # wait for the client to give up
            return
        if vm.garbage:
            await self._send(writer, {"hello": "this is not QMP"})
            await reader.read()
            return
        version = {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "hvballoon test peer"}
        await self._send(writer, {"QMP": {"version": version, "capabilities": ["oob"]}})
        negotiated = False
        async for request in self._requests(reader):
            command = request.get("execute")
            vm.received.append(command)
            if vm.hang_up.get(command, 0) > 0:
                vm.hang_up[command] -= 1
                if vm.exit_on_hang_up and self._server is not None:
                    self._server.close()
                    with contextlib.suppress(OSError):
                        self.path.unlink()
                return
            with self.gauge:  # busy from a command's arrival until its answer is ready
                messages = await self._answer(request, command, negotiated)
            for message in messages:
                await self._send(writer, message)
            negotiated = negotiated or command == "qmp_capabilities"

    async def _answer(self, request: dict[str, Any], command: Any, negotiated: bool) -> list[dict[str, Any]]:
        """What to send for ``request``, in order (an event may come before the reply)."""
        vm = self.vm
        reply: dict[str, Any]
        try:
            if command == "qmp_capabilities":
                value: Any = {}
            elif not negotiated:
                raise _Error("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
            else:
                value = self._execute(command, request.get("arguments") or {})
            reply = {"return": value}
        except _Error as err:
            reply = {"error": {"class": err.cls, "desc": err.desc}}
        if "id" in request:
            reply["id"] = request["id"]
        if vm.reply_delay:
            await asyncio.sleep(vm.reply_delay)
        if vm.event_before_replies and negotiated and command != "qmp_capabilities":
            # QEMU sends events only to a monitor past negotiation
            now = time.time()
            event = {
                "event": "BALLOON_CHANGE",
                "data": {"actual": vm.actual},
                "timestamp": {"seconds": int(now), "microseconds": int(now % 1 * 1e6)},
            }
            return [event, reply]
        return [reply]

    # -- the commands --------------------------------------------------------------------------

    def _execute(self, command: str, args: dict[str, Any]) -> Any:
        vm = self.vm
        if command in vm.errors:
            raise _Error(*vm.errors[command])
        key = f"{command} {args.get('property')}" if command in ("qom-get", "qom-set") else command
        if key in vm.malformed:
            return vm.malformed[key]
        handler = getattr(self, "_cmd_" + command.replace("-", "_"), None)
        if handler is None or command in vm.missing:
            raise _Error("CommandNotFound", f"The command {command} has not been found")
        return handler(args)

    def _cmd_query_name(self, args: dict[str, Any]) -> Any:
        return {"name": self.vm.name} if self.vm.name is not None else {}

    def _cmd_query_uuid(self, args: dict[str, Any]) -> Any:
        return {"UUID": self.vm.uuid}

    def _cmd_query_status(self, args: dict[str, Any]) -> Any:
        return {"status": self.vm.status, "singlestep": False, "running": self.vm.status == "running"}

    def _cmd_query_memory_size_summary(self, args: dict[str, Any]) -> Any:
        return {"base-memory": self.vm.base_memory, "plugged-memory": self.vm.plugged_memory}

    def _no_balloon(self) -> _Error:
        return _Error("DeviceNotActive", "No balloon device has been activated")

    def _cmd_query_balloon(self, args: dict[str, Any]) -> Any:
        if not self.vm.balloon:
            raise self._no_balloon()
        return {"actual": self.vm.actual}

    def _cmd_balloon(self, args: dict[str, Any]) -> Any:
        if not self.vm.balloon:
            raise self._no_balloon()
        value = args.get("value")
        if not isinstance(value, int) or value <= 0:
            raise _Error("GenericError", "Parameter 'value' expects a size")
        if not self.vm.balloon_stuck:
            self.vm.actual = min(value, self.vm.ram)
        return {}

    def _devices(self, tree: str) -> list[dict[str, str]]:
        out = [{"name": "type", "type": "string"}]
        vm = self.vm
        kind = "virtio-balloon-pci" if vm.pci else "virtio-balloon-device"
        if vm.balloon and vm.balloon_path.startswith(tree + "/"):
            out.append({"name": vm.balloon_path.rsplit("/", 1)[1], "type": f"child<{kind}>"})
        if tree == "/machine/peripheral-anon":
            out.append({"name": "device[7]", "type": "child<virtio-serial-pci>"})
        for name, type_ in vm.devices.items():
            if (tree == "/machine/peripheral-anon") is name.startswith("device["):
                out.append({"name": name, "type": f"child<{type_}>"})
        return out

    def _cmd_qom_list(self, args: dict[str, Any]) -> Any:
        path = args.get("path")
        if path in ("/machine/peripheral", "/machine/peripheral-anon"):
            return self._devices(path)
        raise _Error("DeviceNotFound", f"Device '{path}' not found")

    def _property(self, args: dict[str, Any]) -> tuple[str, str]:
        vm = self.vm
        path, prop = args.get("path"), args.get("property")
        if not vm.balloon or path not in (vm.balloon_path, vm.balloon_path + "/virtio-backend"):
            raise _Error("DeviceNotFound", f"Device '{path}' not found")
        backend = path.endswith("/virtio-backend") or not vm.pci
        known = {"deflate-on-oom"} if backend else set()
        if backend and vm.free_page_reporting is not None:
            known.add("free-page-reporting")
        known |= {"guest-stats", "guest-stats-polling-interval"}
        if prop not in known:
            raise _Error(
                "GenericError",
                f"Property '{'virtio-balloon-pci' if vm.pci else 'virtio-balloon-device'}.{prop}' not found",
            )
        return path, str(prop)

    def _cmd_qom_get(self, args: dict[str, Any]) -> Any:
        _path, prop = self._property(args)
        if prop == "guest-stats":
            return self.vm.guest_stats()
        if prop == "guest-stats-polling-interval":
            return self.vm.period
        if prop == "free-page-reporting":
            return self.vm.free_page_reporting
        return self.vm.deflate_on_oom

    def _cmd_qom_set(self, args: dict[str, Any]) -> Any:
        _path, prop = self._property(args)
        if prop != "guest-stats-polling-interval":
            raise _Error("GenericError", f"Property '{prop}' is read-only")
        value = args.get("value")
        if not isinstance(value, int) or value < 0:
            raise _Error("GenericError", "timer value must be greater than zero")
        was = self.vm.period
        self.vm.period = value
        if was == 0 and value > 0:
            self.vm.last_update = int(time.time())  # the timer fires at once; the guest answers
        return {}


# -- for the tests: sessions on these servers --------------------------------------------------

#: ``serve("101", name="web01", …)``: starts a :class:`QmpServer` for a :class:`FakeQemu` at
#: ``<dir>/101.qmp`` (the QMP tests' ``serve`` fixture).
Serve = Callable[..., FakeQemu]


def booted_long_ago() -> int:
    """A boot-time report's host time: well before now."""
    return int(time.time()) - 600


def connect(uri: str, **kw: Any) -> Hypervisor:
    """A session with a short timeout and no retry: a fault shows at once."""
    kw.setdefault("timeout", 5)
    kw.setdefault("retry", RetryPolicy(max_attempts=1))
    return hvballoon.connect(uri, **kw)
