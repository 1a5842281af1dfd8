"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in turns.py: behaviour the engine's tests did not pin. Event by event on the
sans-I/O core (no sockets, no clock), through the core's own API.

The survivor left as equivalent (sample seed 1): `begin_drain`'s
`_sent_on[g.token] = conn.generation` -> `= None` for the older finalizes a drain also
answers. `_sent_on` is only ever asked whether it holds a token (`unsent`,
`finalize_expired`) and popped (`end`); the generation stored is never read, so the
value is immaterial (the dict serves as a set).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_core_finalize_paths import Script, partial

from xai_asr_python import engine_io as io
from xai_asr_python.protocol import TranscriptDone, VendorError


def opened(s: Script) -> list[int]:
    return [a.generation for a in s.actions if isinstance(a, io.Open)]


def test_replay_turned_off_mid_turn_means_no_repair_for_that_turn() -> None:
    """New settings take effect at the next connection, and a repair is one: with
    replay_max_ms set to 0 while gen 1 streamed (its window still holds the turn), gen 1
    failing before its transcript.done is not repaired. Its turn ends "failed", its
    interim text made final."""
    s = Script(finalize_mode="audio_done", prewarm=False)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.push(0, 30)
    s.complete_sends(1)
    s.feed(io.Received(s.at(0.3), 1, partial(0, 10, is_final=False, speech_final=False, end=0.1)))
    s.feed(io.SettingsChanged(s.at(0.31), replace(s.core.settings, replay_max_ms=0)))
    s.feed(io.FinalizeAsked(s.at(0.32), "f"))
    s.complete_sends(1)  # audio.done: gen 1 drains
    s.feed(io.Closed(s.at(0.4), 1, io.CloseInfo()))  # ... and dies before its done
    assert opened(s) == [1]  # no repair connection
    [end] = s.ends()
    assert (end.finalize_id, end.status, end.repaired) == ("f", "failed", False)
    assert [w.text for t in s.finals() for w in t.words] == [str(i) for i in range(10)]


def test_a_finalize_sent_late_is_checked_a_quarter_timeout_before_its_deadline() -> None:
    """A `finalize` sent when more than half its timeout has gone (the connection came
    late) is answered by audio.done if no utterance final reaches its cut by a quarter
    of the timeout before the deadline: time left for the fallback's drain."""
    s = Script(finalize_mode="finalize")  # finalize_timeout_s 1.0
    s.feed(io.Start(s.at(0.0)))
    s.push(0, 10)
    s.feed(io.FinalizeAsked(s.at(0.1), "f"))  # deadline 1.1
    s.at(0.8)
    s.connect(1)  # late: 0.7 s of the 1 s timeout gone
    sent = s.complete_sends(1)
    assert isinstance(sent[-1], io.SendFinalize)
    [check] = [a for a in s.actions if isinstance(a, io.SetTimer) and a.key == ("answer", "#1")]
    assert check.at == pytest.approx(1.1 - 1.0 / 4)


def test_every_finalize_a_repaired_drain_answers_is_told_repaired() -> None:
    """Two turns sent as `finalize` on gen 1, refused: one audio.done answers both, and
    gen 1 drains them. It dies before its done; the repair connection's done answers
    both finalizes: each ends "done" and repaired, the older one too."""
    s = Script(finalize_mode="finalize", prewarm=False, finalize_timeout_s=2.0)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.push(0, 10)
    s.feed(io.FinalizeAsked(s.at(0.1), "f1"))
    s.push(10, 10)
    s.feed(io.FinalizeAsked(s.at(0.2), "f2"))
    sent = s.complete_sends(1)
    assert [type(a) for a in sent].count(io.SendFinalize) == 2
    refusal = VendorError('Invalid message: expected {"type": "audio.done"}', None)
    s.feed(io.Received(s.at(0.3), 1, refusal))
    sent = s.complete_sends(1)
    assert isinstance(sent[-1], io.SendEndOfAudio)  # both finalizes drain on gen 1
    s.feed(io.Closed(s.at(0.4), 1, io.CloseInfo()))  # ... which dies before its done
    [repair] = [g for g in opened(s) if g > 1]
    s.connect(repair)
    s.complete_sends(repair)
    s.feed(
        io.Received(s.at(0.6), repair, partial(0, 20, is_final=True, speech_final=True, end=0.2))
    )
    s.feed(io.Received(s.at(0.6), repair, TranscriptDone("", 0.2, 0)))
    assert [(e.finalize_id, e.status, e.repaired) for e in s.ends()] == [
        ("f1", "done", True),
        ("f2", "done", True),
    ]
