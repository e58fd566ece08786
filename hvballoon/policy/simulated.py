"""The auto-balloon controller over a simulated world, set up once for ``hvballoon simulate
--policy`` and the policies benchmark alike, so a simulated run and a benchmark's agree.

Each call times out after :data:`SIMULATED_CALL_TIMEOUT_SECONDS` and is retried in simulated
time; the controller reads the host each round through ``get_host_stats``, as a deployed one
does by default (its physical and used memory, not a use derived from the VMs: that would miss
what the VMs' figures do not show, such as a paused VM's memory), with the world's overhead and
reserve; a round whose sweep still fails
(a fault the scenario scripts) is told apart, and the next one comes when it is due, as in the
controller's service loop.

>>> from hvballoon.fake.scenario import load_scenario
>>> from hvballoon.fake.world import World
>>> world = World(load_scenario("seed"))
>>> with simulated_controller(world, "hvballoon") as ctl:
...     decisions, read, wait = simulated_round(world, ctl)
>>> read, len(decisions), 0 < wait <= 10
(True, 10, True)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hvballoon.policy.base import Policy
from hvballoon.policy.controller import Controller
from hvballoon.policy.model import ControllerSettings, Decision
from hvballoon.retry import RetryPolicy

if TYPE_CHECKING:
    from hvballoon.fake.world import World
    from hvballoon.policy.journal import Journal

__all__ = ["SIMULATED_CALL_TIMEOUT_SECONDS", "simulated_controller", "simulated_round"]

#: Each remote call's timeout, in simulated time: a controller with a 10 s loop is not deployed
#: with calls that may hang for 30 s (the session's default), or one stuck sweep stalls it.
SIMULATED_CALL_TIMEOUT_SECONDS = 5.0


@contextmanager
def simulated_controller(
    world: World,
    policy: str | Policy,
    *,
    interval_seconds: float = 10.0,
    fast_interval_seconds: float | None = None,
    dry_run: bool = False,
    journal: Journal | None = None,
    **settings: Any,
) -> Iterator[Controller]:
    """A controller steering ``world`` through the fake backend: rounds every
    ``interval_seconds``, sooner while the policy asks (never sooner than
    ``fast_interval_seconds``, by default :class:`ControllerSettings`'); ``settings`` are other
    fields of :class:`ControllerSettings` (``policy_options``, ``respect_guard_rails``, ``vms``,
    …); ``dry_run`` and ``journal`` are the :class:`Controller`'s."""
    from hvballoon.session import connect

    host = world.host
    fast = fast_interval_seconds or ControllerSettings().fast_interval_seconds or interval_seconds
    controller_settings = ControllerSettings(
        host_overhead_bytes=host.overhead_bytes,
        host_reserve_bytes=host.reserve_bytes,
        interval_seconds=interval_seconds,
        fast_interval_seconds=min(interval_seconds, fast),
        **settings,
    )
    retry = RetryPolicy(sleep=world.advance, seed=world.seed)
    with connect("fake://", world=world, retry=retry, timeout=SIMULATED_CALL_TIMEOUT_SECONDS) as hv:
        yield Controller(hv, policy, controller_settings, dry_run=dry_run, journal=journal)


def simulated_round(world: World, controller: Controller) -> tuple[list[Decision], bool, float]:
    """One round of the service loop (:meth:`Controller.attempt`): its decisions, whether its
    sweep was read, and the simulated seconds from now until the next round is due
    (:meth:`Controller.wait_after`). A sweep that failed after its retries is not an error here:
    its decisions are the raises the controller made while it hung, the next round comes after
    the controller's backoff, and too many failures in a row give back what was lowered, as in
    :meth:`Controller.run`."""
    began = world.now
    rnd = controller.attempt()
    return list(rnd.decisions), rnd.ok, controller.wait_after(rnd, world.now - began)
