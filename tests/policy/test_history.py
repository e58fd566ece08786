"""The policy's memory of a VM: the monotonic queues of its recent lows and highs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hvballoon.policy.history import _slide

Queue = tuple[tuple[float, int], ...]


def _filtered(queue: Queue, now: float, used: int, seconds: float, rising: bool) -> Queue:
    """The queue's definition, entry by entry: the recent entries the new figure does not make
    redundant, then the new figure."""
    kept = [x for x in queue if now - x[0] <= seconds and (x[1] < used if rising else x[1] > used)]
    return (*kept, (now, used))


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 50)), min_size=1, max_size=60),
    seconds=st.integers(1, 120),
    rising=st.booleans(),
)
def test_a_slid_queue_is_the_entries_its_definition_keeps(
    steps: list[tuple[int, int]], seconds: int, rising: bool
) -> None:
    """Figures read at times that never go back (gaps of 0-30 s, uses that repeat): sliding the
    queue (a slice kept) gives what filtering every entry gives, round after round."""
    fast: Queue = ()
    slow: Queue = ()
    now = 0.0
    for gap, used in steps:
        now += gap
        fast = _slide(fast, now, used, seconds, rising=rising, in_order=True)
        slow = _filtered(slow, now, used, seconds, rising)
        assert fast == slow


def test_a_clock_that_went_back_filters_entry_by_entry() -> None:
    queue: Queue = ((100.0, 1), (200.0, 5))
    assert _slide(queue, 150.0, 3, 60.0, rising=True, in_order=False) == ((100.0, 1), (150.0, 3))
