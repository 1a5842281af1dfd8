"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in timeline.py: behaviour the engine's tests did not pin. Called directly on
a `ConnectionTimeline` that was sent two stretches of the user's stream with 100 ms
between them (the outage buffer dropped them while the same connection stayed up).

Survivor left as equivalent:
- `span`: the start's `_user_tick(start_s, end=False)` -> `end=None`: `_to_user`, the
  only reader of `end` (through `_user_tick`, which passes it on unchanged), reads it
  as `not end`, the same for None as for False.
"""

from __future__ import annotations

from xai_asr_python.timeline import TICKS_PER_MS, ConnectionTimeline


def two_stretches(sample_rate: int, first_ticks: int) -> ConnectionTimeline:
    """`first_ticks` of audio, 100 ms dropped, then 100 ms more, all on one connection."""
    timeline = ConnectionTimeline(sample_rate)
    timeline.record_sent(0, first_ticks)
    timeline.record_sent(first_ticks + 100 * TICKS_PER_MS, 100 * TICKS_PER_MS)
    return timeline


def test_a_word_starting_where_the_second_stretch_begins_starts_after_the_gap() -> None:
    """The vendor heard 100 ms, then the audio that followed the dropped 100 ms: a word
    at 100-150 ms of the connection is at 200-250 ms of the user's stream. Its start
    is the later stretch's (after the gap), not the earlier one's end."""
    timeline = two_stretches(16000, 100 * TICKS_PER_MS)
    assert timeline.span(0.1, 0.15) == (200, 50)
    assert timeline.span(0.05, 0.1) == (50, 50)  # an end on the boundary: the earlier one's


def test_at_a_rate_off_the_tick_grid_an_end_on_the_boundary_is_the_earlier_stretchs() -> None:
    """12,345 Hz (not a rate the service takes; its samples are not whole ticks): the
    first stretch is 823 samples (66.67 ms). A word ending exactly there ends at 67 ms
    of the user's stream, not after the 100 ms dropped behind it."""
    timeline = two_stretches(12345, 823 * 7_056_000 // 12345)
    assert timeline.span(0.0, 823 / 12345) == (0, 67)
