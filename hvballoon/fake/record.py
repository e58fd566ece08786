"""Recording a run: time series per VM (demand, current, balloon, guest swap, OOM events) and
for the host (free, reclaimed), written as JSON or CSV and drawn as a PNG.

The world knows nothing of recording: :func:`record` starts a :class:`Recorder` that watches
it through its observer hook (:meth:`World.observe <hvballoon.fake.world.World.observe>`).

>>> from hvballoon.fake.scenario import load_scenario
>>> from hvballoon.fake.world import World
>>> w = World(load_scenario("seed"))
>>> rec = record(w, every=60)
>>> w.advance(600)
>>> len(rec.t), sorted(rec.to_data()["vms"])[:2]
(11, ['app01', 'app02'])
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import numpy.typing as npt

    from hvballoon.fake.world import Block, World

__all__ = ["SERIES", "Recorder", "plot", "record"]

#: Per-VM series, in bytes (``oom_events`` is a cumulative count).
SERIES = ("demand_bytes", "current_bytes", "balloon_bytes", "guest_swap_bytes", "oom_events")
#: samples per block of a recording's arrays
_BLOCK = 256


def record(world: World, every: float = 1.0) -> Recorder:
    """Start recording ``world``'s time series every ``every`` seconds of simulated time, from
    now (a first sample at once)."""
    with world.lock:
        recorder = Recorder(world, every=every)
        recorder.sample_now()
        world.observe(recorder.observe)
        return recorder


class Recorder:
    """Samples the world every ``every`` seconds of simulated time, as an observer of its
    blocks (:func:`record` starts one)."""

    def __init__(self, world: World, *, every: float = 1.0) -> None:
        if not every > 0:
            raise ValueError("every must be above zero")
        self.world = world
        self.every = float(every)
        self.t: list[float] = []
        #: per series, blocks of :data:`_BLOCK` samples, a row per sample and a column per VM
        #: (arrays, not lists: 10,000 VMs for an hour held 36 million Python floats, over a
        #: gigabyte; blocks, not a row each, so a VM's series is read in a few slices)
        self._blocks: dict[str, list[npt.NDArray[Any]]] = {s: [] for s in SERIES}
        self.host_free: list[float] = []
        self.host_swap: list[float] = []
        self._next = world.now

    def _add(self, values: dict[str, Any]) -> None:
        """One sample of every series (each VM's values, in ``World.labels``' order)."""
        import numpy as np

        at = len(self.t) % _BLOCK
        for series, row in values.items():
            blocks = self._blocks[series]
            if at == 0:
                blocks.append(np.empty((_BLOCK, len(row))))
            blocks[-1][at] = row

    def sample_now(self) -> None:
        w, s = self.world, self.world.state
        self._add(
            {
                "demand_bytes": s.demand,
                "current_bytes": s.current,
                "balloon_bytes": [g.ballooned_bytes for g in w.guests.values()],
                "guest_swap_bytes": s.guest_swapped,
                "oom_events": s.oom_events,
            }
        )
        self.t.append(w.now)
        self.host_free.append(float(w.host_free_bytes))
        self.host_swap.append(float(s.host_swapped.sum() + s.compressed.sum() + s.shared.sum()))
        self._next = w.now + self.every

    def observe(self, world: World, block: Block) -> None:
        """A block of steps the world simulated: keeps the rows on the sampling grid."""
        import numpy as np

        t, dem, cur, swp = block.times, block.demand, block.current, block.guest_swapped
        host_free, reclaimed, act = block.host_free, block.reclaimed, block.active
        rows = np.nonzero(t >= self._next - 1e-9)[0]
        if rows.size == 0:
            return
        picked = []
        nxt = self._next
        for r in rows.tolist():
            if t[r] >= nxt - 1e-9:
                picked.append(r)
                nxt = t[r] + self.every
        self._next = nxt
        state = world.state
        mem = state.memory
        kills = None if block.oom_kills is None else np.cumsum(block.oom_kills, axis=0)

        def row(arr: npt.NDArray[Any], r: int) -> npt.NDArray[Any]:
            picked_row: npt.NDArray[Any] = arr[r] if arr.shape[0] > 1 else arr[0]
            return picked_row

        for r in picked:
            c = np.where(act, row(cur, r), state.current)
            self._add(
                {
                    "demand_bytes": np.where(act, row(dem, r), 0.0),
                    "current_bytes": c,
                    # a balloon is never negative (as Guest.ballooned_bytes)
                    "balloon_bytes": np.where(act, np.maximum(mem - c, 0.0), 0.0),
                    "guest_swap_bytes": np.where(act, row(swp, r), 0.0),
                    "oom_events": state.oom_events if kills is None else state.oom_events + kills[r],
                }
            )
            self.t.append(float(t[r]))
            self.host_free.append(float(host_free[r]))
            self.host_swap.append(float(row(reclaimed, r).sum()) if reclaimed.ndim == 2 else 0.0)

    # -- output -------------------------------------------------------------------------

    def _slices(self, series: str) -> list[npt.NDArray[Any]]:
        """``series``' blocks, the last cut to the samples it holds."""
        blocks = self._blocks[series]
        used = len(self.t) - _BLOCK * (len(blocks) - 1)
        return [*blocks[:-1], blocks[-1][:used]] if blocks else []

    def row(self, series: str, sample: int) -> npt.NDArray[Any]:
        """Every VM's value of ``series`` at the ``sample``-th sample."""
        if not 0 <= sample < len(self.t):
            raise IndexError(sample)
        row: npt.NDArray[Any] = self._blocks[series][sample // _BLOCK][sample % _BLOCK]
        return row

    def vm_series(self, index: int) -> dict[str, list[int]]:
        """The series of the ``index``-th VM (``World.labels``' order), each value truncated to
        whole bytes (as ``int()`` does)."""
        import numpy as np

        out: dict[str, list[int]] = {}
        for s in SERIES:
            parts = [block[:, index] for block in self._slices(s)]
            out[s] = np.concatenate(parts).astype(np.int64).tolist() if parts else []
        return out

    def extremes(self) -> dict[str, dict[str, list[int]]]:
        """Per series, each VM's ``"max"`` and ``"min"`` over the samples (whole bytes, as in
        :meth:`to_data`), without building its series."""
        import numpy as np

        out: dict[str, dict[str, list[int]]] = {}
        for s in SERIES:
            blocks = self._slices(s)
            if not blocks:
                raise ValueError("nothing was recorded")
            # truncation keeps the order, so the truncated extreme is the extreme truncated
            out[s] = {
                "max": np.max([b.max(axis=0) for b in blocks], axis=0).astype(np.int64).tolist(),
                "min": np.min([b.min(axis=0) for b in blocks], axis=0).astype(np.int64).tolist(),
            }
        return out

    def data(self) -> dict[str, Any]:
        """:meth:`to_data` with ``"vms"`` a read-only mapping that builds a VM's series when it
        is read (10,000 VMs' series as lists are over a gigabyte)."""
        w = self.world
        return {
            "scenario": w.scenario.name,
            "flavor": w.flavor,
            "seed": w.seed,
            "every_seconds": self.every,
            "t": list(self.t),
            "vms": _VMSeries(self),
            "host": {
                "physical_bytes": w.host.physical_bytes,
                "free_bytes": [int(x) for x in self.host_free],
                "reclaimed_bytes": [int(x) for x in self.host_swap],
            },
            "events": list(w.events),
        }

    def to_data(self) -> dict[str, Any]:
        """``{"t": [...], "vms": {name: {series: [...]}}, "host": {...}, "events": [...]}``
        (VMs that share a name are told apart as ``name#2``…, see ``World.labels``)."""
        data = self.data()
        data["vms"] = dict(data["vms"].items())
        return data

    def write_json(self, out: TextIO) -> None:
        """Write :meth:`to_json`'s text to ``out``, one VM's series at a time."""
        data = self.data()
        out.write("{")
        for k, (key, value) in enumerate(data.items()):
            out.write(f"{', ' if k else ''}{json.dumps(key)}: ")
            if key != "vms":
                out.write(json.dumps(value))
                continue
            out.write("{")
            for i, (name, series) in enumerate(value.items()):
                out.write(f"{', ' if i else ''}{json.dumps(name)}: {json.dumps(series)}")
            out.write("}")
        out.write("}")

    def to_json(self, path: str | Path | None = None) -> str:
        """The recording as JSON (:meth:`to_data`), also written to ``path`` when given
        (:meth:`write_json` writes it to a file without holding the text)."""
        out = io.StringIO()
        self.write_json(out)
        text = out.getvalue()
        if path is not None:
            Path(path).write_text(text, "utf-8")
        return text

    def write_csv(self, out: TextIO) -> None:
        """Write :meth:`to_csv`'s text to ``out``, one sample at a time."""
        import numpy as np

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["t_seconds", "vm", *SERIES, "host_free_bytes", "host_reclaimed_bytes"])
        names = self.world.labels
        for k, t in enumerate(self.t):
            columns = [self.row(s, k).astype(np.int64).tolist() for s in SERIES]
            at, free, reclaimed = f"{t:g}", int(self.host_free[k]), int(self.host_swap[k])
            writer.writerows(
                [at, name, *values, free, reclaimed] for name, *values in zip(names, *columns, strict=True)
            )

    def to_csv(self, path: str | Path | None = None) -> str:
        """One row per sample and VM; the host's figures repeat on each row of a sample. Also
        written to ``path`` when given (:meth:`write_csv` writes it without holding the text)."""
        out = io.StringIO()
        self.write_csv(out)
        text = out.getvalue()
        if path is not None:
            Path(path).write_text(text, "utf-8")
        return text


