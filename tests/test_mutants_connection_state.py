"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in connection_state.py: behaviour the engine's tests did not pin.

- `above_floor` (multichannel replay: a result of the connection that hears a failed
  connection's audio again keeps only the words not already final on the failed one):
  the engine's replay tests never produce a result that starts below the floor with
  words on both sides of it, or with all its words above it, or with a word starting
  exactly at it, or without word times (kept whole if it reaches past the floor).
  Called directly, on session-timeline transcripts.
- `Conn.describe`: why a standby found unusable at its adoption was dropped, on the
  sans-I/O core, event by event. That log line is the one place a standby's failure
  is told (by design it is no `error`: the next turn connects the usual way).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from fractions import Fraction

import pytest
from test_core_finalize_paths import Script

from xai_asr_python import engine_io as io
from xai_asr_python.connection_state import above_floor
from xai_asr_python.session_types import Transcript, Word

LOGGER = "xai_asr_python.session"


def transcript(start_ms: int, end_ms: int, words: list[tuple[str, int, int]]) -> Transcript:
    return Transcript(
        text=" ".join(text for text, _, _ in words),
        final=True,
        start_ms=start_ms,
        duration_ms=end_ms - start_ms,
        words=tuple(Word(text, a, b - a, stable=True) for text, a, b in words),
        channel=0,
        speech_final=True,
        generation=2,
    )


def test_a_result_whose_words_all_lie_above_the_floor_starts_at_the_floor() -> None:
    """Channel 0's final on the failed connection ended at 200 ms: a result spanning
    100-500 ms whose one word starts at 250 ms is kept whole, from the floor on."""
    t = transcript(100, 500, [("late", 250, 300)])
    kept = above_floor(t, {0: Fraction(200)})
    assert kept is not None
    assert (kept.text, kept.words) == (t.text, t.words)
    assert (kept.start_ms, kept.duration_ms) == (200, 300)


def test_a_result_straddling_the_floor_keeps_only_its_words_above_it() -> None:
    t = transcript(100, 500, [("said", 100, 150), ("new", 250, 300), ("words", 400, 450)])
    kept = above_floor(t, {0: Fraction(200)})
    assert kept is not None
    assert kept.text == "new words"
    assert kept.words == t.words[1:]
    assert (kept.start_ms, kept.duration_ms) == (200, 300)


def test_a_word_starting_exactly_at_the_floor_is_new() -> None:
    """The failed connection's last final ended at 200 ms: a word that starts right
    there was not in it, so it is kept (only the word before it goes)."""
    t = transcript(100, 400, [("said", 100, 180), ("next", 200, 300)])
    kept = above_floor(t, {0: Fraction(200)})
    assert kept is not None
    assert (kept.text, kept.words) == ("next", t.words[1:])
    assert (kept.start_ms, kept.duration_ms) == (200, 200)


def test_an_untimed_result_reaching_past_the_floor_is_kept_whole() -> None:
    """Without word times the new words cannot be told from the old: a result that
    reaches past the floor is kept as it is (a repeat beats a loss); one that ends at
    the floor holds nothing new and is dropped."""
    untimed = replace(transcript(100, 500, []), text="maybe new")
    assert above_floor(untimed, {0: Fraction(200)}) == untimed
    old = replace(transcript(100, 200, []), text="old")
    assert above_floor(old, {0: Fraction(200)}) is None


def test_a_standby_that_failed_while_waiting_is_dropped_saying_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server closed the standby (1011) before the turn ended: at the finalize the
    core opens a new connection instead, and its log line says what ended the standby."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    s = Script(finalize_mode="audio_done", prewarm=True, standby=True)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.push(0, 30)  # the turn's first speech opens the standby, gen 2
    s.complete_sends(1)
    s.feed(io.Opened(s.at(0.5), 2))
    s.feed(io.Closed(s.at(0.6), 2, io.CloseInfo(code=1011)))
    s.feed(io.FinalizeAsked(s.at(0.7), "f"))
    s.complete_sends(1)
    assert io.Abort(2) in s.actions
    assert [a.generation for a in s.actions if isinstance(a, io.Open)] == [1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    lines = [line for line in lines if "standby connection not usable" in line]
    assert lines == [
        "gen 2: standby connection not usable (the server closed the connection (1011)); "
        "connecting anew"
    ]
