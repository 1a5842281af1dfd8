"""finalize_mode's edge paths, event by event on the sans-I/O core (no sockets, no clock).

Each test scripts what the vendor does and checks the actions the core answers with:
what goes out on which connection, and what the listener hears.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from test_engine_support import speech

from xai_asr_python import engine_io as io
from xai_asr_python.protocol import TranscriptPartial, VendorError, WordTiming
from xai_asr_python.reconnect_manager import BackoffPolicy
from xai_asr_python.session_core import SessionCore
from xai_asr_python.session_types import FinalizeOutcome, SessionSettings, Transcript

FRAME = 320  # bytes of one 10 ms marker frame


class Script:
    """Drives one core: events in, actions kept, listener calls collected."""

    def __init__(self, **overrides: object) -> None:
        settings = SessionSettings(
            url="ws://127.0.0.1:1/v1/stt",
            api_key="test-key-0123456789",
            finalize_timeout_s=1.0,
            backoff=BackoffPolicy(base_s=0.01, cap_s=0.05, max_attempts=5),
            probe_quiet_s=60.0,  # no liveness probes in these scripts
        )
        self.core = SessionCore(replace(settings, **overrides), rng=lambda: 0.0)  # type: ignore[arg-type]
        self.now = 0.0
        self.actions: list[io.Action] = []
        self._completed: dict[int, int] = {}  # generation -> its sends completed

    def feed(self, event: io.Event) -> Sequence[io.Action]:
        out = list(self.core.handle(event))
        self.actions += out
        return out

    def at(self, t: float) -> float:
        self.now = t
        return t

    def connect(self, generation: int) -> None:
        self.feed(io.Opened(self.now, generation))

    def push(self, first: int, frames: int) -> None:
        data = speech(frames, first)
        for at in range(0, len(data), FRAME):  # 10 ms at a time, as a live source does
            self.actions += self.core.audio_pushed(self.now, data[at : at + FRAME])

    def finalized_turn(self, finalize_id: str = "f", at: float = 0.31) -> list[io.Action]:
        """The usual opening: Start, gen 1 open, 300 ms of speech, `finalize_id` asked at
        `at`, every send on gen 1 completed (the turn's end request is out). The sends."""
        self.feed(io.Start(self.at(0.0)))
        self.connect(1)
        self.push(0, 30)
        self.feed(io.FinalizeAsked(self.at(at), finalize_id))
        return self.complete_sends(1)

    def complete_sends(self, generation: int, *, keep_last: bool = False) -> list[io.Action]:
        """Complete every send the core makes on `generation`, in order (the last one
        left in flight with `keep_last`). The sends made. Sends are counted, not
        compared: two equal sends (two `finalize` messages) are two, and a send an
        earlier call completed is not completed again."""
        made: list[io.Action] = []
        while True:
            sends = [
                a
                for a in self.actions
                if isinstance(a, (io.Send, io.SendFinalize, io.SendEndOfAudio))
                and a.generation == generation
            ]
            done = self._completed.get(generation, 0)
            pending = sends[done:]
            if not pending:
                return made
            made += pending
            if keep_last and not self._more_coming(generation):
                return made
            self._completed[generation] = len(sends)
            for _ in pending:
                self.actions += self.core.send_completed(self.now, generation, True)

    def _more_coming(self, generation: int) -> bool:
        return bool(self.core.queued_ms)

    def notified(self, method: str) -> list[object]:
        return [a.args[0] for a in self.actions if isinstance(a, io.Notify) and a.method == method]

    def finals(self) -> list[Transcript]:
        return [t for t in self.notified("on_transcript") if isinstance(t, Transcript) and t.final]

    def ends(self) -> list[FinalizeOutcome]:
        return [o for o in self.notified("on_finalize_end") if isinstance(o, FinalizeOutcome)]


def words(first: int, count: int) -> tuple[WordTiming, ...]:
    return tuple(WordTiming(str(i), i / 100, i / 100 + 0.01) for i in range(first, first + count))


def partial(
    first: int, count: int, *, is_final: bool, speech_final: bool, end: float
) -> TranscriptPartial:
    return TranscriptPartial(
        text=" ".join(str(i) for i in range(first, first + count)),
        words=words(first, count),
        is_final=is_final,
        speech_final=speech_final,
        start_s=first / 100,
        duration_s=end - first / 100,
        channel=None,
    )


def test_an_utterance_final_before_the_cut_does_not_answer_the_finalize() -> None:
    """The vendor's own endpointing final, said before it read the finalize, ends before
    the cut: the finalize waits for the final that reaches the cut."""
    s = Script(finalize_mode="finalize")
    sent = s.finalized_turn()
    assert [type(a) for a in sent][-1] is io.SendFinalize
    s.feed(io.Received(s.at(0.4), 1, partial(0, 20, is_final=True, speech_final=True, end=0.2)))
    assert s.ends() == []
    s.feed(io.Received(s.at(0.5), 1, partial(20, 10, is_final=True, speech_final=True, end=0.3)))
    [end] = s.ends()
    assert end.status == "done"
    assert [t.text.split()[0] for t in s.finals()] == ["0", "20"]


def test_a_refused_finalize_in_auto_is_answered_by_audio_done_and_stays_off() -> None:
    s = Script(finalize_mode="auto")
    s.finalized_turn("f1")
    refusal = VendorError('Invalid message: expected {"type": "audio.done"}', None)
    s.feed(io.Received(s.at(0.35), 1, refusal))
    sent = s.complete_sends(1)
    assert [type(a) for a in sent][-1] is io.SendEndOfAudio
    assert s.notified("on_error") == []  # a refusal is not a failure
    # The next turn's connection opens; the draining one's done answers f1.
    assert any(isinstance(a, io.Open) and a.generation == 2 for a in s.actions)
    s.feed(io.Received(s.at(0.5), 1, partial(0, 30, is_final=True, speech_final=True, end=0.3)))
    from xai_asr_python.protocol import TranscriptDone

    s.feed(io.Received(s.at(0.5), 1, TranscriptDone("", 0.3, 0)))
    [end] = s.ends()
    assert (end.finalize_id, end.status) == ("f1", "done")
    # Later turns end with audio.done: no finalize message on the next connection.
    s.connect(2)
    s.push(30, 30)
    s.feed(io.FinalizeAsked(s.at(0.9), "f2"))
    sent = s.complete_sends(2)
    assert [type(a) for a in sent][-1] is io.SendEndOfAudio


def test_a_finalize_that_times_out_on_its_connection_ends_its_turn_there() -> None:
    """Neither the finalize nor the fallback's audio.done could be answered (a send
    hangs): at the deadline the turn ends with its interim text, the connection is
    dropped, and the audio after the cut goes to a new one. Nothing of the turn comes
    after its end."""
    s = Script(finalize_mode="finalize")
    s.finalized_turn("f", 0.3)
    s.feed(io.Received(s.at(0.35), 1, partial(0, 25, is_final=False, speech_final=False, end=0.25)))
    # The next turn's audio: its send hangs (back-pressure), so no audio.done can follow.
    s.push(30, 5)
    s.feed(io.TimerFired(s.at(0.8), ("answer", "#1")))
    s.feed(io.TimerFired(s.at(1.3), ("finalize", "#1")))
    [end] = s.ends()
    assert end.status == "timeout"
    [final] = s.finals()
    assert final.text.split() == [str(i) for i in range(25)]  # the interim, before the cut
    assert any(isinstance(a, io.Abort) and a.generation == 1 for a in s.actions)
    # The audio after the cut goes to the next connection; nothing from gen 1 counts now.
    s.feed(io.Received(s.at(1.35), 1, partial(0, 30, is_final=True, speech_final=True, end=0.3)))
    assert len(s.finals()) == 1
    s.connect(2)
    resent = [a for a in s.complete_sends(2) if isinstance(a, io.Send)]
    assert resent and resent[0].data == speech(5, 30)[: FRAME * 5][: len(resent[0].data)]
    # The lost audio (before the cut, past the interim) is reported, once.
    assert [e.kind for e in s.notified("on_error")].count("finalize_timeout") == 1


def test_stop_mid_speech_reports_the_speech_after_the_latest_interim() -> None:
    """Stop while speech flows: the interim text is made final, and the speech sent after
    it, which no result will ever cover, is reported lost: never silently gone."""
    s = Script(finalize_mode="finalize")
    s.feed(io.Start(0.0))
    s.connect(1)
    s.push(0, 30)
    s.complete_sends(1)
    s.feed(io.Received(s.at(0.3), 1, partial(0, 20, is_final=False, speech_final=False, end=0.2)))
    s.feed(io.StopAsked(s.at(0.31)))
    [final] = s.finals()
    assert final.text.split() == [str(i) for i in range(20)]
    assert s.core.ledger.lost_spans_ms == [(200.0, 300.0)]
    [error] = s.notified("on_error")
    assert error.kind == "audio_dropped" and error.dropped_ms == 100


def test_stop_after_a_final_and_silence_reports_nothing() -> None:
    s = Script(finalize_mode="finalize")
    s.feed(io.Start(0.0))
    s.connect(1)
    s.push(0, 20)
    s.actions += s.core.audio_pushed(s.now, b"\x00" * FRAME * 10)  # silence
    s.complete_sends(1)
    s.feed(io.Received(s.at(0.3), 1, partial(0, 20, is_final=True, speech_final=True, end=0.2)))
    s.feed(io.StopAsked(s.at(0.31)))
    assert [t.text.split()[0] for t in s.finals()] == ["0"]
    assert s.core.ledger.lost_spans_ms == [] and s.notified("on_error") == []
