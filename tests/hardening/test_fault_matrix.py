"""The fault matrix (see :mod:`tests.hardening.matrix`): no hangs, no native exceptions, no
untold changes, and the outcomes match the table committed in docs/reliability.md."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.hardening import matrix
from tests.support.require import require

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def _check(backends: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = matrix.run(backends)
    bad = [c for c in cells if c.outcome in matrix.FAILING]
    assert not bad, "\n".join(f"{c.key}: {c.outcome} {c.note}" for c in bad)
    assert len(cells) == len(backends) * len(matrix.KINDS) * len(matrix.OPS)
    committed = matrix.parse(DOC.read_text())
    fresh = {c.key: c.invariant() for c in cells}
    mine = {k: v for k, v in committed.items() if k[0] in backends}
    differ = {k: (mine.get(k), v) for k, v in fresh.items() if mine.get(k) != v}
    assert not differ, (
        "the fault matrix changed (committed, fresh); regenerate with "
        f"`python -m tests.hardening.matrix --write docs/reliability.md`: {differ}"
    )


@pytest.mark.slow
def test_fault_matrix_of_the_fake_flavours() -> None:
    _check(["fake/kvm", "fake/esxi", "fake/hyperv"])


@pytest.mark.peer
def test_fault_matrix_of_the_vsphere_simulator() -> None:
    from tests.support.vsphere.harness import prerequisites

    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))
    _check(["esxi (vcsim)"])


@pytest.mark.peer
def test_fault_matrix_of_the_winrm_peer() -> None:
    from tests.support.hyperv.peer import require_peer

    require_peer("basic", False)
    _check(["hyperv (WinRM)"])


def test_a_hang_and_a_native_exception_are_caught_by_the_cell_runner() -> None:
    import threading

    never = threading.Event()

    def hang() -> None:
        never.wait(5)

    cell = matrix.run_cell(
        "x", "slow", "list", session=lambda: hang(), plan=lambda *_: matrix.Plan(), vm="v", bound=0.2
    )
    assert cell.outcome == "HANG"
    never.set()

    class Boom:
        backend = type("B", (), {"list_vms": lambda self: 1})()

        def list_vms(self) -> None:
            raise KeyError("native")

        def close(self) -> None:
            pass

    cell = matrix.run_cell("x", "slow", "list", session=Boom, plan=lambda *_: matrix.Plan(), vm="v", bound=5)
    assert cell.outcome == "NATIVE"
