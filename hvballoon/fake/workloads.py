"""Workloads: how a guest's memory demand moves over time, validated and vectorised.

Every kind describes a *change* from the VM's ``used`` figure, so at time zero the guest uses
exactly what the scenario says; ``mixed`` adds the changes of its parts. Sizes use hvballoon's
spellings (``2GiB``), durations ``'30m'``/``'8h'`` or seconds.

==============  ===========================================================================
kind            params
==============  ===========================================================================
constant        (none)
diurnal         amplitude (size), period (24h), phase (0s)
ramp            to (size), over (duration), start (0s)
spike           at, duration, size, rise (30s)
random_walk     step (64MiB: standard deviation per minute), low, high (sizes; the walk
                reflects off them; default kernel+unfreeable .. 90 % of memory); one step
                per simulation step of the clock, whatever pieces the world is advanced in
jvm             heap (size), initial_heap (= heap: all taken at start), warmup (30m),
                touch_rate (0.05/s: how fast a squeezed heap is faulted back by the GC)
database        buffer_pool (size), filled (= buffer_pool), warmup (1h), query_memory (0),
                period (24h), touch_rate (0.02/s)
mixed           parts: a list of {kind, params} (not mixed)
==============  ===========================================================================

A JVM heap and a database buffer pool are taken and never given back to the OS: the curve
never falls, and when the balloon squeezes the guest those pages go to the guest's swap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from hvballoon.errors import HVBalloonError
from hvballoon.units import MiB, format_sizes, parse_duration, parse_size, parse_typed_target

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["KINDS", "TOUCH_RATES", "TYPED_SIZES", "Component", "WorkloadBlock", "validate_params"]


#: the largest size a simulated world holds (1 PiB): its physics run in float64, exact to 2**53
MAX_SIMULATED_BYTES = 2**50


#: The validation context of a scenario a person wrote (a file): a number without a unit below
#: 1 MiB there is a unit left out (``used: 3`` meant 3 GiB), refused rather than read as bytes.
TYPED_SIZES = {"typed_sizes": True}


def _size(value: Any, info: ValidationInfo) -> int:
    try:
        if info.context and info.context.get("typed_sizes"):
            size = parse_typed_target(value, what="size", allow_zero=True, noun="size")
        else:
            size = parse_size(value, allow_zero=True)
    except HVBalloonError as exc:
        raise ValueError(exc.message) from None
    if size > MAX_SIMULATED_BYTES:
        raise ValueError(f"{value!r} is more than a simulated world holds (at most 1 PiB)")
    return size


def _duration(value: Any) -> float:
    try:
        return parse_duration(value)
    except HVBalloonError as exc:
        raise ValueError(exc.message) from None


Size = Annotated[int, BeforeValidator(_size)]
Duration = Annotated[float, BeforeValidator(_duration)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConstantParams(_Params):
    pass


class DiurnalParams(_Params):
    amplitude: Size
    period: Duration = Field(default=86400.0, gt=0)
    phase: Duration = 0.0


class RampParams(_Params):
    to: Size
    over: Duration = Field(gt=0)
    start: Duration = 0.0


class SpikeParams(_Params):
    at: Duration
    duration: Duration = Field(gt=0)
    size: Size
    rise: Duration = Field(default=30.0, gt=0)


def _compared(value: int | None, info: ValidationInfo, other: str, *, above: bool, why: str) -> int | None:
    """``value``, refused when it is ``above`` (else below) the parameter ``other`` given
    before it: a pair of sizes that means nothing the other way round."""
    bound = info.data.get(other)
    if value is not None and bound is not None and (value > bound if above else value < bound):
        shown, shown_bound = format_sizes(value, bound)
        raise ValueError(f"{shown} is {'above' if above else 'below'} {other} {shown_bound}: {why}")
    return value


class RandomWalkParams(_Params):
    step: Size = 64 * MiB
    low: Size | None = None
    high: Size | None = None

    @field_validator("high")
    @classmethod
    def _above_low(cls, high: int | None, info: ValidationInfo) -> int | None:
        return _compared(high, info, "low", above=False, why="the walk reflects between low and high")


class JVMParams(_Params):
    heap: Size
    initial_heap: Size | None = None
    warmup: Duration = Field(default=1800.0, gt=0)
    touch_rate: float = Field(default=0.05, ge=0, le=10)

    @field_validator("initial_heap")
    @classmethod
    def _within_heap(cls, initial: int | None, info: ValidationInfo) -> int | None:
        why = "a JVM does not start with an initial heap (-Xms) above its maximum (-Xmx)"
        return _compared(initial, info, "heap", above=True, why=why)


class DatabaseParams(_Params):
    buffer_pool: Size
    filled: Size | None = None
    warmup: Duration = Field(default=3600.0, gt=0)
    query_memory: Size = 0
    period: Duration = Field(default=86400.0, gt=0)
    touch_rate: float = Field(default=0.02, ge=0, le=10)

    @field_validator("filled")
    @classmethod
    def _within_pool(cls, filled: int | None, info: ValidationInfo) -> int | None:
        return _compared(filled, info, "buffer_pool", above=True, why="a pool holds at most its size")


class PartSpec(_Params):
    kind: Literal["constant", "diurnal", "ramp", "spike", "random_walk", "jvm", "database"]
    params: dict[str, Any] = Field(default_factory=dict)


class MixedParams(_Params):
    parts: list[PartSpec] = Field(min_length=1)


_MODELS: dict[str, type[_Params]] = {
    "constant": ConstantParams,
    "diurnal": DiurnalParams,
    "ramp": RampParams,
    "spike": SpikeParams,
    "random_walk": RandomWalkParams,
    "jvm": JVMParams,
    "database": DatabaseParams,
    "mixed": MixedParams,
}
KINDS: tuple[str, ...] = tuple(_MODELS)

#: How fast (per second) swapped pages of a squeezed workload are touched again.
TOUCH_RATES: dict[str, float] = {"jvm": 0.05, "database": 0.02}
DEFAULT_TOUCH_RATE = 0.002


def validate_params(kind: str, params: dict[str, Any], context: dict[str, Any] | None = None) -> _Params:
    """Validate ``params`` for ``kind``; a ValueError names the parameter and the problem.
    ``context`` is the scenario's validation context (:data:`TYPED_SIZES` for a file)."""
    model = _MODELS[kind]
    try:
        parsed = model.model_validate(params, context=context)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            problems.append(f"params.{loc}: {e['msg'].removeprefix('Value error, ')}" if loc else e["msg"])
        raise ValueError(f"{kind} workload: " + "; ".join(problems)) from None
    if isinstance(parsed, MixedParams):
        for i, part in enumerate(parsed.parts):
            try:
                validate_params(part.kind, part.params, context)
            except ValueError as exc:
                raise ValueError(f"mixed workload: parts.{i}: {exc}") from None
    return parsed


