"""Keyed in-process worlds (moto style): ``world("seed")`` makes ``fake://seed`` share one world.

Outside such a block every ``connect("fake://…")`` gets a fresh world, so tests never leak
state into each other.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from hvballoon.fake.catalog import load_scenario
from hvballoon.fake.scenario import builtin_scenarios

if TYPE_CHECKING:
    from hvballoon._uri import ParsedURI
    from hvballoon.backend import ConnectOptions
    from hvballoon.fake.world import World

_lock = threading.Lock()
_active: dict[str, list[World]] = {}
#: the fresh worlds of connects that failed (a scripted ``connect`` fault), by the connect's
#: options, which the session hands every attempt of one connect: its retry meets the world
#: whose fault fired, not a new one where a fault of ``count: 1`` fires again, and again (the
#: options are held, so their id is no other's while remembered)
_failed_connects: dict[int, tuple[ConnectOptions, World]] = {}


def scenario_ref(uri: ParsedURI) -> str:
    """``fake://`` → seed, ``fake://java`` → java, ``fake:///x.yaml`` → /x.yaml."""
    if uri.host:
        return uri.host
    if uri.path and uri.path != "/":
        return uri.path
    return "seed"


def canonical_ref(ref: str) -> str:
    """A scenario reference as recorded with a persisted world: a built-in's name, else the
    file's absolute path (so ``./x.yaml`` and ``/abs/x.yaml`` are the same scenario)."""
    if ref in builtin_scenarios():
        return ref
    return str(Path(ref).expanduser().resolve())


def push(key: str, world: World) -> None:
    with _lock:
        _active.setdefault(key, []).append(world)


def pop(key: str, world: World) -> None:
    with _lock:
        stack = _active.get(key, [])
        if world in stack:
            stack.remove(world)
        if not stack:
            _active.pop(key, None)


def new_world(ref: str, *, flavor: str | None, seed: int | None, speed: float | None = None) -> World:
    """A fresh world of scenario ``ref``; with ``speed`` its clock follows real time."""
    from hvballoon.fake.world import World

    if speed is None:
        return World(load_scenario(ref), flavor=flavor, seed=seed)
    return World(load_scenario(ref), flavor=flavor, seed=seed, clock="wall", speed=speed)


def world_for(
    uri: ParsedURI,
    *,
    flavor: str | None,
    seed: int | None,
    speed: float | None = None,
    opts: ConnectOptions | None = None,
) -> World:
    """The world ``fake://`` connects to: the innermost :func:`hvballoon.fake.world` block's of
    its scenario, else the one an earlier attempt of the same connect (``opts``) failed on
    (:func:`connect_failed`), else a fresh one."""
    ref = scenario_ref(uri)
    with _lock:
        stack = _active.get(ref)
        if stack:
            return stack[-1]
        if opts is not None and id(opts) in _failed_connects:
            return _failed_connects.pop(id(opts))[1]
    return new_world(ref, flavor=flavor, seed=seed, speed=speed)


def connect_failed(opts: ConnectOptions, world: World) -> None:
    """Remember ``world`` for the next attempt of the connect of ``opts`` (a few at most)."""
    with _lock:
        _failed_connects[id(opts)] = (opts, world)
        while len(_failed_connects) > 16:
            del _failed_connects[next(iter(_failed_connects))]
