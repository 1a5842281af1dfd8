"""The fault matrix: every wire fault the local server can inject, crossed with
the phase of the session in which it strikes. One test per cell.

Phases:
- handshake: connection 1, while the session is being set up (the turn's
  audio is already on its way and is buffered);
- streaming: connection 1, mid-audio (after 20 frames of the first turn);
- finalize: connection 1, around `audio.done`;
- planned: the connection opened after a finalize (connection 2).

The cells pin each fault to a connection number, so they run with `standby`
off (the next connection opens at the finalize, not at the first speech, and
the numbering is the one above); the standby connection's own faults are
tested in tests/test_engine_standby.py.

Every cell runs three turns (A, B, C), each finalized, and checks:
errors (codes, vendor info), the status chain, recovery (or a FATAL stop),
every `asr_finalize_end` within finalize_timeout_ms + 1 s of its finalize,
the frames the server received (marker recogniser), the word times, and a
prompt stop that leaves no connection behind. See README.md for the table.

Audio that crosses a failure on an open socket is sent in step with the
fault where the cell says so: the script waits until the failure has been
reported before it sends more, so no frame is in flight when the server
drops the connection (the protocol has no acknowledgements: bytes the kernel
took for a socket the server then drops unread cannot be recovered by the
client unless it replays them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from it_support import (
    FAST_CONFIG,
    FATAL,
    FINALIZE_BOUND_S,
    FRAME_BYTES,
    NON_FATAL,
    SESSION_ID,
    ItTester,
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
    snapshot,
    speech_indices_of,
    wait_all_ended,
)

from stt_server import Close, ErrorEvent, Fault, Malformed

CONNECT_TIMEOUT_S = FAST_CONFIG["connect_timeout_ms"] / 1000
KEY = "matrix-key-0123456789"
VENDOR_MESSAGE = "Cannot continue request"

SPEECH, SILENCE = 60, 10  # frames per turn
TRIGGER = 20  # mid-audio faults strike once this many frames arrived
TURN_BYTES = (SPEECH + SILENCE) * FRAME_BYTES
FLOOD_FRAMES = 3000  # 30 s of speech: more than the socket buffers take

TURNS = {
    "A": marker([(True, SPEECH), (False, SILENCE)], 0),
    "B": marker([(True, SPEECH), (False, SILENCE)], 1000),
    "C": marker([(True, SPEECH), (False, SILENCE)], 2000),
}
TURNS["FLOOD"] = marker([(True, FLOOD_FRAMES)], 10_000)

# Steps of a cell's script:
#   ("send", turn, first_frame, end_frame)  send frames [first, end) of a turn
#   ("finalize", turn)                      asr_finalize, wait for its end (bounded)
#   ("wait_error",)                         wait until an error is reported
#   ("wait_idle", n)                        wait until connection n's session ended
Step = tuple[Any, ...]


def plain_turn(turn: str) -> list[Step]:
    return [("send", turn, 0, SPEECH + SILENCE), ("finalize", turn)]


DEFAULT_PLAN: list[Step] = [*plain_turn("A"), *plain_turn("B"), *plain_turn("C")]

# In step with a mid-audio fault on turn A.
STREAM_PLAN: list[Step] = [
    ("send", "A", 0, TRIGGER),
    ("wait_error",),
    ("send", "A", TRIGGER, SPEECH + SILENCE),
    ("finalize", "A"),
    *plain_turn("B"),
    *plain_turn("C"),
]

# Connection 2 fails as soon as it opens: turn B goes out once that is known.
PLANNED_OPEN_PLAN: list[Step] = [
    *plain_turn("A"),
    ("wait_error",),
    *plain_turn("B"),
    *plain_turn("C"),
]

# The server's session ends while no audio flows; speech then goes into the dead
# session until the stall watchdog notices.
STREAM_IDLE_PLAN: list[Step] = [
    ("send", "A", 0, TRIGGER),
    ("wait_idle", 1),
    ("send", "A", TRIGGER, 2 * TRIGGER),
    ("wait_error",),
    ("send", "A", 2 * TRIGGER, SPEECH + SILENCE),
    ("finalize", "A"),
    *plain_turn("B"),
    *plain_turn("C"),
]
PLANNED_IDLE_PLAN: list[Step] = [
    *plain_turn("A"),
    ("wait_idle", 2),
    ("send", "B", 0, TRIGGER),
    ("wait_error",),
    ("send", "B", TRIGGER, SPEECH + SILENCE),
    ("finalize", "B"),
    *plain_turn("C"),
]
FLOOD_PLAN: list[Step] = [
    ("send", "A", 0, TRIGGER),
    ("send", "FLOOD", 0, FLOOD_FRAMES),
    ("wait_error",),
    ("send", "A", TRIGGER, SPEECH + SILENCE),
    ("finalize", "A"),
    *plain_turn("B"),
    *plain_turn("C"),
]


@dataclass(frozen=True)
class Cell:
    fault: str  # the fault's name in the README table
    phase: str  # handshake | streaming | finalize | planned
    server_fault: Fault
    # "fatal": one FATAL error, nothing more connects; "recover": one NON_FATAL
    # error, then transcription resumes; "clean": no error at all.
    outcome: str
    # "exactly": every frame sent arrives exactly once, in order, over all
    # connections; "at_least": every frame arrives at least once, never twice on
    # one connection, and a second time only as a contiguous block of what one
    # earlier connection that did not complete its turn received (the engine
    # re-sending un-finalized audio); "lossy": like at_least for every frame sent
    # after the failure was reported; frames sent before it may be lost (they went
    # into a socket or a session the server dropped unread).
    delivery: str
    vendor_code: str | None = None  # expected vendor_info.code of the error
    vendor_message: str | None = None  # expected vendor_info.message
    status_code: int | None = None  # expected code of the DISCONNECTED status
    plan: list[Step] = field(default_factory=lambda: DEFAULT_PLAN)
    connection: int = 1  # the connection the fault is set on
    note: str = ""
    # The fault loses audio the engine can neither replay nor transcribe (older than
    # the replay window): it must be reported, an audio_dropped error after the failure.
    reports_loss: bool = False
    # A finalize timeout of its own (ms), where the plan's turn must carry a burst.
    finalize_timeout_ms: int | None = None

    @property
    def finalize_bound_s(self) -> float:
        if self.finalize_timeout_ms is None:
            return FINALIZE_BOUND_S
        return self.finalize_timeout_ms / 1000 + 1.0

    @property
    def id(self) -> str:
        return f"{self.phase}-{self.fault}"


def refusal(status: int, phase: str) -> Cell:
    fatal = status in (401, 403)
    return Cell(
        fault=f"refused-{status}",
        phase=phase,
        server_fault=Fault(refuse_status=status),
        outcome="fatal" if fatal else "recover",
        delivery="exactly",
        vendor_code=str(status),
        status_code=status,
        connection=2 if phase == "planned" else 1,
    )


def open_socket_faults(phase: str) -> list[Cell]:
    """Faults that strike an open connection: at handshake (right after it
    opened, turn A's audio already flowing), mid-stream (in step) and at planned
    reconnect (connection 2, right after it opened, before turn B)."""
    trigger: dict[str, Any] = {}
    delivery = "lossy"  # handshake: audio may be in flight when the fault strikes
    plan = DEFAULT_PLAN
    connection = 1
    if phase == "streaming":
        trigger = {"after_bytes": TRIGGER * FRAME_BYTES}
        delivery, plan = "at_least", STREAM_PLAN
    elif phase == "planned":
        delivery, plan, connection = "exactly", PLANNED_OPEN_PLAN, 2
    # At handshake the fault races the turn's audio.done: if audio.done went out
    # first, the failing connection is already draining and (by the status rule)
    # no longer the current one, so no DISCONNECTED is reported for it.
    racy = phase == "handshake"
    err = {"message": VENDOR_MESSAGE, "code": 503, **trigger}
    return [
        Cell(
            "error-then-silence",
            phase,
            Fault(error_event=ErrorEvent(**err)),
            "recover",
            delivery,
            vendor_code="503",
            vendor_message=VENDOR_MESSAGE,
            status_code=None if racy else 503,
            plan=plan,
            connection=connection,
        ),
        Cell(
            "error-then-close",
            phase,
            Fault(error_event=ErrorEvent(**err, then="close", close_code=1011)),
            "recover",
            delivery,
            vendor_code="503",
            vendor_message=VENDOR_MESSAGE,
            status_code=None if racy else 503,
            plan=plan,
            connection=connection,
        ),
        *(
            Cell(
                f"close-{code}",
                phase,
                Fault(close=Close(code=code, **trigger)),
                "recover",
                delivery,
                vendor_code=str(code),
                status_code=None if racy else code,
                plan=plan,
                connection=connection,
            )
            for code in (1001, 1011)
        ),
        Cell(
            "tcp-abort",
            phase,
            Fault(close=Close(code="abort", **trigger)),
            "recover",
            delivery,
            vendor_code="1006",
            status_code=None if racy else 1006,
            plan=plan,
            connection=connection,
        ),
        Cell(
            "malformed-frames",
            phase,
            Fault(malformed=Malformed(**trigger)),
            "clean",
            "exactly",
            plan=DEFAULT_PLAN,
            connection=connection,
        ),
    ]


def handshake_faults(phase: str) -> list[Cell]:
    connection = 2 if phase == "planned" else 1
    return [
        *(refusal(status, phase) for status in (401, 403, 429, 500, 503)),
        Cell(
            "slow-handshake",
            phase,
            Fault(handshake_delay_ms=int(CONNECT_TIMEOUT_S * 1000) + 1000),
            "recover",
            "exactly",
            vendor_code="",
            status_code=0,
            connection=connection,
        ),
        Cell(
            "no-transcript-created",
            phase,
            Fault(no_created=True),
            "recover",
            "exactly",
            vendor_code="",
            status_code=0,
            connection=connection,
        ),
    ]


FINALIZE_CELLS = [
    Cell(
        "error-then-silence",
        "finalize",
        Fault(error_event=ErrorEvent(VENDOR_MESSAGE, code=503, on_audio_done=True)),
        "recover",
        "at_least",
        vendor_code="503",
        vendor_message=VENDOR_MESSAGE,
    ),
    Cell(
        "error-then-close",
        "finalize",
        Fault(
            error_event=ErrorEvent(
                VENDOR_MESSAGE, code=503, on_audio_done=True, then="close", close_code=1011
            )
        ),
        "recover",
        "at_least",
        vendor_code="503",
        vendor_message=VENDOR_MESSAGE,
    ),
    *(
        Cell(
            f"close-{code}",
            "finalize",
            # Fires as the turn's last frame arrives: races the client's audio.done.
            Fault(close=Close(code=code, after_bytes=TURN_BYTES)),
            "recover",
            "at_least",
            vendor_code={"abort": "1006"}.get(str(code), str(code)),
            note="the close races audio.done",
        )
        for code in (1001, 1011)
    ),
    Cell(
        "tcp-abort",
        "finalize",
        Fault(close=Close(code="abort", after_bytes=TURN_BYTES)),
        "recover",
        "at_least",
        vendor_code="1006",
        note="the abort races audio.done",
    ),
    Cell(
        "no-answer-to-audio-done",
        "finalize",
        Fault(ignore_audio_done=True),
        "recover",
        "at_least",
        vendor_code="",
    ),
    Cell("done-without-close", "finalize", Fault(done_without_close=True), "clean", "exactly"),
    Cell(
        "close-before-done",
        "finalize",
        Fault(close_before_done=True),
        "recover",
        "at_least",
        vendor_code="1000",
    ),
    Cell(
        "malformed-frames",
        "finalize",
        Fault(malformed=Malformed(on_audio_done=True)),
        "clean",
        "exactly",
    ),
    Cell(
        "back-pressure",
        "finalize",
        # The server stops reading as the turn ends, for longer than the finalize
        # timeout: audio.done is not read in time.
        Fault(stop_reading_after_bytes=TURN_BYTES, stop_reading_for_ms=1500),
        "recover",
        "at_least",
        vendor_code="",
    ),
]

STREAMING_ONLY_CELLS = [
    Cell(
        "back-pressure-temporary",
        "streaming",
        Fault(stop_reading_after_bytes=TRIGGER * FRAME_BYTES, stop_reading_for_ms=400),
        "clean",
        "exactly",
        plan=[*plain_turn("A"), *plain_turn("B"), *plain_turn("C")],
    ),
    Cell(
        "back-pressure-permanent",
        "streaming",
        Fault(stop_reading_after_bytes=TRIGGER * FRAME_BYTES),
        "recover",
        "lossy",
        vendor_code="",
        status_code=0,
        plan=FLOOD_PLAN,
        # The flood fills the unread socket past the 20 s replay window: the older
        # part is reported lost when the stall is found (it had gone unreported).
        reports_loss=True,
        # The next connection hears the 20 s window again before turn A's end: on a
        # loaded machine that burst took longer than the 1 s of fast_faults.
        finalize_timeout_ms=4000,
    ),
    Cell(
        "server-idle-end",
        "streaming",
        Fault(idle_end_after_s=0.3),
        "recover",
        "lossy",
        vendor_code="",
        status_code=0,
        plan=STREAM_IDLE_PLAN,
    ),
]

PLANNED_ONLY_CELLS = [
    Cell(
        "server-idle-end",
        "planned",
        Fault(idle_end_after_s=0.3),
        "recover",
        "lossy",
        vendor_code="",
        status_code=0,
        plan=PLANNED_IDLE_PLAN,
        connection=2,
    ),
]

CELLS: list[Cell] = [
    *handshake_faults("handshake"),
    *open_socket_faults("handshake"),
    *open_socket_faults("streaming"),
    *STREAMING_ONLY_CELLS,
    *FINALIZE_CELLS,
    *handshake_faults("planned"),
    *open_socket_faults("planned"),
    *PLANNED_ONLY_CELLS,
]


# ---------------------------------------------------------------------- the script


@dataclass
class Trace:
    """What the script did, for the checks after the run."""

    # (turn, first frame, end frame, sent after the first error was reported)
    sends: list[tuple[str, int, int, bool]] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)


def frames_of(turn: str, first: int, end: int) -> bytes:
    return TURNS[turn][first * FRAME_BYTES : end * FRAME_BYTES]


def make_script(cell: Cell, srv: Any, trace: Trace) -> Callable[[ItTester], Any]:
    async def script(t: ItTester) -> None:
        for step in cell.plan:
            kind = step[0]
            errored = bool(t.errors())
            if kind == "send":
                _, turn, first, end = step
                trace.sends.append((turn, first, end, errored))
                await t.send_audio(frames_of(turn, first, end))
            elif kind == "finalize":
                trace.finalized.append(step[1])
                await t.finalize(f"f{step[1]}", bound_s=cell.finalize_bound_s)
            elif kind == "wait_error":
                await t.wait_for("error", timeout=5)
            elif kind == "wait_idle":
                record = await srv.wait_for_connection(step[1], timeout=5)
                await srv.acall(asyncio.wait_for(record.session_over.wait(), 5))
                assert record.session_end == "idle", record.session_end
            else:  # pragma: no cover - a typo in a plan
                raise AssertionError(f"unknown step {step}")

    return script


# ---------------------------------------------------------------------- the checks


def sent_indices(trace: Trace, *, after_error_only: bool = False) -> list[int]:
    out: list[int] = []
    for turn, first, end, after in trace.sends:
        if after_error_only and not after:
            continue
        out += indices_of(frames_of(turn, first, end))
    return out


def completed_turn(record: Any) -> bool:
    """The server answered this connection's audio.done, reported no error and
    did not drop the connection (a done queued on an aborted socket never left)."""
    types = [e.get("type") for e in record.events_sent]
    return "transcript.done" in types and "error" not in types and record.end != "aborted"


def check_delivery(cell: Cell, trace: Trace, records: list[Any], sent_all: list[int]) -> None:
    """What reached the server, in send order (`sent_all` is every index sent,
    in the order sent; marker indices are unique within it)."""
    order = {index: k for k, index in enumerate(sent_all)}
    assert all(r.marker_errors == 0 for r in records), [r.marker_errors for r in records]
    if cell.delivery == "exactly":
        recognised = [list(r.marker_indices) for r in records]
        flat = [i for run in recognised for i in run]
        assert flat == sent_all, _delivery_diff(sent_all, recognised)
    # Arrivals: every frame the server received, also those a dead session ignored.
    per = [indices_of(bytes(r.audio)) for r in records]
    flat = [i for run in per for i in run]
    assert set(flat) <= set(order), "the server received frames that were never sent"
    for number, run in enumerate(per, 1):
        positions = [order[i] for i in run]
        assert positions == sorted(set(positions)), (
            f"connection {number} got frames twice or out of order"
        )
    if cell.delivery == "exactly":
        assert flat == sent_all, _delivery_diff(sent_all, per)
        return
    # A frame reaches a second connection only as part of one contiguous block of
    # what a single earlier connection received that did not complete its turn
    # (the engine re-sending un-finalized audio after a failure: a replay of the
    # tail, or the whole turn). First arrivals are in send order.
    first_seen: dict[int, int] = {}
    firsts: list[int] = []
    for number, run in enumerate(per, 1):
        again = [i for i in run if i in first_seen]
        if again:
            sources = {first_seen[i] for i in again}
            assert len(sources) == 1, f"connection {number} re-received frames of {sources}"
            source = sources.pop()
            source_run = per[source - 1]
            k = source_run.index(again[0])
            assert source_run[k : k + len(again)] == again, (
                f"connection {number} re-received a non-contiguous part of connection "
                f"{source}'s frames: {again[:10]}..."
            )
            # A repair (issue #12: a turn whose done had not come by half the finalize
            # timeout is transcribed again on a connection of its own, and only that
            # one's results count) gets nothing but the re-sent tail and audio.done,
            # even if the slow connection answers after all.
            repair = len(again) == len(run) and records[number - 1].audio_done_received
            assert repair or not completed_turn(records[source - 1]), (
                f"connection {number} re-received frames of connection {source}, "
                "whose turn had completed: duplicated audio"
            )
        for i in run:
            if i not in first_seen:
                first_seen[i] = number
                firsts.append(order[i])
    # Within a turn, first arrivals keep the send order. Across turns they need
    # not: a turn whose connection failed while draining may be re-sent on a
    # connection of its own after the next turn started (its results still come
    # out in order, which check_results verifies).
    turn_of = {
        i: turn
        for turn, first, end, _ in trace.sends
        for i in indices_of(frames_of(turn, first, end))
    }
    for turn in dict.fromkeys(turn_of.values()):
        mine = [k for k in firsts if turn_of[sent_all[k]] == turn]
        assert mine == sorted(mine), f"frames of turn {turn} first arrived out of send order"
    must_arrive = (
        sent_all if cell.delivery == "at_least" else sent_indices(trace, after_error_only=True)
    )
    missing = sorted(set(must_arrive) - set(flat))
    assert not missing, (
        f"frames never received: {missing[:20]} ({len(missing)}); {_delivery_diff(sent_all, per)}"
    )


def _delivery_diff(sent: list[int], per: list[list[int]]) -> str:
    got = [i for run in per for i in run]
    missing = sorted(set(sent) - set(got))
    dups = sorted({i for i in got if got.count(i) > 1})
    runs = [(run[0], run[-1], len(run)) if run else () for run in per]
    return f"missing {missing[:20]} ({len(missing)}), duplicated {dups[:20]}; runs {runs}"


def check_errors(cell: Cell, tester: ItTester) -> None:
    errors = tester.errors()
    for e in errors:
        assert e["module"] == "asr" and e["vendor_info"]["vendor"] == "xai", e
        assert e["message"], e
        assert KEY not in str(e), "the API key leaked into an error"
        # The session id is echoed once the extension has seen it; a failure at
        # connect time can come before the first frame's metadata.
        assert e["metadata"].get("session_id") in (SESSION_ID, None), e
    if cell.outcome == "clean":
        assert errors == [], errors
        return
    expected = FATAL if cell.outcome == "fatal" else NON_FATAL
    drops = [e for e in errors if e["message"].startswith("dropped ")]
    if cell.reports_loss:
        assert drops and all(e["code"] == NON_FATAL for e in drops), errors
        errors = [e for e in errors if e not in drops]
    assert [e["code"] for e in errors] == [expected], errors
    [error] = errors
    if cell.vendor_code is not None:
        assert error["vendor_info"]["code"] == cell.vendor_code, error
    if cell.vendor_message is not None:
        assert error["vendor_info"]["message"] == cell.vendor_message, error


def check_statuses(cell: Cell, tester: ItTester) -> None:
    assert tester.stop_requested_at is not None
    before_stop = [
        m.payload
        for m in tester.received
        if m.name == "connection_status_changed" and m.at < tester.stop_requested_at
    ]
    assert_status_chain(before_stop, secrets=[KEY])
    pairs = [(s["last"], s["current"]) for s in before_stop]
    assert pairs[:1] == [("disconnected", "connecting")], pairs
    if cell.outcome == "clean":
        assert all(s["current"] != "disconnected" for s in before_stop), pairs
        return
    down = [i for i, s in enumerate(before_stop) if s["current"] == "disconnected"]
    if cell.status_code is not None:
        assert any(before_stop[i]["code"] == cell.status_code for i in down), (
            f"no disconnected status with code {cell.status_code}: "
            f"{[(s['current'], s['code']) for s in before_stop]}"
        )
    if cell.outcome == "fatal":
        assert before_stop[-1]["current"] == "disconnected", pairs
        first_down = down[0]
        assert all(s["current"] != "connecting" for s in before_stop[first_down + 1 :]), pairs
    else:
        # Back to connected after the last failure (a pre-warm may be under way at stop).
        last_down = down[-1] if down else -1
        assert ("connecting", "connected") in pairs[last_down + 1 :], pairs
        assert before_stop[-1]["current"] in ("connected", "connecting"), pairs


def check_results(cell: Cell, tester: ItTester, fatal_at: int | None) -> None:
    all_finals = finals(tester)
    order = {index: k for k, index in enumerate(indices_of(bytes(tester.sent_audio)))}
    positions = [order[w] for w in final_indices(all_finals)]
    assert positions == sorted(set(positions)), "a word was finalized twice or out of order"
    assert_finals_ordered(all_finals)
    assert_word_times(all_finals, bytes(tester.sent_audio))
    for r in tester.messages("asr_result"):
        assert r["language"] == "en-US" and r["metadata"]["session_id"] == SESSION_ID, r
    # Turn by turn (a turn's frames have their own index range).
    speech = {turn: speech_indices_of(audio) for turn, audio in TURNS.items()}
    turn_of = {i: turn for turn, indices in speech.items() for i in indices}
    per_turn: dict[str, list[int]] = {turn: [] for turn in TURNS}
    for word in final_indices(all_finals):
        per_turn[turn_of[word]].append(word)
    if cell.outcome == "fatal":
        results_after = [m for m in tester.received[fatal_at or 0 :] if m.name == "asr_result"]
        assert results_after == [], "results after a fatal error"
        return
    # Recovery: the turn after the fault is transcribed exactly; so is every turn
    # the fault did not touch, and their finals come before their finalize ends.
    struck = "B" if cell.phase == "planned" else "A"
    # A failure of a connection that held some of the turn's audio can cost the
    # text the server had not reported yet; one before any audio reached it cannot.
    struck_exact = cell.delivery == "exactly" and cell.phase in ("handshake", "planned")
    struck_turns = {struck, "FLOOD"}
    for turn in ("A", "B", "C"):
        if turn == struck and cell.outcome != "clean" and not struck_exact:
            continue  # a subset, in order: checked above for every word
        assert per_turn[turn] == speech[turn], f"turn {turn}: {per_turn[turn][:8]}..."
        if turn in struck_turns and cell.outcome != "clean":
            # Its finalize may have ended before a connection could take the turn
            # ("no connection in time"): the text then follows the finalize end.
            continue
        end_at = tester.position("asr_finalize_end", lambda p, t=turn: p["finalize_id"] == f"f{t}")
        last_final = max(
            i
            for i, m in enumerate(tester.received)
            if m.name == "asr_result"
            and m.payload["final"]
            and m.payload["text"].split()[:1]
            and turn_of.get(int(m.payload["text"].split()[0])) == turn
        )
        assert last_final < end_at, f"turn {turn}'s final came after its asr_finalize_end"


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_fault_cell(cell: Cell) -> None:
    trace = Trace()
    with marker_server() as srv:
        srv.set_fault(cell.connection, cell.server_fault)
        props = fast_props(srv.url, params={"api_key": KEY}, standby=False)
        if cell.finalize_timeout_ms is not None:
            props["finalize_timeout_ms"] = cell.finalize_timeout_ms
        if cell.phase in ("finalize", "planned"):
            # Faults of the audio.done lifecycle: the answer to audio.done and the
            # connection each turn opens after it (finalize on an open connection has
            # neither: tests/test_engine_finalize_mode.py has its faults).
            props["finalize_mode"] = "audio_done"
        tester = run_it(props, make_script(cell, srv, trace), timeout_s=40)
        # A connection left open fails the cell, after the other checks have run.
        left_open: AssertionError | None = None
        try:
            records = wait_all_ended(srv, timeout=5)
        except AssertionError as exc:
            left_open = exc
            records = snapshot(srv)
    try:
        check_cell(cell, tester, trace, records)
    finally:
        if left_open is not None:
            raise left_open


def check_cell(cell: Cell, tester: ItTester, trace: Trace, records: list[Any]) -> None:
    fatal_at = next(
        (
            i
            for i, m in enumerate(tester.received)
            if m.name == "error" and m.payload["code"] == FATAL
        ),
        None,
    )
    check_errors(cell, tester)
    check_statuses(cell, tester)
    check_results(cell, tester, fatal_at)
    ends = [m["finalize_id"] for m in tester.messages("asr_finalize_end")]
    assert ends == ["fA", "fB", "fC"], ends
    sent_all = sent_indices(trace)
    if cell.outcome == "fatal":
        # Nothing connects after the refusal; audio sent after it goes nowhere.
        assert len(records) == cell.connection, [r.number for r in records]
        assert records[-1].refused_status == int(cell.vendor_code or 0)
        received = [i for r in records for i in r.marker_indices]
        assert received == (indices_of(TURNS["A"]) if cell.connection == 2 else []), received
        return
    check_delivery(cell, trace, records, sent_all)
    # No reconnect storm: one connection per turn, the pre-warmed one, and the
    # replacement of the failed one.
    assert len(records) <= len(trace.finalized) + 1 + (cell.outcome != "clean"), [
        (r.number, r.refused_status, r.end) for r in records
    ]


def test_matrix_covers_every_fault() -> None:
    """Each injectable fault has at least one cell, and no cell is listed twice."""
    faults = {c.fault for c in CELLS}
    assert {
        "refused-401",
        "refused-403",
        "refused-429",
        "refused-500",
        "refused-503",
        "slow-handshake",
        "no-transcript-created",
        "error-then-silence",
        "error-then-close",
        "close-1001",
        "close-1011",
        "tcp-abort",
        "no-answer-to-audio-done",
        "done-without-close",
        "close-before-done",
        "malformed-frames",
        "server-idle-end",
    } <= faults
    assert any(c.fault.startswith("back-pressure") for c in CELLS)
    ids = [c.id for c in CELLS]
    assert len(ids) == len(set(ids))
    assert {c.phase for c in CELLS} == {"handshake", "streaming", "finalize", "planned"}
    # The README's table lists every cell.
    readme = (Path(__file__).resolve().parent / "README.md").read_text()
    missing = [c.id for c in CELLS if f"`test_fault_cell[{c.id}]`" not in readme]
    assert not missing, f"cells missing from integration_tests/README.md: {missing}"