class _VMSeries(Mapping[str, dict[str, list[int]]]):
    """A recording's VMs by label, each VM's series built when it is read."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._labels = list(recorder.world.labels)
        self._index = {name: i for i, name in enumerate(self._labels)}

    def __getitem__(self, name: str) -> dict[str, list[int]]:
        return self._recorder.vm_series(self._index[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)


def plot(data: dict[str, Any], path: str | Path, *, title: str | None = None) -> None:
    """Draw a recorded run (``Recorder.to_data()``) as a PNG (or SVG, PDF: by ``path``'s
    extension): per-VM panels and the host.

    Needs matplotlib (``pip install 'hvballoon[plot]'``), imported only here.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from hvballoon.errors import BackendNotInstalledError

        raise BackendNotInstalledError(
            "plotting needs matplotlib: pip install 'hvballoon[plot]'",
            details={"install": "pip install 'hvballoon[plot]'"},
        ) from exc
    gib = 1024**3
    hours = [x / 3600 for x in data["t"]]
    names = sorted(data["vms"])
    fig, (ax_cur, ax_dem, ax_host) = plt.subplots(3, 1, figsize=(12, 11), sharex=True)
    cmap = plt.get_cmap("tab20")
    for k, name in enumerate(names):
        s = data["vms"][name]
        color = cmap(k % 20)
        ax_cur.plot(hours, [v / gib for v in s["current_bytes"]], color=color, label=name, lw=1.4)
        ax_dem.plot(hours, [v / gib for v in s["demand_bytes"]], color=color, lw=1.4)
        swap = [v / gib for v in s["guest_swap_bytes"]]
        if any(swap):
            ax_dem.plot(hours, swap, color=color, lw=1, ls=":")
        ooms = s["oom_events"]
        marks = [i for i in range(1, len(ooms)) if ooms[i] > ooms[i - 1]]
        if marks:
            ax_dem.scatter(
                [hours[i] for i in marks],
                [s["demand_bytes"][i] / gib for i in marks],
                color=color,
                marker="x",
                s=40,
                zorder=3,
            )
    ax_cur.set_ylabel("current memory (GiB)\n(configured - balloon)")
    ax_cur.legend(ncol=min(5, max(1, len(names))), fontsize=8, loc="lower left")
    ax_dem.set_ylabel("guest demand (GiB)\n(dotted: guest swap, x: OOM)")
    host = data["host"]
    phys = host["physical_bytes"] / gib
    ax_host.plot(hours, [v / gib for v in host["free_bytes"]], color="tab:green", label="host free")
    ax_host.plot(
        hours,
        [v / gib for v in host["reclaimed_bytes"]],
        color="tab:red",
        label="host reclaimed (swap, compressed, shared)",
    )
    ax_host.set_ylabel(f"host memory (GiB)\nof {phys:g} GiB physical")
    ax_host.set_xlabel("simulated time (hours)")
    ax_host.legend(fontsize=8, loc="upper left")
    for ax in (ax_cur, ax_dem, ax_host):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    promised = (
        sum(data["vms"][n]["current_bytes"][0] + data["vms"][n]["balloon_bytes"][0] for n in names) / gib
    )
    fig.suptitle(
        title
        or f"{data['scenario']} ({data['flavor']}): {len(names)} VMs, {promised:g} GiB promised "
        f"on {phys:g} GiB"
    )
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
