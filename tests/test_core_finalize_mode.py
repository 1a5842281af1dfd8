"""finalize_mode on a virtual clock: the session core against the simulated vendor.

Deterministic scenarios of how an asr_finalize ends the utterance
(shared/docs/xai-stt-protocol.md, "Session model"): `finalize` on the open
connection (one connection for every turn), refused or ignored by an older
deployment (audio.done answers it; `auto` stays on audio.done, explicit
`finalize` falls back for that turn only), and the live wire's ways of
speaking (restated utterance finals, chunk finals, empty transcript.done,
noise). Every run ends with test_core_stateful's end checks: each speech frame
in exactly one final (or reported lost), every finalize answered once by its
deadline, legal statuses, nothing after stop.
"""

from __future__ import annotations

from typing import Any

import pytest
from sim_vendor import NOISE, VendorProfile
from test_core_stateful import EPS, Session, make_settings

from xai_asr_python.session_types import FinalizeOutcome

FAST = {
    "open_delay_s": (0.05, 0.05),
    "latency_s": (0.02, 0.02),
    "send_delay_s": (0.001, 0.001),
    "interim_every": 10,
}


def _session(
    mode: str, seed: int = 7, settings: dict[str, Any] | None = None, **profile: Any
) -> Session:
    s = Session(
        make_settings(finalize_mode=mode, **(settings or {})),
        seed=seed,
        profile=VendorProfile(**{**FAST, **profile}),
    )
    s.start()
    s.advance(0.2)
    return s


def _turn(s: Session, speech: int, silence: int = 10, *, wait_s: float = 1.5) -> str:
    """`speech` frames, then `silence`, in real time; a finalize; `wait_s` to answer it."""
    s.push(speech, speech=True, realtime=True)
    s.push(silence, speech=False, realtime=True)
    fid = s.finalize()
    s.advance(wait_s)
    return fid


def _outcome(s: Session, finalize_id: str) -> FinalizeOutcome:
    f = s.finalizes[finalize_id]
    assert len(f.ended) == 1, f.ended
    return f.ended[0][1]


def _kinds(s: Session) -> list[tuple[int, str]]:
    return [(gen, kind) for _, gen, kind in s.vendor.messages]


def _spoken(s: Session) -> list[int]:
    return sorted(s.h.speech_frames())


@pytest.mark.parametrize("mode", ["auto", "finalize"])
@pytest.mark.parametrize("utterance_final", ["restate", "tail"])
def test_turns_share_one_connection(mode: str, utterance_final: str) -> None:
    """Three turns, each finalized before the vendor's endpointing: three `finalize`
    messages on one connection, each answered by the utterance final, no audio.done,
    no second connection; every word once."""
    s = _session(mode, endpoint_ms=None, utterance_final=utterance_final, chunk_ms=150)
    fids = [_turn(s, 30) for _ in range(3)]
    assert [_outcome(s, f).status for f in fids] == ["done"] * 3
    assert _kinds(s) == [(1, "finalize")] * 3, s.vendor.messages
    assert len(s.vendor.opens) == 1
    assert s.final_indices == _spoken(s)
    finals = [t for _, t in s.transcripts if t.final]
    assert len(finals) == 3, finals  # one final per utterance, chunk finals are progress
    s.settle_and_stop()


def test_finalize_after_an_endpointed_utterance_is_answered_at_once() -> None:
    """The vendor's endpointing ended the utterance before the finalize: nothing is
    pending, so nothing is sent and the finalize is answered at once."""
    s = _session("finalize", endpoint_ms=100)
    fid = _turn(s, 20, silence=40, wait_s=0.005)  # the last frame's send completes
    outcome = _outcome(s, fid)
    assert outcome.status == "done" and outcome.latency_ms <= 1.0 + EPS, outcome
    assert _kinds(s) == []
    assert s.final_indices == _spoken(s)
    s.settle_and_stop()


def test_a_turn_of_noise_is_answered_by_an_empty_utterance_final() -> None:
    """Noise is loud (speech to the core's meter) but the vendor hears no word: the
    finalize goes out and an empty utterance final answers it; no transcript."""
    s = _session("finalize", empty_partials=True, empty_every=10)
    s.push(40, speech=False, realtime=True, kind=NOISE)
    fid = s.finalize()
    s.advance(1.0)
    assert _outcome(s, fid).status == "done"
    assert _kinds(s) == [(1, "finalize")]
    assert not [t for _, t in s.transcripts if t.final]
    s.settle_and_stop()


