"""TEN's asr_guarder checks, run against the local server on loopback.

Each test asserts what the guarder asserts, and most assert more: the marker
recogniser makes every frame identifiable, so "no audio lost" and "the
timestamps are right" are exact checks, not plausibility checks.
"""

from __future__ import annotations

import asyncio
import wave
from typing import Any

import pytest
from asr_harness import load_config
from it_support import (
    AUDIO_DIR,
    FATAL,
    FINALIZE_BOUND_S,
    FRAME_BYTES,
    NON_FATAL,
    SESSION_ID,
    ItTester,
    all_finals,
    assert_exactly_once,
    assert_finals_ordered,
    assert_status_chain,
    assert_word_times,
    fast_props,
    final_indices,
    finals,
    indices_of,
    marker,
    marker_server,
    run_it,
    speech_indices_of,
    turn_audio,
    wait_all_ended,
)

from stt_server import ErrorEvent, Fault
from stt_server.textnorm import spoken_words

# ---------------------------------------------------------------------- connection


def test_connection_and_first_final() -> None:
    """Speech then silence: the server's endpointing ends the utterance; the
    final is non-empty, in en-US, and echoes the session id."""
    with marker_server() as srv:
        audio = marker([(False, 20), (True, 50), (False, 40)])

        async def script(t: ItTester) -> None:
            await t.send_audio(audio)
            final = await t.wait_for("asr_result", lambda p: p["final"], timeout=5)
            assert final["text"].strip(), final
            assert final["language"] == "en-US", final
            assert final["metadata"]["session_id"] == SESSION_ID, final
            assert final_indices([final]) == list(range(20, 70))

        tester = run_it(fast_props(srv.url), script)
        records = wait_all_ended(srv)
    # One connection heard the audio (a second one may be the standby for the next
    # turn, opened at the first speech: it got none).
    assert [r.number for r in records if r.audio] == [1]
    assert all(r.query["language"] == "en" for r in records)
    assert tester.errors() == []


def test_result_fields_and_a_new_id_per_final() -> None:
    with marker_server() as srv:
        audio = marker([(True, 80), (False, 40), (True, 60), (False, 40)])

        async def script(t: ItTester) -> None:
            await t.send_audio(audio)
            await t.wait_for("asr_result", lambda p: p["final"] and "79" in p["text"].split())
            await t.wait_for("asr_result", lambda p: p["final"] and "179" in p["text"].split())

        tester = run_it(fast_props(srv.url), script)
        wait_all_ended(srv)
    results = tester.messages("asr_result")
    for r in results:
        for name, kind in (
            ("id", str),
            ("text", str),
            ("final", bool),
            ("start_ms", int),
            ("duration_ms", int),
            ("language", str),
            ("words", list),
            ("metadata", dict),
        ):
            assert isinstance(r[name], kind), (name, r)
        assert r["id"] and r["language"] == "en-US"
        assert r["metadata"]["session_id"] == SESSION_ID
        assert r["metadata"]["asr_info"]["vendor"] == "xai"
        for w in r["words"]:
            assert set(w) >= {"word", "start_ms", "duration_ms", "stable"}, w
            assert w["stable"] is r["final"], (w, r["final"])
    finals_ = finals(tester)
    assert final_indices(finals_) == [*range(80), *range(120, 180)]
    # Partials share the id of the final that closes their turn; each turn a new id.
    ids_per_turn: list[set[str]] = [set()]
    for r in results:
        ids_per_turn[-1].add(r["id"])
        if r["final"] and r["metadata"]["asr_info"].get("speech_final"):
            ids_per_turn.append(set())
    turns = [ids for ids in ids_per_turn if ids]
    assert len(turns) == 2 and all(len(ids) == 1 for ids in turns), turns
    assert turns[0] != turns[1]
    assert len({f["id"] for f in finals_ if f["metadata"]["asr_info"]["speech_final"]}) == 2


