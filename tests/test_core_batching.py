"""Audio already queued when a send is made goes out with it, in one message of at most
100 ms (the vendor's own guidance for a message): a burst after an outage catches up in
a tenth of the sends, and nothing waits for audio to come. Event by event on the
sans-I/O core; the frames are read back from the bytes sent (marker audio)."""

from __future__ import annotations

from test_core_finalize_paths import FRAME, Script, partial

from stt_server import marker
from xai_asr_python import engine_io as io


def frames_of(sends: list[io.Action]) -> list[list[int]]:
    """The marker frame indices in each Send, in order."""
    return [[f.index for f in marker.decode(a.data)] for a in sends if isinstance(a, io.Send)]


def test_audio_queued_in_an_outage_goes_out_in_messages_of_100_ms_in_order() -> None:
    s = Script(finalize_mode="finalize")
    s.feed(io.Start(0.0))
    s.push(0, 35)  # no connection yet: 350 ms queue
    s.connect(1)
    sends = frames_of(s.complete_sends(1))
    assert sends == [
        list(range(0, 10)),
        list(range(10, 20)),
        list(range(20, 30)),
        list(range(30, 35)),
    ]
    # Every frame is told sent once, in order (the extension's metrics and dump).
    told = [marker.decode(chunk)[0].index for chunk in s.notified("on_audio_sent")]
    assert told == list(range(35))


def test_a_live_stream_is_sent_frame_by_frame_without_waiting() -> None:
    # Each frame's send completes before the next frame comes: nothing is queued, so
    # each goes out alone, at once.
    s = Script(finalize_mode="finalize")
    s.feed(io.Start(0.0))
    s.connect(1)
    for k in range(5):
        s.push(k, 1)
        assert frames_of(s.complete_sends(1))[-1] == [k]
    assert frames_of(s.actions) == [[k] for k in range(5)]


def test_a_finalize_is_never_inside_a_message_of_audio() -> None:
    s = Script(finalize_mode="finalize")
    s.feed(io.Start(0.0))
    s.push(0, 5)
    s.feed(io.FinalizeAsked(s.at(0.05), "f"))
    s.push(5, 5)
    s.connect(1)
    sent = s.complete_sends(1)
    kinds = [type(a).__name__ for a in sent]
    assert kinds == ["Send", "SendFinalize", "Send"]
    assert frames_of(sent) == [list(range(5)), list(range(5, 10))]


def test_a_message_that_fails_goes_first_to_the_next_connection_whole_and_once() -> None:
    s = Script(finalize_mode="audio_done", prewarm=False, replay_max_ms=0)
    s.feed(io.Start(0.0))
    s.push(0, 25)
    s.connect(1)
    [first] = [a for a in s.actions if isinstance(a, io.Send)]
    assert frames_of([first]) == [list(range(10))]
    # The socket refuses it, and it was lost: those ten frames, then the rest, go to
    # gen 2 (opened at once: the first retry waits no backoff).
    s.actions += s.core.send_completed(s.at(0.3), 1, False)
    s.feed(io.Closed(s.at(0.31), 1, io.CloseInfo()))
    s.connect(2)
    later = frames_of(s.complete_sends(2))
    assert [i for send in later for i in send] == list(range(25))
    assert not s.notified("on_audio_dropped")
    # What gen 2 heard is transcribed once: its final covers all 25 frames.
    s.feed(io.Received(s.at(0.6), 2, partial(0, 25, is_final=True, speech_final=True, end=0.25)))
    assert [w.text for t in s.finals() for w in t.words] == [str(i) for i in range(25)]
    assert len(b"".join(a.data for a in s.actions if isinstance(a, io.Send))) == 35 * FRAME


def test_a_repair_replays_the_failed_turn_in_messages_of_100_ms() -> None:
    s = Script(finalize_mode="audio_done", prewarm=False, standby=False)
    s.feed(io.Start(0.0))
    s.connect(1)
    s.push(0, 25)
    s.feed(io.FinalizeAsked(s.at(0.26), "f"))
    s.complete_sends(1)  # the turn's audio, then audio.done: gen 1 drains
    s.feed(io.Closed(s.at(0.3), 1, io.CloseInfo()))  # ... and dies before its done
    [repair] = [a.generation for a in s.actions if isinstance(a, io.Open) and a.generation > 1]
    s.connect(repair)
    sent = s.complete_sends(repair)
    assert frames_of(sent) == [list(range(0, 10)), list(range(10, 20)), list(range(20, 25))]
    assert isinstance(sent[-1], io.SendEndOfAudio)
