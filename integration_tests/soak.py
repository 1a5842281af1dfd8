"""The randomized fault soak (issue #12): seeded schedules of every fault the local
server can inject, random speech/silence/finalize timing, and a per-frame ledger check.

One seed is one session of the engine (session.py, the part that owns audio and
connections; the extension only adapts TEN messages) against the local server
with the marker recogniser, so every 10 ms frame carries its index and the check
is exact. For every speech frame pushed, exactly one of these must hold when the
session ends: its index is in exactly one final result, or the frame lies in the
audio the session reported lost (AudioLedger spans, each counted in a NON_FATAL
`audio_dropped` error). Besides: finals in order, no duplicate; every finalize
answered exactly once and by its deadline (plus a margin for a loaded machine);
every drop reported; stop() prompt, no task and no socket left.

`run_seed(seed)` is a plain coroutine; integration_tests/test_it_soak.py runs a
fixed set of seeds and `python -m bench.soak --seeds N` many more.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from test_engine_support import Recorder, engine_leftovers, fast_settings, marker, marker_server

from stt_server import Close, ErrorEvent, Fault, Malformed, Outage, Partition
from xai_asr_python.reconnect_manager import BackoffPolicy
from xai_asr_python.session import SessionSettings, StreamingSession

FRAME_BYTES = 320  # 10 ms of 16 kHz PCM
CHUNK_FRAMES = 2  # pushed 20 ms at a time, as a live source does
# Faults are drawn for this many connections (more than any seed opens).
FAULTED_CONNECTIONS = 60
# The margin a finalize's answer may miss its deadline by on a loaded machine.
FINALIZE_MARGIN_S = 1.0
STOP_BOUND_S = 0.5


@dataclass
class SoakResult:
    seed: int
    violations: list[str] = field(default_factory=list)
    summary: str = ""
    plan: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def _after_bytes(rng: random.Random) -> int:
    return rng.randrange(0, 120) * FRAME_BYTES


def random_fault(rng: random.Random) -> Fault:
    """One fault of every kind the server can inject, with a random trigger."""
    kind = rng.choice(
        [
            "refuse",
            "handshake_hang",
            "handshake_slow",
            "no_created",
            "created_late",
            "error_event",
            "error_on_done",
            "close",
            "partition",
            "stall",
            "malformed",
            "done_without_close",
            "no_done",
            "close_before_done",
            "idle_end",
        ]
    )
    code = rng.choice([None, 500, "overloaded"])
    if kind == "refuse":
        return Fault(refuse_status=rng.choice([500, 503, 429]))
    if kind == "handshake_hang":
        return Fault(handshake_delay_ms=800)  # beyond the connect timeout
    if kind == "handshake_slow":
        return Fault(handshake_delay_ms=150)
    if kind == "no_created":
        return Fault(no_created=True)
    if kind == "created_late":
        return Fault(created_delay_ms=200)
    if kind == "error_event":
        then = rng.choice(["stay_open", "close", "continue"])
        return Fault(error_event=ErrorEvent(code=code, after_bytes=_after_bytes(rng), then=then))
    if kind == "error_on_done":
        return Fault(error_event=ErrorEvent(code=code, on_audio_done=True))
    if kind == "close":
        close_code = rng.choice([1000, 1001, 1011, 4000, "abort"])
        return Fault(close=Close(code=close_code, after_bytes=_after_bytes(rng)))
    if kind == "partition":
        for_ms = rng.choice([None, 400])
        return Fault(partition=Partition(after_bytes=_after_bytes(rng), for_ms=for_ms))
    if kind == "stall":
        for_ms = rng.choice([None, 400])
        return Fault(stop_reading_after_bytes=_after_bytes(rng), stop_reading_for_ms=for_ms)
    if kind == "malformed":
        if rng.random() < 0.5:
            return Fault(malformed=Malformed(on_audio_done=True))
        return Fault(malformed=Malformed(after_bytes=_after_bytes(rng)))
    if kind == "done_without_close":
        return Fault(done_without_close=True)
    if kind == "no_done":
        return Fault(ignore_audio_done=True)
    if kind == "close_before_done":
        return Fault(close_before_done=True)
    return Fault(idle_end_after_s=0.3)


def random_wire(rng: random.Random) -> dict[str, Any]:
    """How one connection speaks: the live wire mostly, an older behaviour sometimes
    (tail-only utterance finals, a done that repeats everything or holds the pending
    part, finalize refused or never answered)."""
    wire: dict[str, Any] = {}
    if rng.random() < 0.3:
        wire["utterance_final"] = "tail"
    if rng.random() < 0.3:
        wire["done_text"] = rng.choice(["whole", "pending"])
    if rng.random() < 0.15:
        wire["finalize"] = rng.choice(["refuse", "ignore"])
    return wire


def soak_settings(url: str, rng: random.Random) -> SessionSettings:
    return replace(
        fast_settings(url),
        buffer_max_ms=rng.choice([400, 1500, 60_000]),
        standby=rng.random() < 0.7,
        prewarm=True,
        finalize_timeout_s=1.2,
        connect_timeout_s=0.5,
        backoff=BackoffPolicy(base_s=0.02, cap_s=0.15, max_attempts=100_000),
        healthy_after_s=0.5,
        stall_timeout_s=3.0,  # well above the finalize timeout: liveness, not the stall watchdog
        replay_max_ms=20_000,
        probe_quiet_s=0.3,
        liveness_timeout_s=0.3,
        keepalive_s=1.0,
        endpointing_ms=200,
    )


@dataclass
class _Turn:
    speech: int  # frames
    silence: int  # frames after the speech
    pause_s: float  # real time without audio after the turn
    finalize: bool


def _plan(rng: random.Random) -> list[_Turn]:
    return [
        _Turn(
            speech=rng.randrange(10, 70),
            silence=rng.randrange(20, 60),
            pause_s=rng.choice([0.0, 0.0, 0.2, 0.6, 1.2]),
            finalize=rng.random() < 0.8,
        )
        for _ in range(rng.randrange(3, 7))
    ]


async def run_seed(seed: int, *, log: logging.Logger | None = None) -> SoakResult:
    rng = random.Random(seed)
    # The wire and the finalize mode come from a generator of their own, so that a seed's
    # faults and timing stay what they were before the live wire.
    wire_rng = random.Random(f"wire-{seed}")
    result = SoakResult(seed)
    baseline = set(asyncio.all_tasks())
    async with marker_server() as server:
        faults: dict[int, Fault] = {}
        for number in range(1, FAULTED_CONNECTIONS + 1):
            fault = random_fault(rng) if rng.random() < 0.3 else None
            wire = random_wire(wire_rng)
            if wire:
                fault = replace(fault or Fault(), **wire)
            if fault is not None:
                faults[number] = fault
                server.set_fault(number, fault)
        settings = soak_settings(server.url, rng)
        settings = replace(
            settings, finalize_mode=wire_rng.choice(["auto", "auto", "finalize", "audio_done"])
        )
        turns = _plan(rng)
        outages = [
            (
                rng.uniform(0.0, 2.0),
                Outage(rng.randrange(300, 2500), rng.choice(["refuse", "hang"])),
            )
            for _ in range(rng.choice([0, 1, 1, 2]))
        ]
        result.plan = [
            f"settings: buffer_max_ms={settings.buffer_max_ms} standby={settings.standby} "
            f"finalize_mode={settings.finalize_mode}",
            *(f"connection {n}: {f.describe()}" for n, f in sorted(faults.items())),
            *(f"outage at {t:.2f} s: {o.mode} {o.for_ms} ms" for t, o in outages),
            *(f"turn: {t}" for t in turns),
        ]
        recorder = Recorder()
        session = StreamingSession(settings, recorder, rng=rng.random, logger=log)
        loop = asyncio.get_running_loop()
        started = loop.time()
        outage_tasks = [
            loop.create_task(_outage_at(server, started + at, outage)) for at, outage in outages
        ]
        session.start()
        speech: list[int] = []
        issued: dict[str, float] = {}
        index = 0
        for number, turn in enumerate(turns):
            pattern = [(True, turn.speech), (False, turn.silence)]
            speech.extend(range(index, index + turn.speech))
            data = marker(pattern, index)
            index += turn.speech + turn.silence
            await _push_paced(session, data)
            if turn.finalize or number == len(turns) - 1:
                fid = f"f{number}"
                issued[fid] = time.monotonic()
                session.finalize(fid)
            if turn.pause_s:
                await asyncio.sleep(turn.pause_s)  # real silence: no audio at all
        bound = settings.finalize_timeout_s + FINALIZE_MARGIN_S
        try:
            await recorder.wait_for(
                lambda: len(recorder.finalize_ends) >= len(issued), bound + 1.0, "every finalize"
            )
        except AssertionError as exc:
            result.violations.append(str(exc))
        # Let late results of the last turn settle before stopping (they are bounded
        # by the same deadline).
        for task in outage_tasks:
            task.cancel()
        stop_started = time.monotonic()
        try:
            await asyncio.wait_for(session.stop(), 2.0)
        except asyncio.TimeoutError:
            result.violations.append("stop() did not return within 2 s")
        stop_s = time.monotonic() - stop_started
        if stop_s > STOP_BOUND_S:
            result.violations.append(f"stop took {stop_s:.3f} s")
        if session.tasks:
            result.violations.append(f"tasks left after stop: {sorted(session.tasks)}")
        await asyncio.sleep(0)
        leftovers = engine_leftovers(baseline - set(outage_tasks))
        leftovers = [t for t in leftovers if t not in outage_tasks]
        if leftovers:
            result.violations.append(f"engine tasks left after stop: {leftovers}")
        for record in server.connections:
            try:
                await record.wait_ended(timeout=2.0)
            except asyncio.TimeoutError:
                # A server that reads nothing (a partition, a stall for good) may never
                # see the client's reset (stuck behind unread audio); any other must.
                fault = record.fault
                deaf = record.partitioned_at_bytes is not None or (
                    fault is not None
                    and fault.stop_reading_after_bytes is not None
                    and fault.stop_reading_for_ms is None
                )
                if not deaf:
                    result.violations.append(f"connection {record.number} never ended")
        _check(result, recorder, session, speech, issued, bound)
        stats = session.stats
        result.summary = (
            f"seed {seed}: {len(speech)} speech frames, {len(recorder.final_indices())} "
            f"transcribed, {stats.dropped_ms:.0f} ms dropped in {stats.drop_episodes} "
            f"episode(s), {len(server.connections)} connections, "
            f"{len(recorder.errors)} errors, finalizes "
            f"{dict(Counter(o.status for o in recorder.finalize_ends))}"
        )
    return result


async def _outage_at(server: Any, at: float, outage: Outage) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, at - loop.time()))
    server.begin_outage(outage)


async def _push_paced(session: StreamingSession, data: bytes) -> None:
    """20 ms chunks at twice real time (the source never waits for the engine)."""
    chunk = CHUNK_FRAMES * FRAME_BYTES
    loop = asyncio.get_running_loop()
    started = loop.time()
    for k, offset in enumerate(range(0, len(data), chunk)):
        session.push_audio(data[offset : offset + chunk])
        due = started + (k + 1) * CHUNK_FRAMES * 0.010 / 2
        await asyncio.sleep(max(0.0, due - loop.time()))


def _check(
    result: SoakResult,
    recorder: Recorder,
    session: StreamingSession,
    speech: list[int],
    issued: dict[str, float],
    bound_s: float,
) -> None:
    v = result.violations
    try:
        finals = recorder.final_indices()
    except ValueError:
        v.append(f"a final that is not marker indices: {[t.text for t in recorder.finals]}")
        return
    counts = Counter(finals)
    twice = sorted(i for i, n in counts.items() if n > 1)
    if twice:
        v.append(f"transcribed more than once: {twice[:20]}")
    if finals != sorted(finals):
        v.append("finals out of order")
    spoken = set(speech)
    strangers = sorted(set(finals) - spoken)
    if strangers:
        v.append(f"finals of frames that were silence or never sent: {strangers[:20]}")
    lost = session.ledger.lost_spans_ms

    def reported(i: int) -> bool:
        return any(start < (i + 1) * 10 and i * 10 < end for start, end in lost)

    silent = [i for i in speech if i not in counts and not reported(i)]
    if silent:
        v.append(
            f"{len(silent)} speech frames neither transcribed nor reported lost: {_ranges(silent)}"
        )
    # Every drop reported: the episodes' errors add up to the total.
    dropped_reported = sum(e.dropped_ms or 0 for e in recorder.errors if e.kind == "audio_dropped")
    if abs(dropped_reported - session.stats.dropped_ms) > 0.5:
        v.append(
            f"dropped {session.stats.dropped_ms:.0f} ms but reported {dropped_reported:.0f} ms"
        )
    # A turn is given up only when a repair could not be had (an outage, a refusal, a
    # repair that failed in turn): its loss report follows the repair's failure.
    errors = recorder.errors
    for k, e in enumerate(errors):
        if e.kind == "audio_dropped" and "could transcribe" in e.message:
            before = errors[k - 1].message if k else ""
            if "repair connection" not in before:
                v.append(f"a turn was given up without a repair attempt: {e.message}")
    ends = Counter(o.finalize_id for o in recorder.finalize_ends)
    for fid in issued:
        if ends[fid] != 1:
            v.append(f"finalize {fid} answered {ends[fid]} times")
    for outcome in recorder.finalize_ends:
        if outcome.latency_ms > bound_s * 1000:
            v.append(f"finalize {outcome.finalize_id} answered after {outcome.latency_ms:.0f} ms")
    if any(e.fatal for e in recorder.errors):
        v.append(f"a fatal error: {[e.message for e in recorder.errors if e.fatal]}")


def _ranges(indices: list[int]) -> str:
    out: list[str] = []
    start = prev = indices[0]
    for i in indices[1:]:
        if i != prev + 1:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = i
        prev = i
    out.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(out[:12]) + (" ..." if len(out) > 12 else "")