def test_finalize_is_answered_after_the_final() -> None:
    with marker_server() as srv:
        audio = turn_audio(0, speech=60, silence=5)

        async def script(t: ItTester) -> None:
            await t.send_audio(audio)
            end = await t.finalize("fin-1", bound_s=FINALIZE_BOUND_S)
            assert end["finalize_id"] == "fin-1"
            assert end["metadata"]["session_id"] == SESSION_ID
            final_at = t.position("asr_result", lambda p: p["final"] and "59" in p["text"])
            end_at = t.position("asr_finalize_end", lambda p: p["finalize_id"] == "fin-1")
            assert final_at < end_at, "the final came after asr_finalize_end"

        tester = run_it(fast_props(srv.url), script)
        wait_all_ended(srv)
    assert final_indices(finals(tester)) == list(range(60))
    assert [m["finalize_id"] for m in tester.messages("asr_finalize_end")] == ["fin-1"]


# ---------------------------------------------------------------------- reconnect cycles


@pytest.mark.parametrize(
    ("cycles", "mode"),
    [
        (2, "wait"),
        (10, "wait"),
        (10, "stream_through"),
        (10, "finalize_behind_last_frame"),
    ],
)
def test_audio_finalize_cycles_in_one_session(cycles: int, mode: str) -> None:
    """The single-utterance reconnect: every cycle gets a non-empty final, and
    the server receives every frame exactly once across all connections.

    wait: each finalize is answered before the next turn's audio;
    stream_through: the next turn's audio follows the finalize at once;
    finalize_behind_last_frame: the last frame of a turn and its finalize go
    out back to back in 10 ms frames, and the next turn follows at once."""
    turns = [turn_audio(i * 1000, speech=40 + i, silence=8) for i in range(cycles)]
    chunk = FRAME_BYTES if mode == "finalize_behind_last_frame" else 3200
    with marker_server() as srv:

        async def script(t: ItTester) -> None:
            for i, audio in enumerate(turns):
                await t.send_audio(audio, chunk_bytes=chunk)
                if mode == "wait":
                    await t.finalize(f"f{i}", bound_s=FINALIZE_BOUND_S)
                else:
                    await t.send_finalize(f"f{i}", {"session_id": SESSION_ID})
            last = f"f{cycles - 1}"
            await t.wait_for("asr_finalize_end", lambda p: p["finalize_id"] == last, timeout=10)

        tester = run_it(fast_props(srv.url), script, timeout_s=60)
        records = wait_all_ended(srv)
    assert tester.errors() == []
    ends = [m["finalize_id"] for m in tester.messages("asr_finalize_end")]
    assert ends == [f"f{i}" for i in range(cycles)]
    # Turn by turn: the finals between two finalize ends are exactly that turn's speech.
    per_turn: list[list[int]] = [[]]
    for m in tester.received:
        if m.name == "asr_result" and m.payload["final"]:
            per_turn[-1].extend(int(w) for w in m.payload["text"].split())
        elif m.name == "asr_finalize_end":
            per_turn.append([])
    for i, audio in enumerate(turns):
        assert per_turn[i] == speech_indices_of(audio), f"turn {i}: {per_turn[i][:5]}..."
    sent = [i for audio in turns for i in indices_of(audio)]
    assert_exactly_once(sent, records)
    assert len(records) <= cycles + 1


# ---------------------------------------------------------------------- errors


def test_bad_key_is_one_fatal_error_and_no_retry() -> None:
    wrong = "wrong-key-0123456789"
    with marker_server(api_key="right") as srv:

        async def script(t: ItTester) -> None:
            await t.send_audio(turn_audio(0))
            error = await t.wait_for("error", timeout=5)
            assert error["code"] == FATAL, error
            assert error["module"] == "asr"
            assert error["vendor_info"]["vendor"] == "xai"
            assert error["vendor_info"]["code"] == "401"
            assert wrong not in str(error)
            # The extension is still up and answers a finalize at once.
            await t.finalize("after-fatal", bound_s=1.0)
            # No retry storm: no second attempt comes (ten times the backoff cap).
            try:
                await srv.wait_for_connection(2, timeout=0.5)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            else:
                raise AssertionError("the extension retried after a rejected key")

        tester = run_it(fast_props(srv.url, params={"api_key": wrong}), script)
        records = wait_all_ended(srv)
    assert len(records) == 1 and records[0].refused_status == 401
    assert len(tester.errors()) == 1
    assert tester.statuses()[-1]["current"] == "disconnected"
    assert_status_chain(tester.statuses(), secrets=[wrong])


