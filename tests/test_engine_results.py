"""ResultAssembler with plain events: one final per utterance, every word once, no overlap.

The live service restates the whole utterance in its utterance final; older
deployments sent only the tail. Both must give every word exactly once
(shared/docs/xai-stt-protocol.md, "How the live service really speaks").
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from xai_asr_python.protocol import TranscriptDone, TranscriptPartial, WordTiming
from xai_asr_python.utterances import ResultAssembler, VendorResult, comparable


def partial(
    words: list[tuple[str, float, float]],
    *,
    is_final: bool,
    speech_final: bool = False,
    start: float | None = None,
    end: float | None = None,
    channel: int | None = None,
    text: str | None = None,
) -> TranscriptPartial:
    timed = tuple(WordTiming(t, s, e) for t, s, e in words)
    start_s = start if start is not None else (timed[0].start_s if timed else 0.0)
    end_s = end if end is not None else (timed[-1].end_s if timed else start_s)
    return TranscriptPartial(
        text=text if text is not None else " ".join(t for t, _, _ in words),
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


def final_words(results: list[VendorResult | None]) -> list[str]:
    return [w for r in finals(results) for w in r.text.split()]


def assert_no_overlap(results: list[VendorResult]) -> None:
    for earlier, later in itertools.pairwise(results):
        assert earlier.end_s <= later.start_s + 1e-9, (earlier, later)


# ---------------------------------------------------------------- the live wire


def test_restating_utterance_final_is_the_one_final() -> None:
    """The captured sequence: two chunk finals, then the utterance restated whole."""
    a = ResultAssembler()
    words = [
        ("my", 0.0, 0.2),
        ("order", 0.2, 0.5),
        ("number", 0.5, 0.9),
        ("is", 1.0, 1.1),
        ("four", 1.1, 1.4),
        ("two", 1.4, 1.6),
        ("one.", 1.6, 1.9),
    ]
    out = [
        a.on_partial(partial(words[:2], is_final=False, start=0.0, end=0.6)),
        a.on_partial(partial(words[:3], is_final=True, start=0.0, end=1.0)),
        # An interim after the lock carries only its own words, from the utterance start.
        a.on_partial(partial(words[3:5], is_final=False, start=0.0, end=1.5)),
        a.on_partial(partial(words[3:], is_final=True, start=0.0, end=2.0)),
        a.on_partial(partial(words, is_final=True, speech_final=True, start=0.0, end=2.2)),
    ]
    [final] = finals(out)
    assert final.text == "my order number is four two one."
    assert final.speech_final and (final.start_s, final.end_s) == (0.0, 2.2)
    assert [w.text for w in final.words] == [w for w, _, _ in words]
    # Interims carry the utterance so far: the locked chunks and the newest interim.
    interims = [r.text for r in out if r is not None and not r.final]
    assert interims == [
        "my order",
        "my order number",
        "my order number is four",
        "my order number is four two one.",
    ]
    assert a.on_done(TranscriptDone(text="", duration_s=2.2, channel=0)) is None


def test_one_chunk_utterance_comes_once_with_the_vendors_punctuation() -> None:
    a = ResultAssembler()
    out = [
        a.on_partial(partial([("No", 0.1, 0.3)], is_final=True, end=0.4)),
        a.on_partial(partial([("I'm", 0.5, 0.7), ("not", 0.7, 0.9)], is_final=True, start=0.1)),
        a.on_partial(
            partial(
                [("No,", 0.1, 0.3), ("I'm", 0.5, 0.7), ("not.", 0.7, 0.9)],
                is_final=True,
                speech_final=True,
                start=0.1,
                end=1.3,
            )
        ),
    ]
    assert [r.text for r in finals(out)] == ["No, I'm not."]


def test_tail_only_utterance_final_keeps_the_locked_chunks() -> None:
    """The older model: the utterance final carries only the words after the last lock."""
    a = ResultAssembler()
    out = [
        a.on_partial(partial(words_from(0, 5), is_final=True, start=0.0, end=0.05)),
        a.on_partial(partial(words_from(5, 3), is_final=True, speech_final=True, start=0.05)),
    ]
    [final] = finals(out)
    assert final.text.split() == [str(i) for i in range(8)]
    assert [w.text for w in final.words] == [str(i) for i in range(8)]
    assert final.start_s == 0.0


def test_empty_utterance_final_ends_the_utterance_with_its_locked_chunks() -> None:
    a = ResultAssembler()
    a.on_partial(partial(words_from(0, 3), is_final=True))
    a.on_partial(partial(words_from(3, 2), is_final=False))  # revised away
    final = a.on_partial(partial([], is_final=True, speech_final=True, start=0.0, end=0.1))
    assert final is not None and final.text == "0 1 2" and final.final


def test_empty_partials_are_not_speech() -> None:
    a = ResultAssembler()
    for is_final in (False, True, False, True):
        assert a.on_partial(partial([], is_final=is_final, start=0.0, end=0.5)) is None
    assert not a.holds_text
    assert a.on_partial(partial([], is_final=True, speech_final=True)) is None


def test_consecutive_utterances_never_overlap() -> None:
    a = ResultAssembler()
    out = []
    for first in (0, 10, 20):
        out.append(a.on_partial(partial(words_from(first, 5), is_final=True, start=first / 100)))
        out.append(
            a.on_partial(
                partial(
                    words_from(first, 5), is_final=True, speech_final=True, end=first / 100 + 0.09
                )
            )
        )
    assert final_words(out) == [str(i) for f in (0, 10, 20) for i in range(f, f + 5)]
    assert_no_overlap(finals(out))


# ---------------------------------------------------------------- transcript.done


def test_done_after_audio_done_adds_the_locked_chunks_and_the_interim() -> None:
    """No utterance final before the done (it came with audio.done, empty)."""
    a = ResultAssembler()
    a.on_partial(partial(words_from(0, 3), is_final=True))
    a.on_partial(partial(words_from(3, 2), is_final=False))
    done = a.on_done(TranscriptDone(text="", duration_s=0.2, channel=0))
    assert done is not None and done.text == "0 1 2 3 4" and done.speech_final
    assert done.end_s == 0.2


def test_whole_connection_done_text_adds_only_what_no_final_carried() -> None:
    a = ResultAssembler()
    out = [
        a.on_partial(partial(words_from(0, 5), is_final=True, speech_final=True)),
        a.on_partial(partial(words_from(10, 3), is_final=False)),
    ]
    text = "0, 1 2 3 4. 10 11 12 13"  # re-punctuated
    done = a.on_done(TranscriptDone(text=text, duration_s=0.2, channel=0))
    assert done is not None and done.text == "10 11 12 13"
    # The interim's word times carry over where they match the news.
    assert [w.text for w in done.words] == ["10", "11", "12"]
    assert done.start_s == 0.10
    assert final_words([*out, done]) == [str(i) for i in [0, 1, 2, 3, 4, 10, 11, 12, 13]]
    assert_no_overlap(finals([*out, done]))


def test_pending_done_text_restating_the_locked_chunks_gives_them_once() -> None:
    """The local server's "pending" mode: the utterance's text, locked chunks included."""
    a = ResultAssembler()
    out = [
        a.on_partial(partial(words_from(0, 2), is_final=True, speech_final=True)),
        a.on_partial(partial(words_from(10, 3), is_final=True)),
        a.on_partial(partial(words_from(13, 2), is_final=False)),
    ]
    done = a.on_done(TranscriptDone(text="10 11 12 13 14", duration_s=0.2, channel=0))
    assert done is not None and done.text == "10 11 12 13 14"
    assert final_words([*out, done]) == ["0", "1", "10", "11", "12", "13", "14"]
    assert_no_overlap(finals([*out, done]))


def test_tail_only_done_text_follows_the_locked_chunks() -> None:
    a = ResultAssembler()
    a.on_partial(partial(words_from(10, 3), is_final=True))
    done = a.on_done(TranscriptDone(text="20 21", duration_s=0.3, channel=0))
    assert done is not None and done.text == "10 11 12 20 21"


def test_done_that_only_repeats_finals_adds_nothing() -> None:
    a = ResultAssembler()
    a.on_partial(partial(words_from(0, 4), is_final=True, speech_final=True))
    assert a.on_done(TranscriptDone(text="0 1 2 3", duration_s=0.1, channel=0)) is None
    again = ResultAssembler()
    again.on_partial(partial(words_from(0, 4), is_final=True, speech_final=True))
    assert again.on_done(TranscriptDone(text="0 1", duration_s=0.1, channel=0)) is None
    assert ResultAssembler().on_done(TranscriptDone(text="", duration_s=1.0, channel=0)) is None


def test_timed_done_words_are_read_by_time() -> None:
    a = ResultAssembler()
    a.on_partial(partial(words_from(0, 3), is_final=True, speech_final=True))
    a.on_partial(partial(words_from(5, 2), is_final=True))
    timed = tuple(WordTiming(str(i), i / 100, i / 100 + 0.01) for i in [0, 1, 2, 5, 6, 7])
    done = a.on_done(TranscriptDone(text="", duration_s=0.1, channel=0, words=timed))
    assert done is not None and done.text == "5 6 7"


def test_done_without_interim_spans_from_the_last_final_to_the_end() -> None:
    a = ResultAssembler()
    a.on_partial(partial(words_from(0, 5), is_final=True, speech_final=True))
    done = a.on_done(TranscriptDone(text="0 1 2 3 4 7 8", duration_s=1.0, channel=0))
    assert done is not None
    assert (done.start_s, done.end_s) == (0.05, 1.0)
    assert done.words == ()


# ---------------------------------------------------------------- a connection that dies


def test_salvage_makes_the_locked_chunks_and_the_interim_final_once() -> None:
    a = ResultAssembler()
    a.on_partial(partial(words_from(0, 2), is_final=True))
    a.on_partial(partial(words_from(5, 3), is_final=False))
    salvaged = a.salvage()
    assert [r.text for r in salvaged] == ["0 1 5 6 7"]
    assert salvaged[0].final and not salvaged[0].speech_final
    assert a.salvage() == []
    # A later done does not repeat the salvaged text.
    assert a.on_done(TranscriptDone(text="0 1 5 6 7", duration_s=0.1, channel=0)) is None


def test_salvage_before_the_replay_keeps_the_locked_words_and_the_interim_before_it() -> None:
    a = ResultAssembler()
    a.on_partial(partial(words_from(0, 10), is_final=True))  # acknowledged: not replayed
    a.on_partial(partial(words_from(10, 40), is_final=False))
    [result] = a.salvage(lambda s: s <= 0.3)
    assert result.text.split() == [str(i) for i in range(30)]
    # Nothing of the interim before the replay: the locked chunk alone, once.
    a = ResultAssembler()
    a.on_partial(partial(words_from(0, 10), is_final=True))
    a.on_partial(partial(words_from(10, 40), is_final=False))
    [locked] = a.salvage(lambda s: s <= 0.1)
    assert locked.text.split() == [str(i) for i in range(10)]


def test_multichannel_utterances_are_separate() -> None:
    a = ResultAssembler(multichannel=True)
    a.on_partial(partial(words_from(0, 2), is_final=True, speech_final=True, channel=0))
    a.on_partial(partial(words_from(0, 2), is_final=False, channel=1))
    left = a.on_done(TranscriptDone(text="0 1", duration_s=0.1, channel=0))
    right = a.on_done(TranscriptDone(text="0 1", duration_s=0.1, channel=1))
    assert left is None
    assert right is not None and right.text == "0 1" and right.channel == 1


def test_mono_done_on_channel_zero_matches_partials_without_a_channel() -> None:
    a = ResultAssembler(multichannel=False)
    a.on_partial(partial(words_from(0, 2), is_final=True, speech_final=True))
    assert a.on_done(TranscriptDone(text="0 1", duration_s=0.1, channel=0)) is None


def test_comparable_words_ignore_case_and_punctuation() -> None:
    assert comparable("No, I'm NOT. — ok") == ["no", "i'm", "not", "ok"]


# ---------------------------------------------------------------- every vendor style


@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[TranscriptPartial], TranscriptDone, list[str]]:
    """Utterances of marker words, cut into chunks, spoken the way one vendor style
    speaks: restating finals (live) or tail-only finals (older), re-punctuated or not,
    with interims, empty partials, and a done of any kind."""
    restate = draw(st.booleans())
    punctuate = draw(st.booleans())
    done_kind = draw(st.sampled_from(["empty", "whole", "pending"]))
    events: list[TranscriptPartial] = []
    spoken: list[str] = []
    said: list[str] = []
    word = 0
    utterances = draw(st.integers(1, 4))
    for index in range(utterances):
        start = word / 100
        chunks = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
        last_open = index == utterances - 1 and draw(st.booleans())  # cut by audio.done
        locked: list[tuple[str, float, float]] = []
        for n, size in enumerate(chunks):
            chunk = words_from(word, size)
            word += size
            if draw(st.booleans()):
                events.append(partial(chunk[:1], is_final=False, start=start, end=chunk[0][2]))
            if draw(st.booleans()):
                events.append(partial([], is_final=False, start=start, end=chunk[0][2]))
            if last_open and n == len(chunks) - 1:
                events.append(partial(chunk, is_final=False, start=start))
                locked += chunk
                break
            events.append(partial(chunk, is_final=True, start=start if restate else chunk[0][1]))
            locked += chunk
        spoken += [w for w, _, _ in locked]
        if last_open:
            continue
        tail = locked if restate else []
        text = " ".join(w for w, _, _ in tail)
        if punctuate and tail:
            text = text.capitalize().replace(" ", ", ", 1) + "."
        end = word / 100 + 0.05
        events.append(
            partial(
                tail,
                is_final=True,
                speech_final=True,
                start=start if restate else word / 100,
                end=end,
                text=text,
            )
        )
        said += [w for w, _, _ in locked]
    rest = spoken[len(said) :]
    done_text = {"empty": "", "whole": " ".join(spoken), "pending": " ".join(rest)}[done_kind]
    return events, TranscriptDone(text=done_text, duration_s=word / 100 + 0.1, channel=0), spoken


@settings(max_examples=300, deadline=None)
@given(conversations())
def test_every_word_exactly_once_in_order_whatever_the_vendor_style(
    conversation: tuple[list[TranscriptPartial], TranscriptDone, list[str]],
) -> None:
    events, done, spoken = conversation
    a = ResultAssembler()
    out: list[VendorResult | None] = [a.on_partial(e) for e in events]
    out.append(a.on_done(done))
    assert [comparable(w)[0] for w in final_words(out)] == spoken
    assert_no_overlap(finals(out))
    # One final per utterance: never one for a chunk.
    assert all(r.speech_final for r in finals(out))
