"""ResultAssembler with plain events: finals never repeat text nor overlap in time."""

from __future__ import annotations

import itertools

from xai_asr_python.protocol import TranscriptDone, TranscriptPartial, WordTiming
from xai_asr_python.recognition import ResultAssembler, VendorResult


def partial(
    words: list[tuple[str, float, float]],
    *,
    is_final: bool,
    speech_final: bool = False,
    start: float | None = None,
    end: float | None = None,
    channel: int | None = None,
) -> TranscriptPartial:
    timed = tuple(WordTiming(t, s, e) for t, s, e in words)
    start_s = start if start is not None else (timed[0].start_s if timed else 0.0)
    end_s = end if end is not None else (timed[-1].end_s if timed else start_s)
    return TranscriptPartial(
        text=" ".join(t for t, _, _ in words),
        words=timed,
        is_final=is_final,
        speech_final=speech_final,
        start_s=start_s,
        duration_s=end_s - start_s,
        channel=channel,
    )


def words_from(first: int, count: int) -> list[tuple[str, float, float]]:
    """Marker-style words: word i spans [i/100, i/100 + 0.01)."""
    return [(str(i), i / 100, i / 100 + 0.01) for i in range(first, first + count)]


def finals(results: list[VendorResult | None]) -> list[VendorResult]:
    return [r for r in results if r is not None and r.final]


def assert_no_overlap(results: list[VendorResult]) -> None:
    for earlier, later in itertools.pairwise(results):
        assert earlier.end_s <= later.start_s + 1e-9, (earlier, later)


def test_whole_done_text_only_adds_the_remainder() -> None:
    assembler = ResultAssembler()
    out = [
        assembler.on_partial(partial(words_from(0, 5), is_final=True, speech_final=True)),
        assembler.on_partial(partial(words_from(10, 3), is_final=False)),
    ]
    done = assembler.on_done(
        TranscriptDone(
            text=" ".join(str(i) for i in [0, 1, 2, 3, 4, 10, 11, 12, 13]),
            duration_s=0.2,
            channel=0,
        )
    )
    assert done is not None
    assert done.text == "10 11 12 13" and done.final and done.speech_final
    # The interim's words carry over where they match the remainder.
    assert [w.text for w in done.words] == ["10", "11", "12"]
    assert done.start_s == 0.10
    all_finals = finals([*out, done])
    assert " ".join(r.text for r in all_finals).split() == [
        "0",
        "1",
        "2",
        "3",
        "4",
        "10",
        "11",
        "12",
        "13",
    ]
    assert_no_overlap(all_finals)


def test_pending_only_done_text_is_taken_whole() -> None:
    assembler = ResultAssembler()
    first = assembler.on_partial(partial(words_from(0, 3), is_final=True, speech_final=True))
    done = assembler.on_done(TranscriptDone(text="20 21", duration_s=0.3, channel=0))
    assert first is not None and done is not None
    assert done.text == "20 21"
    assert_no_overlap([first, done])


def test_current_utterance_done_text_does_not_repeat_locked_chunks() -> None:
    """The local server's "pending" mode: the current utterance including its locked chunks."""
    assembler = ResultAssembler()
    out = [
        assembler.on_partial(partial(words_from(0, 2), is_final=True, speech_final=True)),
        # A long utterance: one chunk locked (is_final, not speech_final), then more.
        assembler.on_partial(partial(words_from(10, 3), is_final=True, speech_final=False)),
        assembler.on_partial(partial(words_from(13, 2), is_final=False)),
    ]
    done = assembler.on_done(TranscriptDone(text="10 11 12 13 14", duration_s=0.2, channel=0))
    assert done is not None and done.text == "13 14"
    assert_no_overlap(finals([*out, done]))


def test_done_that_only_repeats_finals_adds_nothing() -> None:
    assembler = ResultAssembler()
    assembler.on_partial(partial(words_from(0, 4), is_final=True, speech_final=True))
    assert assembler.on_done(TranscriptDone(text="0 1 2 3", duration_s=0.1, channel=0)) is None
    # A shorter repeat (a prefix of what was finalized) adds nothing either.
    again = ResultAssembler()
    again.on_partial(partial(words_from(0, 4), is_final=True, speech_final=True))
    assert again.on_done(TranscriptDone(text="0 1", duration_s=0.1, channel=0)) is None
    assert ResultAssembler().on_done(TranscriptDone(text="", duration_s=1.0, channel=0)) is None


def test_done_without_interim_spans_from_the_last_final_to_the_end() -> None:
    assembler = ResultAssembler()
    assembler.on_partial(partial(words_from(0, 5), is_final=True, speech_final=True))
    done = assembler.on_done(TranscriptDone(text="0 1 2 3 4 7 8", duration_s=1.0, channel=0))
    assert done is not None
    assert (done.start_s, done.end_s) == (0.05, 1.0)
    assert done.words == ()


def test_overlapping_vendor_final_is_clipped() -> None:
    assembler = ResultAssembler()
    a = assembler.on_partial(partial(words_from(0, 5), is_final=True))
    b = assembler.on_partial(partial([("x", 0.03, 0.08)], is_final=True, start=0.03, end=0.08))
    assert a is not None and b is not None
    assert b.start_s == a.end_s
    assert_no_overlap([a, b])


def test_interims_pass_through_and_empty_results_are_skipped() -> None:
    assembler = ResultAssembler()
    interim = assembler.on_partial(partial(words_from(0, 2), is_final=False))
    assert interim is not None and not interim.final and interim.text == "0 1"
    assert assembler.on_partial(partial([], is_final=False)) is None
    assert assembler.on_partial(partial([], is_final=True, speech_final=True)) is None


def test_salvage_makes_the_pending_interim_final_once() -> None:
    assembler = ResultAssembler()
    assembler.on_partial(partial(words_from(0, 2), is_final=True))
    assembler.on_partial(partial(words_from(5, 3), is_final=False))
    salvaged = assembler.salvage()
    assert [r.text for r in salvaged] == ["5 6 7"]
    assert salvaged[0].final
    assert assembler.salvage() == []
    # A later done does not repeat the salvaged text.
    done = assembler.on_done(TranscriptDone(text="0 1 5 6 7", duration_s=0.1, channel=0))
    assert done is None


def test_multichannel_turns_are_separate() -> None:
    assembler = ResultAssembler(multichannel=True)
    assembler.on_partial(partial(words_from(0, 2), is_final=True, speech_final=True, channel=0))
    assembler.on_partial(partial(words_from(0, 2), is_final=False, channel=1))
    left = assembler.on_done(TranscriptDone(text="0 1", duration_s=0.1, channel=0))
    right = assembler.on_done(TranscriptDone(text="0 1", duration_s=0.1, channel=1))
    assert left is None
    assert right is not None and right.text == "0 1" and right.channel == 1


def test_mono_done_on_channel_zero_matches_partials_without_a_channel() -> None:
    assembler = ResultAssembler(multichannel=False)
    assembler.on_partial(partial(words_from(0, 2), is_final=True, speech_final=True))
    assert assembler.on_done(TranscriptDone(text="0 1", duration_s=0.1, channel=0)) is None