@pytest.mark.parametrize("reply", ["refuse", "ignore"])
def test_auto_falls_back_to_audio_done_for_good(reply: str) -> None:
    """An older deployment refuses (or ignores) finalize: audio.done answers it on the
    same connection, and every later turn ends with audio.done (no finalize again)."""
    s = _session("auto", endpoint_ms=None, finalize=reply)
    fids = [_turn(s, 30, wait_s=2.5) for _ in range(3)]
    for fid in fids:
        f = s.finalizes[fid]
        outcome = _outcome(s, fid)
        assert outcome.status == "done", outcome
        assert f.ended[0][0] <= f.deadline + EPS
    kinds = [kind for _, kind in _kinds(s)]
    assert kinds == ["finalize", "audio.done", "audio.done", "audio.done"], s.vendor.messages
    assert s.final_indices == _spoken(s)
    s.settle_and_stop()


def test_explicit_finalize_falls_back_for_the_refused_turn_only() -> None:
    """Explicit "finalize": each refused finalize is answered by audio.done, and the next
    turn (on a new connection) tries finalize again."""
    s = _session("finalize", endpoint_ms=None, finalize="refuse")
    fids = [_turn(s, 30, wait_s=2.5) for _ in range(2)]
    assert [_outcome(s, f).status for f in fids] == ["done", "done"]
    assert _kinds(s) == [
        (1, "finalize"),
        (1, "audio.done"),
        (2, "finalize"),
        (2, "audio.done"),
    ], s.vendor.messages
    assert s.final_indices == _spoken(s)
    s.settle_and_stop()


def test_an_ignored_finalize_is_answered_by_its_deadline() -> None:
    """No answer by the check point (half the finalize timeout): audio.done, whose
    transcript.done answers the finalize before its deadline."""
    s = _session("auto", settings={"finalize_timeout_s": 1.0}, endpoint_ms=None, finalize="ignore")
    fid = _turn(s, 30, wait_s=1.5)
    f = s.finalizes[fid]
    assert _outcome(s, fid).status == "done"
    assert 0.5 <= f.ended[0][0] - f.issued_at <= 1.0, f
    assert s.final_indices == _spoken(s)
    s.settle_and_stop()


@pytest.mark.parametrize("mode", ["auto", "audio_done"])
def test_stream_timeout_is_replaced_quietly(mode: str) -> None:
    """'ASR stream timed out' (no code) closes the connection: a new one takes over,
    hears again what was not final, and nothing is reported."""
    s = _session(mode, endpoint_ms=None)
    s.push(30, speech=True, realtime=True)
    s.vendor.inject(s.vendor.live()[0], "stream_timeout")
    s.advance(0.5)
    s.push(20, speech=True, realtime=True)
    s.push(10, speech=False, realtime=True)
    fid = s.finalize()
    s.advance(2.0)
    assert _outcome(s, fid).status == "done"
    assert not s.errors, s.errors
    # gen 2 replaces gen 1; with audio_done, the finalize hands over to gen 3.
    assert len(s.vendor.opens) == (2 if mode == "auto" else 3), s.vendor.opens
    assert s.final_indices == _spoken(s)
    s.settle_and_stop()


@pytest.mark.parametrize("mode", ["auto", "audio_done"])
@pytest.mark.parametrize("done_text", ["empty", "whole", "pending"])
@pytest.mark.parametrize("utterance_final", ["restate", "tail"])
def test_every_word_once_whatever_the_vendor_restates(
    mode: str, done_text: str, utterance_final: str
) -> None:
    """Chunk finals, endpointed utterance finals (restating or tail-only) and every kind
    of transcript.done: each word in exactly one final."""
    s = _session(
        mode,
        endpoint_ms=200,
        chunk_ms=100,
        utterance_final=utterance_final,
        done_text=done_text,
        flush_on_done=False,
    )
    for _ in range(2):
        s.push(25, speech=True, realtime=True)
        s.push(30, speech=False, realtime=True)  # endpointed
        s.push(15, speech=True, realtime=True)  # pending at the finalize
        fid = s.finalize()
        s.advance(1.5)
        assert _outcome(s, fid).status == "done"
    assert s.final_indices == _spoken(s)
    s.settle_and_stop()


# =========================================================================== core bugs