@pytest.mark.parametrize("code", [503, "unavailable"])
def test_vendor_error_reaches_the_graph_with_the_vendors_code_and_message(
    code: int | str,
) -> None:
    message = "Cannot continue request: upstream busy"
    with marker_server() as srv:
        trigger = 20 * FRAME_BYTES
        srv.set_fault(1, Fault(error_event=ErrorEvent(message, code=code, after_bytes=trigger)))

        async def script(t: ItTester) -> None:
            await t.send_audio(marker([(True, 20)], 0))
            error = await t.wait_for("error", timeout=5)
            assert error["code"] == NON_FATAL and error["module"] == "asr", error
            assert error["vendor_info"] == {
                "vendor": "xai",
                "code": str(code),
                "message": message,
            }, error
            assert message in error["message"]
            assert error["metadata"]["session_id"] == SESSION_ID
            # It keeps going by itself: the rest of the turn is transcribed.
            await t.send_audio(marker([(True, 30), (False, 5)], 20))
            await t.finalize("f", bound_s=FINALIZE_BOUND_S)

        tester = run_it(fast_props(srv.url), script)
        wait_all_ended(srv)
    assert len(tester.errors()) == 1
    assert final_indices(finals(tester))[-30:] == list(range(20, 50))


# ---------------------------------------------------------------------- real speech


