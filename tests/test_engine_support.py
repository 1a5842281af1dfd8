"""Shared helpers for the engine's integration tests (no tests in this module).

A recording listener that can be awaited on, settings with small timeouts,
marker audio, and the leak checks every stop test uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from stt_server import STTServer
from stt_server.marker import generate
from xai_asr_python.reconnect_manager import BackoffPolicy
from xai_asr_python.session import (
    ConnState,
    FinalizeOutcome,
    SessionError,
    SessionSettings,
    StreamingSession,
    Transcript,
    is_legal_transition,
)

FRAME_MS = 10
POLL_S = 0.01
BYTES_PER_FRAME_16K = 320
ENGINE_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


@dataclass
class Recorder:
    """A SessionListener that keeps everything, in order, and can be awaited on."""

    events: list[tuple[str, Any]] = field(default_factory=list)
    sent: bytearray = field(default_factory=bytearray)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _add(self, kind: str, value: Any) -> None:
        self.events.append((kind, value))
        self.changed.set()

    def on_transcript(self, t: Transcript) -> None:
        self._add("transcript", t)

    def on_finalize_end(self, outcome: FinalizeOutcome) -> None:
        self._add("finalize_end", outcome)

    def on_error(self, e: SessionError) -> None:
        self._add("error", e)

    def on_status(self, current: ConnState, last: ConnState, code: int, message: str) -> None:
        self._add("status", (current, last, code, message))

    def on_connected(self, generation: int, connect_delay_ms: float) -> None:
        self._add("connected", (generation, connect_delay_ms))

    def on_audio_sent(self, chunk: bytes) -> None:
        self.sent.extend(chunk)
        self._add("sent", len(chunk))

    def on_audio_dropped(self, dropped_ms: float, total_dropped_ms: float) -> None:
        self._add("dropped", (dropped_ms, total_dropped_ms))

    # ------------------------------------------------------------ views

    def of(self, kind: str) -> list[Any]:
        return [value for k, value in self.events if k == kind]

    @property
    def transcripts(self) -> list[Transcript]:
        return self.of("transcript")

    @property
    def finals(self) -> list[Transcript]:
        return [t for t in self.transcripts if t.final]

    @property
    def errors(self) -> list[SessionError]:
        return self.of("error")

    @property
    def finalize_ends(self) -> list[FinalizeOutcome]:
        return self.of("finalize_end")

    @property
    def statuses(self) -> list[tuple[ConnState, ConnState, int, str]]:
        return self.of("status")

    @property
    def state(self) -> ConnState:
        statuses = self.statuses
        return statuses[-1][0] if statuses else ConnState.DISCONNECTED

    def sent_by_generation(self) -> dict[int, bytes]:
        """The audio sent on each connection: sends go to the current connection only,
        which is the one most recently connected."""
        sent: dict[int, bytearray] = {}
        generation = 0
        offset = 0
        for kind, value in self.events:
            if kind == "connected":
                generation = value[0]
            elif kind == "sent":
                sent.setdefault(generation, bytearray()).extend(self.sent[offset : offset + value])
                offset += value
        return {g: bytes(data) for g, data in sent.items()}

    def final_words(self) -> list[str]:
        return [word for t in self.finals for word in t.text.split()]

    def final_indices(self) -> list[int]:
        return [int(word) for word in self.final_words()]

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.changed.clear()
            # Wakes on every callback; the short cap also re-checks conditions on the
            # server's records, which change without a callback.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, POLL_S))

    async def wait_finalized(self, count: int, timeout: float = 5.0) -> None:
        await self.wait_for(
            lambda: len(self.finalize_ends) >= count, timeout, f"{count} finalize end(s)"
        )

    async def wait_state(self, state: ConnState, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.state is state, timeout, f"state {state.value}")

    def assert_legal_statuses(self) -> None:
        last = ConnState.DISCONNECTED
        for current, previous, _, _ in self.statuses:
            assert previous is last, (previous, last)
            assert is_legal_transition(previous, current), (previous, current)
            last = current


CONNECTED, CONNECTING, DISCONNECTED = (
    ConnState.CONNECTED,
    ConnState.CONNECTING,
    ConnState.DISCONNECTED,
)


def status_pairs(recorder: Recorder) -> list[tuple[ConnState, ConnState]]:
    """(last, current) of every status change, in order."""
    return [(last, current) for current, last, _, _ in recorder.statuses]


def assert_words_exact(finals: list[Transcript], channel_offset: int = 0) -> None:
    """Every final word of marker frame i starts at i * 10 ms and lasts 10 ms."""
    assert finals
    for t in finals:
        for word in t.words:
            index = int(word.text) - channel_offset
            assert (word.start_ms, word.duration_ms) == (index * 10, 10), (t, word)
        if t.words:
            assert t.start_ms <= t.words[0].start_ms
            assert t.start_ms + t.duration_ms >= t.words[-1].start_ms + 10
    for earlier, later in itertools.pairwise(finals):
        if earlier.channel == later.channel:
            assert earlier.start_ms + earlier.duration_ms <= later.start_ms, (earlier, later)


def fast_settings(url: str, **overrides: Any) -> SessionSettings:
    """Settings with small timeouts: fault tests end in well under a second each."""
    base = SessionSettings(
        url=url,
        api_key="test-key-0123456789",
        interim_results=True,
        endpointing_ms=200,
        finalize_timeout_s=1.0,
        connect_timeout_s=1.0,
        backoff=BackoffPolicy(base_s=0.01, cap_s=0.05, max_attempts=5),
        healthy_after_s=5.0,
        stall_timeout_s=5.0,
        idle_close_s=30.0,
    )
    return replace(base, **overrides)


def marker(pattern: list[tuple[bool, int]], start_index: int = 0, rate: int = 16000) -> bytes:
    return generate(pattern, sample_rate=rate, start_index=start_index)


def speech(frames: int, start_index: int = 0) -> bytes:
    """`frames` marker speech frames (10 ms each) followed by nothing."""
    return marker([(True, frames)], start_index)


def utterance(start_index: int, speech_frames: int = 30, silence_frames: int = 30) -> bytes:
    """Speech then enough silence for the server's endpointing to end the utterance."""
    return marker([(True, speech_frames), (False, silence_frames)], start_index)