def test_new_settings_audio_done_answers_the_finalize_still_awaiting() -> None:
    """f1 goes out as `finalize` on gen 1; new settings come before its answer, so f2's
    marker goes out as audio.done on gen 1 (the next connection gets the new settings).
    The vendor is an older deployment (the stt_server's "legacy" wire: refuses
    `finalize`, answers audio.done with the whole text, no utterance final first). Its
    refusal of f1 comes after that audio.done: gen 1 is draining, so the refusal is
    ignored and the check point's fall-back does nothing (gen 1 is not current).
    gen 1's transcript.done answers f2 but not f1, whose audio it covers too: f1 ends
    "timeout" at its deadline, after f2's "done" (the finalize ends out of order)."""
    s = _session(
        "finalize",
        latency_s=(0.2, 0.2),
        endpoint_ms=None,
        utterance_final="tail",
        done_text="whole",
        flush_on_done=False,
        empty_partials=False,
        finalize="refuse",
    )
    s.push(20, speech=True, realtime=True)
    f1 = s.finalize()
    s.advance(0.01)  # `finalize` is written on gen 1
    s.change_settings(endpointing_ms=250)  # a new query: the next connection takes it
    s.push(5, speech=True, realtime=True)
    f2 = s.finalize()
    s.advance(3.0)
    assert _kinds(s)[:2] == [(1, "finalize"), (1, "audio.done")], s.vendor.messages
    ends = sorted(
        (f.ended[0][0], f.finalize_id, f.ended[0][1].status) for f in s.finalizes.values()
    )
    assert _outcome(s, f2).status == "done"
    # Fails: f1 ends "timeout" at 2.2 s, after f2's "done".
    assert [(fid, status) for _, fid, status in ends] == [(f1, "done"), (f2, "done")], ends
    s.settle_and_stop()


def test_a_connection_opened_with_the_new_settings_keeps_finalize() -> None:
    """Found by the machine: new settings come while gen 1 is current, so its next turn
    is to end with audio.done (the new settings apply from the next connection). gen 1
    fails first; gen 2 replaces it, opened with the new settings. Its first finalize
    should go out as `finalize`, but `_new_connection_due` is still set: audio.done,
    and a needless gen 3. (Suggested fix: clear the flag when a connection is opened
    (`_new_conn`), or keep the settings a connection was opened with on its Conn and
    compare.) The machine's case: the settings change while gen 1's audio.done for
    another reason is in flight."""
    s = _session("finalize", endpoint_ms=None)
    s.push(10, speech=True, realtime=True)
    s.change_settings(endpointing_ms=250)  # a new query: the next connection takes it
    s.vendor.inject(s.vendor.live()[0], "abrupt")
    s.advance(0.5)  # gen 2, opened with the new settings, is current
    assert [g for _, g in s.vendor.opens] == [1, 2]
    _turn(s, 20)
    assert _kinds(s) == [(2, "finalize")], s.vendor.messages  # fails: (2, "audio.done")
    assert [g for _, g in s.vendor.opens] == [1, 2], s.vendor.opens
    s.settle_and_stop()


def test_a_raised_timeout_does_not_hurry_the_finalize_check_point() -> None:
    """Found by the machine: f1 is issued (1 s timeout) before the connection is open;
    the timeout is raised to 3 s (no connection is current: nothing to reconnect). The
    `finalize` goes out at 0.06 s; its check point is min(deadline - 3/4, ...) = 0.25 s
    instead of half f1's own timeout (0.5 s). The vendor answers at 0.37 s, after it:
    auto falls back to audio.done for the rest of the session, though the vendor
    answers finalize. (Suggested fix: use the finalize's own timeout, f.deadline -
    f.issued_at, in Turns.finalize_sent, as the drain's hedge now does.)"""
    s = Session(
        make_settings(finalize_timeout_s=1.0, finalize_mode="auto"),
        seed=7,
        profile=VendorProfile(**{**FAST, "latency_s": (0.3, 0.3)}, endpoint_ms=None),
    )
    s.start()
    s.push(10, speech=True, realtime=False)
    f1 = s.finalize()  # deadline 1.0
    s.change_settings(finalize_timeout_s=3.0)
    s.advance(2.0)
    assert _outcome(s, f1).status == "done"
    _turn(s, 20)  # the next turn
    assert [kind for _, kind in _kinds(s)] == ["finalize", "finalize"], s.vendor.messages
    s.settle_and_stop()