def _wav_pcm(name: str) -> bytes:
    with wave.open(str(AUDIO_DIR / name)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return w.readframes(w.getnframes())


@pytest.mark.parametrize("recognizer", ["pocketsphinx", "whisper"])
@pytest.mark.parametrize(
    ("clip", "expected"),
    [
        ("hello_world.wav", "hello world the weather is nice today"),
        ("numbers.wav", "one two three four five six seven eight nine ten"),
    ],
)
def test_english_speech_is_transcribed(clip: str, expected: str, recognizer: str) -> None:
    """Real speech through a local recognizer, streamed at twice real time with
    the project's basic (upstream-like) properties, as the guarder streams a clip.
    Whisper writes digits and punctuation: words are compared as spoken.

    The finalize timeout is raised: this judges what is heard, and the local
    recognizers decode the utterance when the finalize comes, on a CPU that a
    loaded machine shares (Whisper took over 2 s there)."""
    pcm = _wav_pcm(clip)
    silence = bytes(16000)  # 0.5 s
    with marker_server(recognizer=recognizer) as srv:
        props = load_config("basic", finalize_timeout_ms=10_000, params={"base_url": srv.url})

        async def script(t: ItTester) -> None:
            await t.send_audio(silence + pcm + silence, chunk_bytes=FRAME_BYTES, pace_s=0.005)
            await t.finalize("f", bound_s=props["finalize_timeout_ms"] / 1000 + 1)

        tester = run_it(props, script)
        wait_all_ended(srv)
    text = spoken_words(" ".join(f["text"] for f in finals(tester)))
    wanted = expected.split()
    hits = [w for w in wanted if w in text]
    assert len(hits) * 4 >= len(wanted) * 3, f"heard {text!r}, expected most of {wanted!r}"
    assert all(f["language"] == "en-US" for f in finals(tester))
    assert all(f["metadata"]["session_id"] == SESSION_ID for f in finals(tester))
    assert_finals_ordered(finals(tester))
    assert tester.errors() == []


# ---------------------------------------------------------------------- dump, metrics


@pytest.mark.parametrize("mode", ["auto", "audio_done"])
def test_dump_is_byte_identical_to_the_audio_sent(tmp_path: Any, mode: str) -> None:
    """On one connection (finalize) or one a turn (audio.done)."""
    turns = [turn_audio(0), turn_audio(1000), turn_audio(2000)]
    with marker_server() as srv:

        async def script(t: ItTester) -> None:
            for i, audio in enumerate(turns):
                await t.send_audio(audio)
                await t.finalize(f"f{i}", bound_s=FINALIZE_BOUND_S)

        props = fast_props(srv.url, dump=True, dump_path=str(tmp_path), finalize_mode=mode)
        tester = run_it(props, script)
        records = wait_all_ended(srv)
    dumped = (tmp_path / "xai_asr_python_in.pcm").read_bytes()
    sent = b"".join(turns)
    assert dumped == sent == bytes(tester.sent_audio)
    assert b"".join(bytes(r.audio) for r in records) == sent
    assert len(records) >= 3 if mode == "audio_done" else len(records) == 1


@pytest.mark.parametrize(
    "endpointing_first",
    [False, True],
    ids=["text-final-answers-the-finalize", "text-final-by-endpointing-before-finalize"],
)
def test_ttfw_ttlw_and_finalize_end_as_tens_metrics_test_waits(endpointing_first: bool) -> None:
    """TEN's guarder metrics test sends audio, then asr_finalize, and stops only once
    it has ttfw, ttlw and the asr_finalize_end (finalize_id and session_id matching).
    Both when the turn's text becomes final in the finalize's answer (the utterance
    final `finalize` brings, or transcript.done after audio.done) and when endpointing
    made it final before the finalize: then an empty final closes the turn (the text
    is never sent twice) and ttlw measures the vendor's confirmation."""
    # 400 ms of silence after the speech outlasts endpointing (300 ms of audio, timed
    # by the server in audio): the turn's final comes before the finalize. 100 ms does
    # not: its final answers the finalize.
    silence_frames = 40 if endpointing_first else 10
    turns = [turn_audio(i * 1000, silence=silence_frames) for i in range(2)]
    with marker_server() as srv:

        async def script(t: ItTester) -> None:
            for i, audio in enumerate(turns):
                turn_start = t.mark()
                await t.send_audio(audio)
                if endpointing_first:
                    await t.wait_for(
                        "asr_result",
                        lambda r: r["final"] and r["text"],
                        timeout=FINALIZE_BOUND_S,
                        start=turn_start,
                    )
                at_finalize = t.mark()
                end = await t.finalize(f"f{i}", bound_s=FINALIZE_BOUND_S)
                assert end["metadata"]["session_id"] == SESSION_ID, end
                await t.wait_for("metrics", lambda m: "ttfw" in m["metrics"], start=turn_start)
                ttlw = await t.wait_for(
                    "metrics",
                    lambda m: "ttlw" in m["metrics"],
                    timeout=FINALIZE_BOUND_S,
                    start=at_finalize,
                )
                assert ttlw["metadata"]["session_id"] == SESSION_ID, ttlw
                after = [
                    m.payload
                    for m in t.received[at_finalize:]
                    if m.name == "asr_result" and m.payload["final"]
                ]
                texts = [r["text"] for r in after]
                if endpointing_first:
                    assert texts == [""], f"the closing final repeats text: {texts}"
                else:
                    assert texts and all(texts), f"the turn's text was expected: {texts}"

        tester = run_it(fast_props(srv.url), script)
        wait_all_ended(srv)
    metrics = tester.messages("metrics")
    for m in metrics:
        assert m["module"] == "asr" and m["vendor"] == "xai", m
        # The first connection may open before any frame told the session id (TEN's
        # test skips connect_delay alone for that reason); every other metric has it.
        if set(m["metrics"]) != {"connect_delay"}:
            assert m["metadata"].get("session_id") == SESSION_ID, m
    ttfw = [m["metrics"]["ttfw"] for m in metrics if "ttfw" in m["metrics"]]
    ttlw = [m["metrics"]["ttlw"] for m in metrics if "ttlw" in m["metrics"]]
    assert len(ttfw) == 2 and len(ttlw) == 2, metrics
    assert all(isinstance(v, int) and 0 <= v < 5000 for v in ttfw + ttlw), (ttfw, ttlw)
    # ttlw: from the finalize to its turn's last word; never longer than the finalize bound.
    assert all(v <= FINALIZE_BOUND_S * 1000 for v in ttlw)
    # Every word exactly once, whichever way its turn became final.
    assert final_indices(finals(tester)) == [i for a in turns for i in speech_indices_of(a)]
    # As TEN's timestamp test checks: every final, empty or not, lasts and none overlap.
    assert_finals_ordered(all_finals(tester))


# ---------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("mode", ["auto", "audio_done"])
def test_timestamps_match_the_audio_across_reconnects(mode: str) -> None:
    """Marker words carry their frame's index; each must be reported where that
    frame is in the audio sent, on one continuous timeline over every
    connection (indices jump between turns; positions do not), whether the turns
    share one connection (finalize) or have one each (audio.done)."""
    turns = [
        marker([(False, 15), (True, 70), (False, 40), (True, 30), (False, 5)], 5000),
        marker([(True, 45), (False, 12)], 9000),
        marker([(False, 33), (True, 400), (False, 8)], 12000),
    ]
    with marker_server() as srv:

        async def script(t: ItTester) -> None:
            for i, audio in enumerate(turns):
                await t.send_audio(audio)
                await t.finalize(f"f{i}", bound_s=FINALIZE_BOUND_S)

        tester = run_it(fast_props(srv.url, finalize_mode=mode), script)
        records = wait_all_ended(srv)
    finals_ = finals(tester)
    assert final_indices(finals_) == [i for a in turns for i in speech_indices_of(a)]
    assert_finals_ordered(all_finals(tester))
    assert_word_times(finals_, bytes(tester.sent_audio))
    for r in tester.messages("asr_result"):
        assert isinstance(r["start_ms"], int) and r["start_ms"] >= 0
        assert isinstance(r["duration_ms"], int) and r["duration_ms"] >= 0
    # Each final spans its words.
    for f in finals_:
        if f["words"]:
            assert f["start_ms"] <= f["words"][0]["start_ms"]
            last = f["words"][-1]
            assert last["start_ms"] + last["duration_ms"] <= f["start_ms"] + f["duration_ms"]
    assert len(records) >= 3 if mode == "audio_done" else len(records) == 1


# ---------------------------------------------------------------------- status


def test_connection_status_sequence_is_legal() -> None:
    """Connect, a planned reconnect after a finalize, a dropped connection, a
    recovery: every change is legal and chained, and the URL holds no key."""
    key = "status-key-0123456789"
    with marker_server() as srv:
        srv.set_fault(2, Fault(error_event=ErrorEvent(code=1011, after_bytes=10 * FRAME_BYTES)))

        async def script(t: ItTester) -> None:
            await t.send_audio(turn_audio(0))
            await t.finalize("f0", bound_s=FINALIZE_BOUND_S)
            await t.send_audio(marker([(True, 10)], 1000))
            await t.wait_for("error", timeout=5)
            await t.send_audio(marker([(True, 30), (False, 5)], 1010))
            await t.finalize("f1", bound_s=FINALIZE_BOUND_S)

        # A turn per connection (audio.done): the planned reconnect is what is checked.
        props = fast_props(srv.url, params={"api_key": key}, finalize_mode="audio_done")
        tester = run_it(props, script)
        wait_all_ended(srv)
    statuses = tester.statuses()
    assert_status_chain(statuses, secrets=[key])
    pairs = [(s["last"], s["current"]) for s in statuses]
    assert pairs[:2] == [("disconnected", "connecting"), ("connecting", "connected")]
    # The planned reconnect hands over without a disconnected in between.
    assert ("connected", "connecting") in pairs
    # The failure: disconnected with the vendor's code, then back to connected.
    failed = [s for s in statuses if s["current"] == "disconnected" and s["code"] == 1011]
    assert failed, statuses
    after = pairs[statuses.index(failed[0]) + 1 :]
    assert ("connecting", "connected") in after


# ---------------------------------------------------------------------- long stream


def test_long_stream_with_periodic_finalizes() -> None:
    """Three minutes of marker audio, sent many times faster than real time,
    finalized every 20 s: no error, no reconnect storm, nothing lost."""
    turn_frames = 2000  # 20 s per turn
    turns = []
    for i in range(9):
        base = i * 100_000
        pattern = [(True, 300), (False, 40)] * 5 + [(True, 250), (False, 50)]
        assert sum(n for _, n in pattern) == turn_frames
        turns.append(marker(pattern, base))
    with marker_server() as srv:

        async def script(t: ItTester) -> None:
            for i, audio in enumerate(turns):
                # 100 ms of audio every 4 ms (plus sending): over 15 times real time.
                await t.send_audio(audio, chunk_bytes=3200, pace_s=0.004)
                await t.send_finalize(f"f{i}", {"session_id": SESSION_ID})
            await t.wait_for("asr_finalize_end", lambda p: p["finalize_id"] == "f8", timeout=20)

        tester = run_it(fast_props(srv.url), script, timeout_s=60)
        records = wait_all_ended(srv)
    assert tester.errors() == []
    assert len(records) <= len(turns) + 1
    sent = [i for a in turns for i in indices_of(a)]
    assert_exactly_once(sent, records)
    assert final_indices(finals(tester)) == [i for a in turns for i in speech_indices_of(a)]
    assert [m["finalize_id"] for m in tester.messages("asr_finalize_end")] == [
        f"f{i}" for i in range(9)
    ]
