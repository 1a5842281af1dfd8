"""The streaming session engine: one user audio stream over any number of xAI connections.

The engine knows nothing about TEN. The extension pushes audio and finalizes
into a `StreamingSession` and turns its listener callbacks into TEN messages.

Structure. The engine is a sans-I/O core under a thin asyncio driver, as
websockets and h11 are built:
- session_core.py: `SessionCore`, every state and decision below; events in,
  actions out (engine_io.py), no asyncio, no socket, no clock. It routes each
  event to the room that owns what it touches (supervisor.py, sender.py,
  watch.py, books.py, turns.py, repairs.py); its module docstring draws the
  phases and names each part's room; connection_state.py the roles of a
  connection; delivery.py the order of results.
- this module: `StreamingSession`, the driver. It turns the core's actions
  into websockets calls, tasks and timers, and feeds back what happens (a
  connection opened, an event, a close, a send written, a timer) as events.
  It decides nothing.
- vendor.py: the seam where xAI lives (how a connection opens, what a result
  and a turn's end are, what acknowledges audio, which closes are planned);
  recognition.py speaks to the socket and protocol.py is the wire format.

Ownership (one owner per piece of state):
- the session owns the audio buffer, the connections, the generation counter,
  the pending finalizes and every task it starts;
- a `Recognition` (recognition.py) is ONE connection and is never reused;
- the core's sender (sender.py) is the only sender, one send in flight per connection: frames go
  buffer -> socket in arrival order, a finalize marker takes its place in that order, and a
  frame whose send fails goes back to the head of the buffer;
- each frame has one owner at a time: the buffer (not sent yet, or its send
  failed), a connection's replay window (sent, not yet covered by a final
  result; a draining connection keeps its window until its turn ends), a
  repair connection (see Replay), or no one (transcribed for good, or
  trimmed from the window).

Two ways to end a turn (`finalize_mode`; shared/docs/xai-stt-protocol.md,
"Session model"). With `finalize` (and `auto`, which starts that way) a
finalize's marker reaching the head of the buffer sends xAI's `finalize` on
the current connection, which stays current and takes the audio after it;
the first utterance final that reaches the finalize's cut (the audio sent
before it, 50 ms of rounding allowed: an earlier one is the vendor's own
endpointing) answers it, after its result. Nothing pending (no speech since
the connection's last utterance final, no text held) answers at once. A
refusal (an error event for a client message, the connection staying open)
or no answer by the check point (half the finalize timeout, and a quarter of
it after the send) sends `audio.done` on that connection instead, which then
drains as below and answers every finalize it was sent for; `auto` then ends
every later turn with `audio.done` (one WARN line). A finalize still
unanswered at its deadline on its open connection ends its turn like a drain
that timed out: its interim text before the cut made final, the speech
before the cut past it reported lost, the connection dropped and the audio
after the cut (with any later finalize) sent to a new one, so no result of
the turn comes after its end. When the current connection fails, the
finalizes it was sent go back into the buffer at their cuts, among the
replayed frames, and are sent again to the next connection. New settings
apply at the next connection: with `finalize` the next turn ends with
`audio.done` once, to get one. Standby connections are opened only when
turns end with `audio.done`.

Connections. The *current* connection is the one new audio goes to. After a
finalize (`audio.done`) it becomes *draining*: it gets no more audio, has
until the finalize's deadline to deliver `transcript.done`, and is then
closed by us whether or not the server closed it. (A finalize that was already
answered "no_connection" when its audio.done went out gives its turn a full
finalize timeout, but never past the deadline of a finalize waiting behind
it, whose answer cannot overtake this turn.) The next connection is
opened at once (pre-warmed) unless `prewarm` is off; with `standby` too it is
opened earlier, when the current connection is sent its first speech, and
kept as the *standby* until the finalize (or a planned close) hands over to
it, so the audio after a finalize never waits for a handshake. A standby is
never a new way to fail: one that is refused or fails is logged and the next
turn connects the usual way (that attempt reports and backs off if the
service is really refusing); one the server closed meanwhile is replaced at
the handoff; a failure of the current connection, an idle close, new
settings, giving up and stop() close it. Results are delivered
in order: results of a newer connection are held back until every older
draining connection has finished its turn (done, timeout, failure), so the
final of turn N and its finalize end precede any result of turn N+1.

Planned versus failure. A close after `transcript.done`, an idle close and a
close at stop are planned: no error, no backoff. Anything else (a refused or
timed-out handshake, no `transcript.created`, an `error` event, a close
without done, a failed send, a stall) is a failure: a NON_FATAL `on_error`
with the backoff delay, then a new attempt; a FATAL one when retrying cannot
help (401/403/400/404) or the streak reaches `backoff.max_attempts`.

Status rule (`on_status`): the status describes the *current* connection,
the one that takes new audio. Draining connections do not affect it.
- CONNECTING when an attempt starts; CONNECTED when its `transcript.created`
  arrives; DISCONNECTED when it is gone: failed (code = HTTP status, close
  code or the vendor's numeric code, else 0), closed for idleness (1000),
  finished with prewarm off (1000), given up, or stopped (1000).
- A finalize with prewarm hands over: CONNECTED -> CONNECTING -> CONNECTED
  (the old connection drains in the background; no DISCONNECTED is
  reported, because new audio always has a connection on its way).
- A failure: CONNECTING or CONNECTED -> DISCONNECTED, then CONNECTING after
  the backoff. An idle close or a finalize with prewarm off:
  CONNECTED -> DISCONNECTED (1000), then CONNECTING when audio arrives.
  So the transitions are always legal (`is_legal_transition`) and never from
  a state to itself.

A draining connection that fails (error event, close before done, lost TCP)
or has no done by the deadline is reported as a NON_FATAL error with
`retry_in_s` None: it is not retried and not part of the backoff streak (the
next connection is already there). A failure before the deadline is
repaired when replay is on (see Replay); otherwise, and when no done came by
the deadline, its finalize ends "failed" or "timeout" and its interim text is
made final.

Replay. The protocol has no acknowledgements, but final results are: the
audio up to the end of a connection's latest `is_final` result is
transcribed for good. The current connection keeps in its replay window
(audio_buffer.ReplayWindow) what it was sent after that point, the newest
`replay_max_ms` of it (what falls out counts as `replay_trimmed_ms`; long
silences produce no finals). When the current connection fails (any
failure verdict: error event, close without done, lost TCP, failed send,
stall), its window goes back to the head of the buffer, before any newer
audio and any finalize still waiting, so the next connection hears it
first; that connection's timeline starts at the first replayed frame, so
times stay exact. The failed connection's interim text over the replayed
audio is dropped (it will be transcribed again; emitting it would duplicate
it), its interim words before the replayed audio are made final. When that
failure is the last attempt (fatal), nothing is replayed and the interim
text is made final instead. In multichannel mode the acknowledged point is
the earliest over the channels, and a channel's words before its own latest
final are not delivered again when the audio is replayed for another one.

Repair. A draining connection keeps its window too (its finals during the
drain still acknowledge audio). When it fails before its `transcript.done`
(error event, close without done, lost TCP, including a failure that was
already in flight when `audio.done` went out right behind the last frames),
replay is on and the finalize's deadline has not passed, its turn is
repaired: a separate, short-lived *repair* connection (a new Recognition
with its own generation number; not the current connection, it takes no new
audio and never affects `on_status`, `on_connected`, `on_audio_sent` or the
backoff streak) is opened, sent the window, then `audio.done`, and waited on
for `transcript.done`, all by the original finalize's deadline. Its results
are kept until that done and then become the turn's results, delivered in
the failed connection's place in the order (results of newer connections
stay held until then): its timeline starts at the first replayed frame, so
times stay exact; the failed connection's interim text over the replayed
audio is dropped, its interim words before it are made final; the finalize
ends "done" with `FinalizeOutcome.repaired` True. Transcripts of a repair
carry the repair connection's generation. The failure of the draining
connection is reported when it happens (NON_FATAL); if the repair cannot be
had (refused, even with 401/403: it stays NON_FATAL, the current connection
decides about FATAL), fails, or misses the deadline, that is one more
NON_FATAL error ("repair connection (gen N) failed: ..."), and the turn ends
as before: the failed connection's interim text is made final and the
finalize ends "failed" ("timeout" once the deadline has passed). A repair's
results are all or nothing: none of them is delivered unless its done came.
stop() cancels a repair like any other task (the turn ends "stopped", the
failed connection's interim text made final).

So a failure of the current connection loses no word and duplicates none
within the replay window, and neither does a draining connection's failure
that a repair can answer in time. Still not guaranteed: un-finalized audio
older than `replay_max_ms` (keep it above `stall_timeout_s`, since a silent
stall is found out only after that much speech without an answer; with the
defaults, 20 s and 15 s, all of it is); a draining connection that gives no
`transcript.done` by the deadline without failing first (nothing can be
repaired after the deadline: "timeout", interim text made final); a repair
that does not finish by the deadline (it needs a handshake and the whole
window to be recognised again, so a very short `finalize_timeout_s` may not
leave time) or fails; replayed audio the outage buffer drops
(`buffer_max_ms`, reported like any drop); and whatever is still buffered
when the session gives up.

Liveness. A connection that dies without FIN or RST (a partition, a NAT or
proxy dropping an idle flow, a hung vendor) looks open, and speech sent to it
is lost unless it is found out while that speech is still in its replay
window. So when speech starts on a connection with no sign of life (an event
or a pong) for `probe_quiet_s`, and when a finalize is sent on one, it is
pinged; no pong within `liveness_timeout_s` and it fails ("dead_connection"):
the current connection's window goes to the standby connection at once (no
backoff: it is open; it is probed in turn when speech starts on it) or, with
no standby, to the next connection as after any failure; a draining one is
repaired (see Repair). During a silence the watchdog pings the current
connection every `keepalive_s` (the library keepalive is off: its fixed pong
timeout would kill a healthy connection with a backlog). A probe's timeout
allows for the audio the vendor has not heard yet (`_backlog_s`: what was sent
beyond the vendor's latest event, heard at real time from then). A draining
connection with no transcript.done half-way to its deadline, though it has no
backlog left, is repaired too ("no_done"): alive or dead, it is not answering.
One still hearing a backlog then (a buffer flushed after an outage) is looked
at again when it should have heard it, if that is before the deadline.

Loss. Audio the engine gives up on (the outage buffer's bound, audio still
queued at stop or when the session gives up, a turn that ends without its
done and without a repair: its window past the interim text made final, and
at stop the speech sent after the latest interim of every open turn) goes
to the `AudioLedger`
(audio_buffer.py) through `_lose`, the only way out other than a
transcription; it is reported once per episode (an episode ends when audio
flows to a connection again, a finalize is answered, or the session ends) as a
NON_FATAL `audio_dropped` error saying how much and why, with one WARN line,
and counted in `stats` (dropped_ms, drop_episodes). After a FATAL error it is
only counted: that error already says nothing more will be transcribed.

Timing. `clock` stamps every event the core sees (deadlines, health,
latencies); `rng` draws the backoff jitter (reconnect_manager.py) and `sleep`
waits it out; every other deadline is an event loop timer the core asked for.
A test can inject all three, or drive the core alone on a virtual clock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from fractions import Fraction
from typing import Any

from . import engine_io as io
from .audio_buffer import AudioLedger
from .protocol import Failure
from .recognition import ConnectFailed, SendFailed
from .reconnect_manager import BackoffPolicy
from .session_core import SessionCore
from .session_types import (
    ConnState,
    FinalizeOutcome,
    SessionError,
    SessionListener,
    SessionSettings,
    SessionStats,
    Transcript,
    Word,
    is_legal_transition,
)
from .vendor import XAI, Vendor, VendorConnection

__all__ = [
    "BackoffPolicy",
    "ConnState",
    "FinalizeOutcome",
    "SessionError",
    "SessionListener",
    "SessionSettings",
    "SessionStats",
    "StreamingSession",
    "Transcript",
    "Word",
    "is_legal_transition",
]

# stop() waits at most this long for cancelled tasks to unwind (they unwind in one loop turn).
STOP_TASK_TIMEOUT_S = 0.5
# A sender lets other tasks run at least this often during a long flush.
PUMP_YIELD_EVERY_S = 0.005


class _Writer:
    """The sends of one connection, in order; the core keeps at most one in flight."""

    __slots__ = ("busy", "queue", "rec")

    def __init__(self, rec: VendorConnection) -> None:
        self.rec = rec
        self.queue: deque[io.Send | io.SendEndOfAudio | io.SendFinalize] = deque()
        self.busy = False  # a task (a sender, or a caller of push_audio_and_send) drains it


class StreamingSession:
    """The asyncio driver of a `SessionCore`: it carries out the core's actions and feeds
    back what happens. The public API is the engine's."""

    def __init__(
        self,
        settings: SessionSettings,
        listener: SessionListener,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        logger: logging.Logger | None = None,
        vendor: Vendor = XAI,
    ) -> None:
        self._listener = listener
        self._calls: dict[str, Callable[..., None]] = {}  # its methods, looked up once
        self._clock = clock
        self._sleep = sleep
        self._vendor = vendor
        self._log = logger or logging.getLogger("xai_asr_python.session")
        self._core = SessionCore(settings, vendor=vendor, rng=rng, logger=self._log, now=clock())
        self._recs: dict[int, VendorConnection] = {}  # every socket not known to be gone
        self._opening: dict[int, asyncio.Task[None]] = {}  # handshakes under way
        self._closing: set[VendorConnection] = set()  # closed politely in the background
        self._writers: dict[int, _Writer] = {}
        self._timers: dict[io.TimerKey, asyncio.TimerHandle | asyncio.Task[None]] = {}
        self._unarmed: dict[io.TimerKey, float] = {}  # asked for before the loop ran
        self._tasks: set[asyncio.Task[Any]] = set()
        # push_audio_and_send: a send to an idle connection is made by the caller.
        self._caller_may_send = False
        self._caller_writer: _Writer | None = None
        self._stopping = False
        self._stop_finished = asyncio.Event()
        self._carry_out: dict[type, Callable[[Any], None]] = {
            io.Notify: self._notify,
            io.Send: self._send,
            io.SendEndOfAudio: self._send,
            io.SendFinalize: self._send,
            io.Open: self._open,
            io.Close: self._close,
            io.Abort: self._abort,
            io.Probe: self._probe,
            io.SetTimer: self._set_timer,
            io.CancelTimer: self._cancel_timer,
            io.Defer: self._defer,
        }

    # ================================================================ public API

    def start(self) -> None:
        """Begin connecting in tracked background tasks; returns at once.

        Idempotent while running; a no-op after stop(). After a fatal error it
        starts over with a fresh retry streak (e.g. after update_settings with
        a new key).
        """
        self._feed(io.Start(self._clock()))
        for key, at in list(self._unarmed.items()):
            self._set_timer(io.SetTimer(key, at))  # finalized before the event loop ran

    def push_audio(self, chunk: bytes) -> None:
        """Queue audio for the socket; never blocks. Buffered while not connected."""
        try:
            actions = self._core.audio_pushed(self._clock(), chunk)
        except Exception as exc:
            actions = self._crashed(exc)
        self._dispatch(actions)

    async def push_audio_and_send(self, chunk: bytes) -> None:
        """`push_audio`, then, if the connection has no send under way, send from the
        caller's task instead of waking a sender task.

        The chunk takes its place in the order before the first await, exactly as
        with `push_audio`. A live stream then costs one task switch less per frame.
        Sends stay one at a time per connection: while this sends, what else the
        core sends on that connection is queued behind it and sent by this caller.
        """
        try:
            actions = self._core.audio_pushed(self._clock(), chunk)
        except Exception as exc:
            actions = self._crashed(exc)
        if not actions:
            return  # queued: a send is under way, or no connection is up
        if len(actions) == 1 and type(actions[0]) is io.Send:
            # A live stream's every frame: its one send, to an idle connection, made
            # here, as _write would make it, without queueing it first.
            writer = self._writers.get(actions[0].generation)
            if writer is not None and not writer.busy:
                writer.queue.append(actions[0])
                writer.busy = True
                await self._write(writer, from_caller=True)
                return
        self._caller_may_send = True
        try:
            self._dispatch(actions)
        finally:
            self._caller_may_send = False
        writer, self._caller_writer = self._caller_writer, None
        if writer is not None:
            await self._write(writer, from_caller=True)

    def finalize(self, finalize_id: str) -> None:
        """Finalize everything pushed so far; ends in exactly one on_finalize_end, on time."""
        self._feed(io.FinalizeAsked(self._clock(), finalize_id))

    def update_settings(self, settings: SessionSettings) -> None:
        """Takes effect at the next connection (and for audio pushed from now on)."""
        self._feed(io.SettingsChanged(self._clock(), settings))

    async def stop(self) -> None:
        """Cancel every task and drop every socket; pending finalizes end "stopped"."""
        if self._stopping:
            await self._stop_finished.wait()
            return
        self._stopping = True
        # The core aborts every connection it knows and gives its last reports.
        self._feed(io.StopAsked(self._clock()))
        recs = [*self._recs.values(), *self._closing]
        for rec in recs:
            rec.abort()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._unarmed.clear()
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TASK_TIMEOUT_S)
            if pending:
                names = ", ".join(sorted(t.get_name() for t in pending))
                self._log.error("stop: tasks still running after cancel: %s", names)
        # A task that swallowed its cancel (wait_for on Python < 3.12) may have opened
        # a socket meanwhile: sweep again, so nothing outlives stop().
        late = [rec for rec in [*self._recs.values(), *self._closing] if rec not in recs]
        for rec in late:
            rec.abort()
        recs.extend(late)
        for task in [t for t in self._tasks if t is not me and not t.done()]:
            task.cancel()
        if recs:
            await asyncio.gather(*(rec.wait_closed(0.1) for rec in recs))
        self._stop_finished.set()

    @property
    def gave_up(self) -> bool:
        """A FATAL error ended the session: it transcribes nothing until start() again."""
        return self._core.gave_up

    @property
    def stats(self) -> SessionStats:
        return self._core.stats

    @property
    def ledger(self) -> AudioLedger:
        """What was lost, where and why (read only)."""
        return self._core.ledger

    @property
    def queued_ms(self) -> Fraction:
        """Audio waiting in the outage buffer."""
        return self._core.queued_ms

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        """The engine's tasks still running (empty after stop)."""
        return frozenset(t for t in self._tasks if not t.done())

    # ================================================================ events in

    def _feed(self, event: io.Event) -> None:
        try:
            actions = self._core.handle(event)
        except Exception as exc:
            actions = self._crashed(exc)
        self._dispatch(actions)

    def _crashed(self, exc: Exception) -> Sequence[io.Action]:
        # A bug must not leave a silent, dead session.
        self._log.exception("session engine failed")
        return self._core.crashed(self._clock(), exc)

    def _dispatch(self, actions: Sequence[io.Action]) -> None:
        carry_out = self._carry_out
        for action in actions:
            carry_out[type(action)](action)

    # ================================================================ actions out

    def _notify(self, action: io.Notify) -> None:
        # A listener's bug must not take the engine down.
        try:
            call = self._calls.get(action.method)
            if call is None:
                call = self._calls[action.method] = getattr(self._listener, action.method)
            call(*action.args)
        except Exception:
            self._log.exception("listener %s raised", action.method)

    def _open(self, action: io.Open) -> None:
        generation = action.generation
        rec = self._vendor.connection(
            generation, action.settings, action.connect_timeout_s, self._log
        )
        self._recs[generation] = rec
        self._opening[generation] = self._spawn(self._connection(rec), f"connection-{generation}")

    async def _connection(self, rec: VendorConnection) -> None:
        """Open `rec`, then read it until it closes, feeding the core what happens."""
        generation = rec.generation
        try:
            try:
                await rec.open()
            except ConnectFailed as exc:
                self._feed(io.OpenFailed(self._clock(), generation, exc.failure))
                return
            finally:
                self._opening.pop(generation, None)
            if self._stopping:
                # On Python < 3.12 wait_for() can swallow a cancel that lands as the
                # handshake completes: nobody owns this socket any more.
                rec.abort()
                return
            vendor_session = getattr(rec, "vendor_session", None)
            self._feed(io.Opened(self._clock(), generation, vendor_session))
            failure: Failure | None = None
            try:
                async for event in rec.events():
                    self._feed(io.Received(self._clock(), generation, event))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.exception("gen %d: reader failed", generation)
                failure = Failure(kind="internal", message=f"reader failed: {exc!r}")
                rec.abort()
            code, reason, sent_code, sent_reason = rec.close_info()
            close = io.CloseInfo(code, reason, sent_code, sent_reason, failure)
            self._feed(io.Closed(self._clock(), generation, close))
        finally:
            if self._recs.get(generation) is rec:
                del self._recs[generation]
            self._writers.pop(generation, None)

    def _send(self, action: io.Send | io.SendEndOfAudio | io.SendFinalize) -> None:
        generation = action.generation
        writer = self._writers.get(generation)
        if writer is None:
            rec = self._recs.get(generation)
            if rec is None:  # gone already: the send cannot be made
                self._feed(io.SendCompleted(self._clock(), generation, False))
                return
            writer = self._writers[generation] = _Writer(rec)
        writer.queue.append(action)
        if writer.busy:
            return
        writer.busy = True
        if self._caller_may_send and self._caller_writer is None:
            self._caller_writer = writer
        else:
            self._spawn(self._write(writer), f"sender-{generation}")

    async def _write(self, writer: _Writer, *, from_caller: bool = False) -> None:
        """Make the queued sends of one connection, feeding back each outcome."""
        rec = writer.rec
        queue = writer.queue
        core = self._core
        handed_off = False
        yielded_at = time.monotonic()
        try:
            while queue:
                action = queue.popleft()
                ok = True
                try:
                    if type(action) is io.Send:
                        await rec.send_audio(action.data)
                    elif type(action) is io.SendFinalize:
                        await rec.send_finalize()
                    else:
                        await rec.send_audio_done()
                except SendFailed:
                    ok = False
                except asyncio.CancelledError:
                    if from_caller and not self._stopping:
                        # The caller was cancelled, not the connection: the frame was
                        # handed to the socket; the rest goes on in a task of our own.
                        self._feed(io.SendCompleted(self._clock(), action.generation, True))
                        if queue:
                            handed_off = True
                            self._spawn(self._write(writer), f"sender-{action.generation}")
                    raise
                try:
                    actions = core.send_completed(self._clock(), action.generation, ok)
                except Exception as exc:
                    actions = self._crashed(exc)
                self._dispatch(actions)
                # A send into a fast socket completes without suspending: a long flush
                # yields now and then, so it cannot starve the readers, the timers and
                # the handshake of the next connection.
                if queue and time.monotonic() - yielded_at >= PUMP_YIELD_EVERY_S:
                    await asyncio.sleep(0)
                    yielded_at = time.monotonic()
        finally:
            if not handed_off:
                writer.busy = False

    def _close(self, action: io.Close) -> None:
        rec = self._recs.get(action.generation)
        if rec is None:
            return
        self._closing.add(rec)

        async def close() -> None:
            try:
                await rec.close(action.reason, timeout_s=action.timeout_s)
            finally:
                self._closing.discard(rec)

        self._spawn(close(), f"close-{action.generation}")

    def _abort(self, action: io.Abort) -> None:
        generation = action.generation
        opening = self._opening.pop(generation, None)
        if opening is not None:
            opening.cancel()  # its open() drops the socket
        rec = self._recs.get(generation)
        if rec is not None:
            rec.abort()

    def _probe(self, action: io.Probe) -> None:
        rec = self._recs.get(action.generation)
        if rec is None:
            self._feed(io.ProbeAnswered(self._clock(), action.generation, None))
            return

        async def probe() -> None:
            alive = await rec.probe(action.timeout_s)
            self._feed(io.ProbeAnswered(self._clock(), action.generation, alive))

        self._spawn(probe(), f"probe-{action.generation}")

    def _set_timer(self, action: io.SetTimer) -> None:
        key = action.key
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._unarmed[key] = action.at  # armed by start()
            return
        self._unarmed.pop(key, None)
        delay_s = max(0.0, action.at - self._clock())
        if key[0] == "backoff":
            # The backoff is waited out with the injected sleep (policy is data).
            self._timers[key] = self._spawn(self._sleep_then_fire(key, delay_s), "backoff")
        else:
            self._timers[key] = loop.call_later(delay_s, self._fire, key)

    async def _sleep_then_fire(self, key: io.TimerKey, delay_s: float) -> None:
        await self._sleep(delay_s)
        self._fire(key)

    def _fire(self, key: io.TimerKey) -> None:
        self._timers.pop(key, None)
        self._feed(io.TimerFired(self._clock(), key))

    def _cancel_timer(self, action: io.CancelTimer) -> None:
        self._unarmed.pop(action.key, None)
        timer = self._timers.pop(action.key, None)
        if timer is not None:
            timer.cancel()

    def _defer(self, action: io.Defer) -> None:
        event = io.DeferredDue(self._clock(), action.generation, action.outcome)
        try:
            asyncio.get_running_loop().call_soon(self._feed, event)
        except RuntimeError:
            self._feed(event)

    # ================================================================ tasks

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"xai-session:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("task %s failed: %r", task.get_name(), task.exception())
