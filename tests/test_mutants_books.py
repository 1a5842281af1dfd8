"""Checks that kill what the mutation run (bench/mutation.py) found surviving in
books.py: behaviour the engine's tests did not pin. Event by event on the sans-I/O
core (no sockets, no clock), through the core's own API.

Survivors left as equivalent (bench/README.md, "Mutation run" says why):
`settings_changed`'s `+= 1` -> `-= 1` / `+= 2` (versions are only compared for
equality); `close`'s `close_planned(reason)` -> `close_planned(None)` (that reason is
read only for a connection still current, which `close` never leaves); `open_turns`'s
`DRAINING and not turn_finished` -> `or`, `REPAIR and not repair_ended` -> `or` (the
connections they add have no drain deadline, or one whose timers find them finished);
`new_conn`'s replay window size and timeline base (a connection gets a new window and
timeline when it goes live; a repair never uses its window, and its results wait for
its transcript.done, when every frame it was sent is on its timeline).
"""

from __future__ import annotations

from dataclasses import replace

from test_core_finalize_paths import Script

from xai_asr_python import engine_io as io
from xai_asr_python.protocol import VendorError


def closes(s: Script, generation: int) -> list[io.Close]:
    return [a for a in s.actions if isinstance(a, io.Close) and a.generation == generation]


def turn_end_message(s: Script, generation: int, first: int, at: float) -> type:
    """Push 30 frames of speech, ask for a finalize, send it all on `generation`: what
    ended the turn there (SendFinalize or SendEndOfAudio)."""
    s.push(first, 30)
    s.feed(io.FinalizeAsked(s.at(at), f"f{first}"))
    sent = s.complete_sends(generation)
    return type(sent[-1])


def test_each_change_of_the_url_reaches_only_the_connections_opened_after_it() -> None:
    """finalize goes out only on a connection opened with the session's settings of the
    moment. Gen 2 opens after a first change of the URL; a second change comes while
    gen 2 is current: gen 2 now has old settings, and its turn ends with audio.done."""
    s = Script(finalize_mode="finalize", prewarm=False)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    settings = s.core.settings
    s.feed(io.SettingsChanged(s.at(0.1), replace(settings, endpointing_ms=250)))
    s.feed(io.Closed(s.at(0.2), 1, io.CloseInfo()))
    s.feed(io.TimerFired(s.at(0.3), ("backoff", 0)))
    s.connect(2)
    assert turn_end_message(s, 2, 0, 0.6) is io.SendFinalize  # opened with the new ones
    s.feed(io.SettingsChanged(s.at(0.7), replace(settings, endpointing_ms=400)))
    assert turn_end_message(s, 2, 30, 1.0) is io.SendEndOfAudio


def test_a_change_that_leaves_the_url_and_key_alone_keeps_finalize() -> None:
    s = Script(finalize_mode="finalize", prewarm=False)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.feed(io.SettingsChanged(s.at(0.1), replace(s.core.settings, finalize_timeout_s=3.0)))
    assert turn_end_message(s, 1, 0, 0.4) is io.SendFinalize


def test_a_vendor_error_closes_the_current_connection_politely_and_bounded() -> None:
    s = Script(prewarm=False)
    s.feed(io.Start(s.at(0.0)))
    s.connect(1)
    s.push(0, 10)
    s.complete_sends(1)
    s.feed(io.Received(s.at(0.2), 1, VendorError("internal error", "500")))
    assert closes(s, 1) == [io.Close(1, "failed", 0.5)]


def test_a_connection_is_closed_once_even_when_two_reasons_meet() -> None:
    """A draining connection reports an error with nothing left to repair its turn
    with: the turn ends "failed", which closes it ("drained"), and the error closes it
    too ("failed"). One Close goes out, the first."""
    s = Script(finalize_mode="audio_done", prewarm=False, replay_max_ms=0)
    s.finalized_turn()
    s.feed(io.Received(s.at(0.4), 1, VendorError("internal error", "500")))
    assert closes(s, 1) == [io.Close(1, "drained", 0.5)]


def test_a_repair_under_way_is_bound_by_a_shorter_finalize_deadline() -> None:
    """Gen 1's turn is being repaired on gen 2 by 2.31 s. The finalize timeout is then
    cut to 0.5 s and a new turn's finalize comes at 1.5 s: its answer cannot overtake the
    repaired turn, so the repair must be over by 2.0 s too."""
    s = Script(finalize_mode="audio_done", prewarm=False, finalize_timeout_s=2.0)
    s.finalized_turn("f1")
    s.feed(io.TimerFired(s.at(1.31), ("hedge", 1)))  # gen 1 is not answering: repair
    assert io.SetTimer(("repair", 2), 2.31) in s.actions
    s.feed(io.SettingsChanged(s.at(1.4), replace(s.core.settings, finalize_timeout_s=0.5)))
    s.push(30, 10)
    s.feed(io.FinalizeAsked(s.at(1.5), "f2"))
    assert io.SetTimer(("repair", 2), 2.0) in s.actions
