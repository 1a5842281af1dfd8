"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in utterances.py: behaviour the engine's tests did not pin. Plain events into
one `ResultAssembler`, as tests/test_engine_results.py does.

Survivor left as equivalent:
- `_lock`: `max(p.start_s, ch.locked_end_s, ch.final_end_s)` -> without
  `ch.final_end_s`: `locked_end_s >= final_end_s` always holds (both start at 0;
  `_deliver`, the one writer of `final_end_s`, raises `locked_end_s` to the same end,
  and `locked_end_s` only ever grows), so the third term never wins.
"""

from __future__ import annotations

from test_engine_results import partial, words_from

from xai_asr_python.protocol import TranscriptDone, WordTiming
from xai_asr_python.utterances import ResultAssembler


def test_an_untimed_done_repeating_the_latest_final_adds_nothing() -> None:
    """Two utterances delivered, then a done (no word times) that repeats only the
    latest one: the end of what was delivered, neither all of it nor its beginning.
    It is not delivered a second time."""
    a = ResultAssembler()
    a.on_partial(partial(words_from(0, 3), is_final=True, speech_final=True))
    a.on_partial(partial(words_from(5, 3), is_final=True, speech_final=True))
    assert a.on_done(TranscriptDone(text="5 6 7", duration_s=0.1, channel=0)) is None


def test_a_multichannel_interim_says_which_channel_it_is_on() -> None:
    a = ResultAssembler(multichannel=True)
    left = a.on_partial(partial(words_from(0, 2), is_final=False, channel=0))
    right = a.on_partial(partial(words_from(0, 3), is_final=False, channel=1))
    assert left is not None and (left.text, left.final, left.channel) == ("0 1", False, 0)
    assert right is not None and (right.text, right.final, right.channel) == ("0 1 2", False, 1)


def test_a_multichannel_done_with_word_times_says_which_channel_its_final_is_on() -> None:
    """Channel 1's interim is not final when audio.done comes; the done (timed, on
    channel 1) makes it final, and that final says channel 1, as its interim did."""
    a = ResultAssembler(multichannel=True)
    a.on_partial(partial(words_from(0, 2), is_final=False, channel=1))
    done = TranscriptDone(
        text="0 1",
        duration_s=0.1,
        channel=1,
        words=tuple(WordTiming(t, s, e) for t, s, e in words_from(0, 2)),
    )
    final = a.on_done(done)
    assert final is not None and (final.text, final.final, final.channel) == ("0 1", True, 1)