def push_all(session: StreamingSession, data: bytes, chunk_bytes: int = 3200) -> None:
    """Push in chunks of `chunk_bytes` (100 ms of 16 kHz PCM by default)."""
    for offset in range(0, len(data), chunk_bytes):
        session.push_audio(data[offset : offset + chunk_bytes])


def send_all(
    session: StreamingSession, data: bytes, chunk_bytes: int = 320
) -> list[asyncio.Task[None]]:
    """What the extension does: each chunk (10 ms by default) pushed by its own task
    with push_audio_and_send, the tasks started in arrival order as the runtime does."""
    loop = asyncio.get_running_loop()
    return [
        loop.create_task(session.push_audio_and_send(data[offset : offset + chunk_bytes]))
        for offset in range(0, len(data), chunk_bytes)
    ]


def received_indices(server: STTServer) -> list[int]:
    """Every marker index the server received, across all connections, in connection order."""
    return [i for record in server.connections for i in record.marker_indices]


def speech_indices(server: STTServer) -> list[int]:
    return [
        f.index
        for record in server.connections
        for f in record.marker_frames
        if f.ok and f.is_speech and f.index is not None
    ]


@contextlib.asynccontextmanager
async def marker_server(**kwargs: Any) -> AsyncIterator[STTServer]:
    # No server keepalive pings: any keepalive task left after a test is the client's.
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("close_timeout", 0.5)
    async with STTServer(recognizer="marker", **kwargs) as server:
        yield server


def engine_leftovers(baseline: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks started since `baseline` that belong to the engine (or its sockets) and still run."""
    leftovers = []
    for task in asyncio.all_tasks():
        if task in baseline or task.done() or task is asyncio.current_task():
            continue
        coro = task.get_coro()
        code = getattr(coro, "cr_code", None)
        filename = code.co_filename if code is not None else ""
        name = getattr(code, "co_name", "")
        # The engine's modules sit flat at the package root; anything deeper (a
        # virtualenv inside the checkout, as CI makes one) is not the engine.
        if filename and os.path.dirname(os.path.realpath(filename)) == ENGINE_DIR:
            leftovers.append(task)
        elif task.get_name().startswith("xai-session:") or name == "keepalive":
            leftovers.append(task)
    return leftovers


async def assert_clean_stop(
    session: StreamingSession,
    server: STTServer,
    baseline: set[asyncio.Task[Any]],
    bound_s: float = 0.5,
) -> float:
    """stop() is prompt, leaves no engine task, and the server sees every connection end."""
    started = time.monotonic()
    await asyncio.wait_for(session.stop(), 2.0)
    elapsed = time.monotonic() - started
    assert elapsed < bound_s, f"stop took {elapsed:.3f} s"
    assert not session.tasks
    # Cancelled websockets keepalive tasks finish on the next loop turn.
    await asyncio.sleep(0)
    assert engine_leftovers(baseline) == []
    for record in server.connections:
        await record.wait_ended(timeout=2.0)
    return elapsed