class Component:
    """One workload part of one VM (a ``mixed`` VM has several)."""

    __slots__ = ("kind", "params", "vm")

    def __init__(self, vm: int, kind: str, params: _Params) -> None:
        self.vm = vm
        self.kind = kind
        self.params = params


def components(vm: int, kind: str, params: dict[str, Any]) -> list[Component]:
    parsed = validate_params(kind, params)
    if isinstance(parsed, MixedParams):
        return [Component(vm, p.kind, validate_params(p.kind, p.params)) for p in parsed.parts]
    return [Component(vm, kind, parsed)]


def touch_rate(kind: str, params: dict[str, Any]) -> float:
    parsed = validate_params(kind, params)
    if isinstance(parsed, MixedParams):
        return max(touch_rate(p.kind, p.params) for p in parsed.parts)
    return float(getattr(parsed, "touch_rate", DEFAULT_TOUCH_RATE))


class WorkloadBlock:
    """All components of one kind, as arrays: computes their demand change for a time block.

    ``used``, ``floor`` and ``memory`` are the per-VM figures the parameters default against.
    The random walk's unreflected position is state (``walk``, at the grid point ``walk_at``),
    advanced with seeded draws, one per ``grid_seconds`` of simulated time (the world's step).
    """

    def __init__(
        self,
        kind: str,
        comps: list[Component],
        used: npt.NDArray[np.float64],
        floor: npt.NDArray[np.float64],
        memory: npt.NDArray[np.float64],
        *,
        grid_seconds: float = 1.0,
    ) -> None:
        import numpy as np

        self.kind = kind
        #: a random walk takes one step per ``grid_seconds`` of simulated time (the world's step)
        self.grid_seconds = grid_seconds
        self.vm = np.array([c.vm for c in comps], dtype=np.int64)
        self.unique = len(set(self.vm.tolist())) == len(comps)
        #: the columns as a slice when they are evenly spaced (a view: no gather/scatter copies)
        self.cols: slice | npt.NDArray[np.int64] = self.vm
        steps = np.diff(self.vm)
        if len(self.vm) == 1 or (len(steps) and (steps == steps[0]).all() and steps[0] > 0):
            step = int(steps[0]) if len(steps) else 1
            self.cols = slice(int(self.vm[0]), int(self.vm[-1]) + 1, step)
        u = used[self.vm]
        p: dict[str, npt.NDArray[np.float64]] = {}

        def col(name: str) -> npt.NDArray[np.float64]:
            return np.array([float(getattr(c.params, name)) for c in comps], dtype=np.float64)

        def opt(name: str, fallback: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            vals = [getattr(c.params, name) for c in comps]
            return np.array([f if v is None else v for v, f in zip(vals, fallback.tolist(), strict=True)])

        if kind == "diurnal":
            p["amp"], p["period"], p["phase"] = col("amplitude"), col("period"), col("phase")
        elif kind == "ramp":
            p["delta"] = col("to") - u
            p["over"], p["start"] = col("over"), col("start")
        elif kind == "spike":
            p["at"], p["dur"], p["size"], p["rise"] = col("at"), col("duration"), col("size"), col("rise")
        elif kind == "random_walk":
            p["step"] = col("step")
            lo = np.minimum(opt("low", floor[self.vm]), u)
            hi = np.maximum(opt("high", 0.9 * memory[self.vm]), u)
            p["lo"], p["width"] = lo - u, np.maximum(hi - lo, 1.0)
        elif kind == "jvm":
            heap = col("heap")
            initial = opt("initial_heap", heap)
            p["grow"], p["warmup"] = np.maximum(heap - initial, 0.0), col("warmup")
        elif kind == "database":
            pool = col("buffer_pool")
            filled = opt("filled", pool)
            p["grow"], p["warmup"] = np.maximum(pool - filled, 0.0), col("warmup")
            p["query"], p["period"] = col("query_memory"), col("period")
        self.p = p
        self.walk = np.zeros(len(comps), dtype=np.float64)
        #: the grid point (of ``grid_seconds``) the walk's position is at
        self.walk_at = 0

    def delta(
        self,
        t: npt.NDArray[np.float64],
        dt: float,
        rng: np.random.Generator,
        out: npt.NDArray[np.float64] | None = None,
        work: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float64]:
        """Demand change from ``used`` at times ``t`` (shape (steps,)) → (steps, components),
        written into ``out`` (``work``: another such array to compute in; both C-contiguous,
        made when not given)."""
        import numpy as np

        p, tt = self.p, t[:, None]
        shape = (len(t), len(self.walk))
        out = np.empty(shape) if out is None else out
        work = np.empty(shape) if work is None else work
        if self.kind == "diurnal":  # amp * sin(2 pi (t + phase) / period)
            np.add(tt, p["phase"], out=out)
            np.multiply(2 * np.pi, out, out=out)
            np.divide(out, p["period"], out=out)
            np.sin(out, out=out)
            return np.multiply(p["amp"], out, out=out)
        if self.kind == "ramp":  # delta * clip((t - start) / over, 0, 1)
            np.subtract(tt, p["start"], out=out)
            np.divide(out, p["over"], out=out)
            np.clip(out, 0.0, 1.0, out=out)
            return np.multiply(p["delta"], out, out=out)
        if self.kind == "spike":  # size * min(up, down), each a clipped ramp
            np.subtract(tt, p["at"], out=out)
            np.divide(out, p["rise"], out=out)
            np.clip(out, 0.0, 1.0, out=out)
            np.subtract(p["at"] + p["dur"], tt, out=work)
            np.divide(work, p["rise"], out=work)
            np.clip(work, 0.0, 1.0, out=work)
            np.minimum(out, work, out=out)
            return np.multiply(p["size"], out, out=out)
        if self.kind == "random_walk":
            # one draw per grid point (the world's step) of simulated time, whatever the blocks:
            # the path is a function of time, not of how often or in what pieces the world is
            # advanced (a piece shorter than the step sees no new step of the walk, so the walk
            # crosses a threshold as often whoever reads the world); between two points it holds
            grid = np.floor(t / self.grid_seconds + 1e-9).astype(np.int64)
            new = int(grid[-1]) - self.walk_at
            if new > 0:
                steps = rng.standard_normal((new, len(self.walk)))
                np.multiply(steps, p["step"] * np.sqrt(self.grid_seconds / 60.0), out=steps)
                np.cumsum(steps, axis=0, out=steps)
                np.add(self.walk, steps, out=steps)
                row = grid - self.walk_at - 1  # -1: no grid point crossed yet, where the walk was
                path = np.where((row >= 0)[:, None], steps[np.maximum(row, 0)], self.walk)
                self.walk, self.walk_at = steps[-1].copy(), int(grid[-1])
            else:
                path = np.broadcast_to(self.walk, shape)
            # fold the free walk into [lo, lo + width]: a walk reflected at both bounds
            w2 = 2 * p["width"]
            x = np.subtract(path, p["lo"], out=work)
            np.mod(x, w2, out=x)
            np.subtract(w2, x, out=out)
            np.minimum(x, out, out=out)
            return np.add(p["lo"], out, out=out)
        if self.kind == "jvm":  # grow * clip(t / warmup, 0, 1)
            np.divide(tt, p["warmup"], out=out)
            np.clip(out, 0.0, 1.0, out=out)
            return np.multiply(p["grow"], out, out=out)
        if self.kind == "database":  # the pool filling, and query memory over the period
            np.divide(tt, p["warmup"], out=out)
            np.clip(out, 0.0, 1.0, out=out)
            np.multiply(p["grow"], out, out=out)
            np.divide((2 * np.pi) * tt, p["period"], out=work)
            np.cos(work, out=work)
            np.subtract(1.0, work, out=work)
            np.multiply(p["query"] * 0.5, work, out=work)
            return np.add(out, work, out=out)
        out.fill(0.0)
        return out
