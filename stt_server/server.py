"""The asyncio WebSocket server: moves bytes and events, applies faults.

Protocol decisions live in protocol.py (handshake validation, events) and
session.py (recognition, utterances); this module only accepts or refuses
upgrades, reads frames, awaits the recogniser, sends events and carries
out the connection's Fault at the moments it names.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import socket
import struct
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from stt_server.faults import Close, ErrorEvent, Fault, Malformed, Outage, Partition
from stt_server.protocol import (
    INVALID_MESSAGE,
    STREAM_TIMED_OUT,
    STT_PATH,
    QueryError,
    SessionConfig,
    created_event,
    error_event,
    parse_query,
    query_lists,
    split_path,
)
from stt_server.recognizers import (
    DEFAULT_VAD_THRESHOLD_DB,
    MarkerChannel,
    RecognizerBackend,
    make_backend,
)
from stt_server.records import REDACTED, ConnectionRecord, redact_headers
from stt_server.session import SessionStyle, STTSession, open_session
from stt_server.wire import OPTION_NAMES, WireOptions, preset

log = logging.getLogger("stt_server")


class _RedactAuthorization(logging.Filter):
    """websockets logs every request header at DEBUG level: never the key."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], REDACTED)
        return True


# The websockets library's own log lines (handshakes, frames). Quiet by
# default: stt_server logs one line per connection start and end itself.
websockets_log = logging.getLogger("stt_server.websockets")
websockets_log.setLevel(logging.WARNING)
websockets_log.addFilter(_RedactAuthorization())

T = TypeVar("T")

# Junk frames for the Malformed fault: what a sloppy server might send.
MALFORMED_FRAMES: dict[str, str | bytes] = {
    "not_json": "this is not JSON {",
    "unknown_type": json.dumps({"type": "transcript.unexpected", "text": "?"}),
    "missing_fields": json.dumps({"type": "transcript.partial"}),
    "binary": b"\x00\x01 binary frame from the server",
}


class _PatientConnection(ServerConnection):
    """A connection whose keepalive blames only a client that has gone silent.

    websockets' own keepalive fails the connection (1011 "keepalive ping
    timeout") when a ping's pong takes longer than ping_timeout. But a pong
    travels behind everything the client sent before it, and this server
    reads audio only as fast as its recogniser takes it: when websockets'
    message queue is full it stops reading the socket. A client sending
    faster than real time (the main job's --fast) then has seconds of audio
    queued in the socket, its pong behind them, and a healthy client was cut
    off as a false alarm (issue 23: a 3-minute file, whisper, a busy
    machine). Here a pong may take as long as it likes while bytes keep
    arriving: the connection fails only when nothing at all has arrived from
    the client for ping_timeout while the server was reading. Time the server
    spends not reading (its own back-pressure) is not the client's silence.
    A client that really went away is still found in ping_interval +
    ping_timeout. (The alternative, keeping the audio in flight small on the
    client side, is not this server's to choose: xAI's clients stream as
    they like.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_arrival = 0.0  # loop time of the latest bytes read
        self._reading_since = 0.0  # loop time back-pressure last ended

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assembler = self.recv_messages
        resume = assembler.resume

        def resumed() -> None:
            self._reading_since = self.loop.time()
            resume()

        assembler.resume = resumed

    def data_received(self, data: bytes) -> None:
        self._last_arrival = self.loop.time()
        super().data_received(data)

    def _client_silent_since(self, ping_sent: float) -> float:
        """Since when the client has been silent while the server was reading."""
        if getattr(self.recv_messages, "paused", False):
            return self.loop.time()  # the server is not reading: no silence counts
        return max(ping_sent, self._last_arrival, self._reading_since)

    async def keepalive(self) -> None:
        assert self.ping_interval is not None
        latency = 0.0
        try:
            while True:
                await asyncio.sleep(max(0.0, self.ping_interval - latency))
                pong_received = await self.ping()
                sent = self.loop.time()
                latency = 0.0
                if self.ping_timeout is None:
                    continue
                while True:
                    deadline = self._client_silent_since(sent) + self.ping_timeout
                    remaining = deadline - self.loop.time()
                    if remaining <= 0:
                        async with self.send_context():
                            self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                        raise AssertionError("send_context() waits for connection_lost()")
                    try:
                        latency = await asyncio.wait_for(asyncio.shield(pong_received), remaining)
                        break
                    except asyncio.TimeoutError:
                        continue  # late, but was the client silent all that time?
        except ConnectionClosed:
            pass  # the connection ended while a pong was awaited: nothing to fail
        except Exception:
            self.logger.error("keepalive ping failed", exc_info=True)


def _wire_option(name: str) -> property:
    """A server-wide wire option, read/write (validated on write)."""

    def get(self: STTServer) -> Any:
        return getattr(self._wire, name)

    def set_(self: STTServer, value: Any) -> None:
        self._wire = dataclasses.replace(self._wire, **{name: value})

    return property(get, set_, doc=f"Server-wide default of the wire option {name}.")


class STTServer:
    """A local xAI-compatible streaming STT server; see stt_server/README.md."""

    utterance_final = _wire_option("utterance_final")
    done_text = _wire_option("done_text")
    finalize = _wire_option("finalize")
    empty_partials = _wire_option("empty_partials")
    flush_on_done = _wire_option("flush_on_done")

    def __init__(
        self,
        recognizer: str = "pocketsphinx",
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        wire: str = "live",
        utterance_final: str | None = None,
        done_text: str | None = None,
        finalize: str | None = None,
        empty_partials: bool | None = None,
        flush_on_done: bool | None = None,
        stream_timeout_s: float | None = None,
        done_delay_ms: int = 0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 1.0,
        vad_threshold_db: float = DEFAULT_VAD_THRESHOLD_DB,
    ) -> None:
        self._wire_name = wire
        self._wire: WireOptions = preset(wire).replace(
            utterance_final=utterance_final,
            done_text=done_text,
            finalize=finalize,
            empty_partials=empty_partials,
            flush_on_done=flush_on_done,
        )
        if stream_timeout_s is not None and not stream_timeout_s > 0:
            raise ValueError("stream_timeout_s must be > 0 (or None)")
        self.stream_timeout_s = stream_timeout_s
        self.recognizer = recognizer
        self.backend: RecognizerBackend = make_backend(
            recognizer, vad_threshold_db=vad_threshold_db
        )
        self.api_key = api_key
        self.host = host
        self.port = port
        self.done_delay_ms = done_delay_ms
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.connections: list[ConnectionRecord] = []
        self._faults: dict[int, Fault] = {}
        self._default_fault: Fault | None = None
        self._fault_source: Callable[[int], Fault | None] | None = None
        self._outage: Outage | None = None
        self._outage_until = 0.0  # loop time
        self._outage_over = asyncio.Event()
        self._arrivals: dict[int, asyncio.Event] = {}
        self._pending: dict[ServerConnection, ConnectionRecord] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._runners: set[_ConnectionRunner] = set()
        self._server: Server | None = None
        self._stopping = asyncio.Event()

    # -- wire options --------------------------------------------------------

    @property
    def wire(self) -> str:
        """The preset the options started from; setting it resets every wire option."""
        return self._wire_name

    @wire.setter
    def wire(self, name: str) -> None:
        self._wire = preset(name)
        self._wire_name = name

    @property
    def wire_options(self) -> WireOptions:
        """Every server-wide wire option at once (read/write)."""
        return self._wire

    @wire_options.setter
    def wire_options(self, options: WireOptions) -> None:
        self._wire = options

    def wire_for(self, fault: Fault | None) -> WireOptions:
        """The wire options of a connection with this fault."""
        if fault is None:
            return self._wire
        base = preset(fault.wire) if fault.wire is not None else self._wire
        return base.replace(**{name: getattr(fault, name) for name in OPTION_NAMES})

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{STT_PATH}"

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("server already started")
        # Model loading blocks for a while: keep the event loop free.
        await asyncio.get_running_loop().run_in_executor(None, self.backend.prepare)
        self._stopping = asyncio.Event()
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            # Its keepalive fails only a client that is silent, not one whose pong
            # waits behind audio this server has not read yet (see the class).
            create_connection=_PatientConnection,
            max_size=2**22,
            # Audio does not compress; permessage-deflate would also hide
            # back-pressure (repetitive test audio shrinks a hundredfold).
            compression=None,
            logger=websockets_log,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("listening on %s (recognizer %s)", self.url, self.recognizer)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        # A connection whose reading is paused cannot finish a closing
        # handshake: abort it now instead of waiting for close_timeout.
        for runner in list(self._runners):
            if runner.reading_paused:
                runner.abort("server stopping")
        server.close(close_connections=True)
        try:
            await asyncio.wait_for(server.wait_closed(), self.close_timeout + 5)
        except asyncio.TimeoutError:
            log.warning("connections did not close in time; aborting them")
            for runner in list(self._runners):
                runner.abort("server stopping")
        watchers = list(self._watchers)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for record in self.connections:
            if not record.ended.is_set():
                record.end = record.end or "stopped"
                record.ended.set()
        log.info("stopped")

    async def __aenter__(self) -> STTServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- test controls -----------------------------------------------------

    def set_fault(self, number: int, fault: Fault | None) -> None:
        """The fault for connection `number` (1-based, arrival order); None removes it."""
        if fault is None:
            self._faults.pop(number, None)
        else:
            self._faults[number] = fault

    def set_default_fault(self, fault: Fault | None) -> None:
        """The fault for every connection without one of its own."""
        self._default_fault = fault

    def set_fault_source(self, source: Callable[[int], Fault | None] | None) -> None:
        """Decide each connection's fault when its upgrade request arrives: `source(number)`
        (for faults planned over a session's time, whichever connection is live then).
        A fault set for the number (set_fault) wins; the default applies when it gives
        None."""
        self._fault_source = source

    def begin_outage(self, outage: Outage) -> None:
        """The service is down from now for `outage.for_ms`: every upgrade request that
        arrives meanwhile is refused, or hangs until the outage is over."""
        log.info("outage: %s for %d ms", outage.mode, outage.for_ms)
        self._outage = outage
        self._outage_until = asyncio.get_running_loop().time() + outage.for_ms / 1000
        self._outage_over = asyncio.Event()

    def end_outage(self) -> None:
        if self._outage is not None:
            log.info("outage over")
        self._outage = None
        self._outage_over.set()

    @property
    def outage_active(self) -> bool:
        if self._outage is None:
            return False
        if asyncio.get_running_loop().time() >= self._outage_until:
            self.end_outage()
            return False
        return True

    async def _during_outage(self, record: ConnectionRecord) -> Outage | None:
        """The outage this upgrade request falls in (a hang has waited it out)."""
        if not self.outage_active:
            return None
        outage = self._outage
        assert outage is not None
        record.outage = outage.mode
        if outage.mode == "refuse":
            return outage
        log.info("connection %d: outage: upgrade left hanging", record.number)
        remaining = self._outage_until - asyncio.get_running_loop().time()
        over = asyncio.ensure_future(self._outage_over.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({over, stopping}, timeout=max(0.0, remaining))
        finally:
            over.cancel()
            stopping.cancel()
        self.outage_active  # noqa: B018 - ends the outage when its time is up
        return outage

    def connection(self, number: int) -> ConnectionRecord:
        if not 1 <= number <= len(self.connections):
            raise KeyError(number)
        return self.connections[number - 1]

    async def wait_for_connection(self, number: int, timeout: float = 5.0) -> ConnectionRecord:
        """Wait until connection `number`'s upgrade request has arrived."""
        arrived = self._arrivals.setdefault(number, asyncio.Event())
        await asyncio.wait_for(arrived.wait(), timeout)
        return self.connections[number - 1]

    # -- handshake ---------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        number = len(self.connections) + 1
        path, query = split_path(request.path)
        fault = self._faults.get(number)
        if fault is None and self._fault_source is not None:
            fault = self._fault_source(number)
        if fault is None:
            fault = self._default_fault
        record = ConnectionRecord(
            number=number,
            path=path,
            query=query,
            headers=redact_headers(list(request.headers.raw_items())),
            fault=fault,
            query_lists=query_lists(request.path),
            wire=self.wire_for(fault),
        )
        self.connections.append(record)
        self._watch_handshake(connection, record)
        record.arrived.set()
        self._arrivals.setdefault(number, asyncio.Event()).set()
        log.debug("connection %d: upgrade request for %s", number, path)

        outage = await self._during_outage(record)
        if record.ended.is_set():
            return None  # the client left while the upgrade hung
        if outage is not None and outage.mode == "refuse":
            return self._refuse(
                connection, record, outage.status, _REFUSAL_TEXT.get(outage.status, "Outage.")
            )
        if fault is not None and fault.handshake_delay_ms:
            log.info(
                "connection %d: fault: handshake delayed %d ms", number, fault.handshake_delay_ms
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.handshake_delay_ms / 1000)
        if record.ended.is_set():
            return None  # the client left while we delayed; nothing to answer
        if self._stopping.is_set():
            return self._refuse(connection, record, 503, "Server is shutting down.")
        if path != STT_PATH:
            return self._refuse(connection, record, 404, f"Not found: {path}")
        if fault is not None and fault.refuse_status is not None:
            log.info("connection %d: fault: refusing with %d", number, fault.refuse_status)
            return self._refuse(
                connection,
                record,
                fault.refuse_status,
                _REFUSAL_TEXT.get(fault.refuse_status, "Refused by fault injection."),
                fault.retry_after,
            )
        if self.api_key is not None and not _authorized(request.headers, self.api_key):
            return self._refuse(connection, record, 401, "Invalid or missing API key.")
        try:
            record.config = parse_query(query, record.query_lists)
        except QueryError as exc:
            return self._refuse(connection, record, 400, str(exc))
        self._pending[connection] = record
        return None

    def _refuse(
        self,
        connection: ServerConnection,
        record: ConnectionRecord,
        status: int,
        text: str,
        retry_after: int | None = None,
    ) -> Response:
        response = connection.respond(status, text + "\n")
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        record.refused_status = status
        record.refused_body = text
        record.end = "refused"
        record.ended.set()
        log.info("connection %d: refused %d: %s", record.number, status, text)
        return response

    def _watch_handshake(self, connection: ServerConnection, record: ConnectionRecord) -> None:
        """End the record of a client that leaves before its connection is handled.

        websockets runs the handler only after a successful upgrade; a client
        that drops TCP during the handshake (or while a fault delays it) would
        otherwise leave a record that never ends.
        """

        async def watch() -> None:
            await connection.wait_closed()
            # Let a handler that was about to start claim the connection first.
            await asyncio.sleep(0)
            if connection in self._pending or (record.config is None and not record.ended.is_set()):
                self._pending.pop(connection, None)
                if not record.ended.is_set():
                    record.end, record.closed_by, record.close_code = "lost", "client", 1006
                    log.info("connection %d: client left during the handshake", record.number)
                    record.ended.set()

        task = asyncio.get_running_loop().create_task(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _handle(self, connection: ServerConnection) -> None:
        record = self._pending.pop(connection, None)
        if record is None:
            return  # the client left before the handler started (see _watch_handshake)
        runner = _ConnectionRunner(self, connection, record)
        self._runners.add(runner)
        try:
            await runner.run()
        finally:
            self._runners.discard(runner)


_REFUSAL_TEXT = {
    401: "Invalid or missing API key.",
    403: "Forbidden.",
    429: "Too many requests.",
    500: "Internal server error.",
    503: "Service unavailable.",
}


def _authorized(headers: Headers, api_key: str) -> bool:
    given = headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode())


class _ConnectionRunner:
    """Runs one accepted WebSocket connection."""

    def __init__(
        self, server: STTServer, connection: ServerConnection, record: ConnectionRecord
    ) -> None:
        self.server = server
        self.connection = connection
        self.record = record
        self.number = record.number
        self.fault = record.fault or Fault()
        assert record.config is not None
        self.config: SessionConfig = record.config
        assert record.wire is not None
        self.wire: WireOptions = record.wire
        self.stream_timeout_s = (
            self.fault.stream_timeout_s
            if self.fault.stream_timeout_s is not None
            else server.stream_timeout_s
        )
        self.done_delay_ms = (
            self.fault.done_delay_ms
            if self.fault.done_delay_ms is not None
            else server.done_delay_ms
        )
        self.loop = asyncio.get_running_loop()
        self.session: STTSession | Any | None = None  # Any: a workers.RemoteSession
        self.executor = (
            ThreadPoolExecutor(1, thread_name_prefix=f"stt-conn-{self.number}")
            if server.backend.runs_in_thread
            else None
        )
        self.tasks: set[asyncio.Task[None]] = set()
        self.created_sent = False
        self.answering = True  # False once the session stopped answering
        self.reading_paused = False
        self.partitioned = False
        self._held_writes: list[tuple[str, bytes]] = []
        self._resume_reading: asyncio.Event | None = None
        self._aborted = False
        self._peer_gone = False  # the client left during a partition
        self._idle_timer: asyncio.TimerHandle | None = None
        self._stream_timer: asyncio.TimerHandle | None = None
        self._normal_rcvbuf = 0
        self._opened_at = 0.0
        self._byte_triggers: list[tuple[int, str, Callable[[], Awaitable[None]]]] = []
        self._warned_early_audio = False
        self._warned_late_audio = False
        # The task running the read loop: a close awaited from it must drain.
        self._reader_task: asyncio.Task[Any] | None = None

    # -- main loop ---------------------------------------------------------

    async def run(self) -> None:
        record, fault = self.record, self.fault
        record.opened = True
        self._opened_at = self.loop.time()
        log.info(
            "connection %d: open (%s)%s",
            self.number,
            _describe_config(self.config),
            f", fault: {fault.describe()}" if record.fault else "",
        )
        try:
            style = SessionStyle(self.wire.utterance_final, self.wire.empty_partials)
            self.session = await self._call(open_session, self.config, self.server.backend, style)
            record.marker_channels = [
                t.recognizer.decoded
                for t in self.session.trackers
                if isinstance(t.recognizer, MarkerChannel)
            ]
            if fault.no_created:
                log.info("connection %d: fault: transcript.created withheld", self.number)
            elif fault.created_delay_ms:
                log.info(
                    "connection %d: fault: transcript.created delayed %d ms",
                    self.number,
                    fault.created_delay_ms,
                )
                self._at_ms(fault.created_delay_ms, "created", self._send_created)
            else:
                await self._send_created()
            # After created, so a fault "right away" comes after it on the wire.
            self._schedule_faults()
            self._arm_idle_timers()
            self._reader_task = asyncio.current_task()
            await self._read_loop()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection %d: internal error", self.number)
            with contextlib.suppress(Exception):
                await self._close_connection(1011, "internal error")
        finally:
            await self._cleanup()

    async def _close_connection(self, code: int, reason: str = "") -> None:
        """Close, reading on while the closing handshake runs.

        A real server keeps reading until the peer's close frame arrives. And
        websockets stops reading from TCP once its message queue is full, so a
        close awaited from the read loop itself would leave the peer's close
        frame stuck behind unread audio until close_timeout expired.
        """
        drain = None
        if asyncio.current_task() is self._reader_task:
            drain = asyncio.get_running_loop().create_task(self._drain_while_closing())
        try:
            await self.connection.close(code, reason)
        finally:
            if drain is not None:
                drain.cancel()
                await asyncio.gather(drain, return_exceptions=True)

    async def _drain_while_closing(self) -> None:
        """Record what still arrives (the record holds every byte received); answer nothing."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = await self.connection.recv()
                if isinstance(message, str):
                    self.record.text_messages.append(message)
                else:
                    self.record.audio.extend(message)
                    self.record.binary_frames += 1

    async def _read_loop(self) -> None:
        while True:
            if self._resume_reading is not None:
                await self._wait_resumed_or_closed(self._resume_reading)
            message = await self.connection.recv()
            if isinstance(message, str):
                await self._on_text(message)
            else:
                await self._on_audio(message)

    async def _cleanup(self) -> None:
        for timer in (self._idle_timer, self._stream_timer):
            if timer is not None:
                timer.cancel()
        current = asyncio.current_task()
        tasks = [t for t in self.tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            # Through the same worker thread, so a decoder is only released
            # after the work still queued on it.
            with contextlib.suppress(Exception):
                await self._call(self.session.close)
        if self.executor is not None:
            self.executor.shutdown(wait=False)
        self._record_end()
        record = self.record
        log.info(
            "connection %d: ended: %s%s%s, %d audio bytes in %d frames, %d events sent%s",
            self.number,
            record.end,
            f" by {record.closed_by}" if record.closed_by else "",
            f" code {record.close_code}" if record.close_code is not None else "",
            len(record.audio),
            record.binary_frames,
            len(record.events_sent),
            (
                f", client error: {record.bytes_before_created} bytes before transcript.created"
                if record.bytes_before_created
                else ""
            ),
        )
        record.ended.set()

    def _record_end(self) -> None:
        record, protocol = self.record, self.connection.protocol
        if self._peer_gone:
            record.end, record.closed_by, record.close_code = "lost", "client", 1006
            return
        if self._aborted:
            record.end, record.closed_by = "aborted", "server"
            return
        received, sent = protocol.close_rcvd, protocol.close_sent
        if received is not None and (sent is None or protocol.close_rcvd_then_sent):
            record.end, record.closed_by = "closed", "client"
            record.close_code, record.close_reason = received.code, received.reason
        elif sent is not None:
            record.end, record.closed_by = "closed", "server"
            record.close_code, record.close_reason = sent.code, sent.reason
        else:
            record.end, record.closed_by = "lost", "client"
            record.close_code = 1006

    # -- incoming ----------------------------------------------------------

    async def _on_text(self, message: str) -> None:
        self.record.text_messages.append(message)
        try:
            payload = json.loads(message)
        except ValueError:
            log.warning("connection %d: client sent a text frame that is not JSON", self.number)
            await self._send_invalid(INVALID_MESSAGE)
            return
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "audio.done":
            await self._on_audio_done()
        elif kind in ("finalize", "Finalize"):
            await self._on_finalize(payload)
        else:
            log.warning("connection %d: client sent an unknown message type %r", self.number, kind)
            await self._send_invalid(INVALID_MESSAGE)

    async def _send_invalid(self, message: str) -> None:
        """A client message the service cannot parse: an error, the connection stays open."""
        if self.answering and not self.record.audio_done_received:
            await self._send(error_event(message))

    async def _on_finalize(self, payload: dict[str, Any]) -> None:
        record = self.record
        record.finalizes_received += 1
        if not self.answering or self.session is None or record.audio_done_received:
            log.info("connection %d: finalize after the session ended: ignored", self.number)
            return
        mode = self.wire.finalize
        if mode == "ignore":
            log.info("connection %d: finalize ignored (finalize=ignore)", self.number)
            return
        if mode == "refuse":
            log.info("connection %d: finalize refused (finalize=refuse)", self.number)
            await self._send(error_event(INVALID_MESSAGE))
            return
        channel = payload.get("channel")
        if channel is not None and (
            not isinstance(channel, int)
            or isinstance(channel, bool)
            or not 0 <= channel < self.config.channels
        ):
            log.warning("connection %d: finalize for channel %r", self.number, channel)
            await self._send_invalid(
                f"Invalid message: channel must be an integer from 0 to {self.config.channels - 1}"
            )
            return
        for event in await self._call(self.session.finalize, channel):
            await self._send(event)

    async def _on_audio(self, data: bytes) -> None:
        record = self.record
        record.audio.extend(data)
        record.binary_frames += 1
        if not self.created_sent:
            record.bytes_before_created += len(data)
            if not self._warned_early_audio:
                self._warned_early_audio = True
                log.warning(
                    "connection %d: client error: audio before transcript.created", self.number
                )
        if self.answering and record.audio_done_received:
            if not self._warned_late_audio:
                self._warned_late_audio = True
                log.warning("connection %d: client sent audio after audio.done", self.number)
        elif self.answering and self.session is not None:
            self._arm_idle_timers()
            for event in await self._call(self.session.feed_audio, data):
                await self._send(event)
        await self._fire_byte_triggers()

    async def _on_audio_done(self) -> None:
        record, fault = self.record, self.fault
        if record.audio_done_received:
            log.warning("connection %d: client sent audio.done twice", self.number)
            return
        record.audio_done_received = True
        if not self.answering or self.session is None:
            return
        if fault.malformed is not None and fault.malformed.on_audio_done:
            await self._send_malformed(fault.malformed)
        if fault.error_event is not None and fault.error_event.on_audio_done:
            await self._send_error(fault.error_event)
            if fault.error_event.then != "continue":
                return
        if fault.ignore_audio_done:
            log.info("connection %d: fault: audio.done ignored", self.number)
            self._stop_answering("ignored_done")
            return
        if fault.close_before_done:
            log.info("connection %d: fault: closing before transcript.done", self.number)
            self._stop_answering("done")
            await self._close_connection(1000)
            return
        events = await self._call(self.session.finish, self.wire.done_text, self.wire.flush_on_done)
        self._stop_answering("done")
        for event in events:
            if event["type"] != "transcript.done":  # the flushed finals come first
                await self._send(event)
        if self.done_delay_ms:
            await self._sleep_unless_closed(self.done_delay_ms / 1000)
        for event in events:
            if event["type"] == "transcript.done":
                await self._send(event)
        if fault.done_without_close:
            log.info("connection %d: fault: transcript.done without close", self.number)
            return
        await self._close_connection(1000)

    # -- outgoing ----------------------------------------------------------

    async def _send(self, event: dict[str, Any]) -> None:
        self.record.events_sent.append(event)
        try:
            await self.connection.send(json.dumps(event))
        except ConnectionClosed:
            # Not sent after all (by identity: an equal event may precede it).
            sent = self.record.events_sent
            for position in range(len(sent) - 1, -1, -1):
                if sent[position] is event:
                    del sent[position]
                    break
            raise

    async def _send_created(self) -> None:
        self.created_sent = True
        self.record.session_id = str(uuid.uuid4())
        await self._send(created_event(self.record.session_id))

    async def _send_error(self, spec: ErrorEvent) -> None:
        log.info(
            "connection %d: fault: error event %r code %r, then %s",
            self.number,
            spec.message,
            spec.code,
            spec.then,
        )
        await self._send(error_event(spec.message, spec.code))
        if spec.then == "continue":
            return
        self._stop_answering("error")
        if spec.then == "close":
            await self._close_connection(spec.close_code, spec.message[:120])

    async def _send_malformed(self, spec: Malformed) -> None:
        log.info("connection %d: fault: malformed frames %s", self.number, ", ".join(spec.kinds))
        for kind in spec.kinds:
            raw = MALFORMED_FRAMES[kind]
            self.record.events_sent.append({"_malformed": kind, "raw": raw})
            await self.connection.send(raw)

    async def _close(self, spec: Close) -> None:
        if spec.abort:
            self.abort("fault")
            return
        log.info("connection %d: fault: closing with %s", self.number, spec.code)
        await self._close_connection(int(spec.code), spec.reason)

    def abort(self, why: str) -> None:
        """Drop the TCP connection without a close frame (the peer sees a reset)."""
        log.info("connection %d: %s: aborting the TCP connection", self.number, why)
        self._aborted = True
        transport = self.connection.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close() sends RST instead of FIN, a real abort.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    # -- faults ------------------------------------------------------------

    def _schedule_faults(self) -> None:
        fault = self.fault
        # Parts without a trigger fire right away (error and junk after created).
        if fault.error_event is not None and not fault.error_event.on_audio_done:
            self._trigger(fault.error_event, "error event", self._send_error, fault.error_event)
        if fault.close is not None:
            self._trigger(fault.close, "close", self._close, fault.close)
        if fault.malformed is not None and not fault.malformed.on_audio_done:
            self._trigger(fault.malformed, "malformed", self._send_malformed, fault.malformed)
        if fault.partition is not None:
            self._trigger(fault.partition, "partition", self._partition, fault.partition)
        if fault.stop_reading_after_bytes is not None:
            self._byte_triggers.append(
                (fault.stop_reading_after_bytes, "stop reading", self._stop_reading)
            )
        self._byte_triggers.sort(key=lambda trigger: trigger[0])

    def _trigger(
        self,
        spec: ErrorEvent | Close | Malformed | Partition,
        name: str,
        action: Callable[[T], Awaitable[None]],
        argument: T,
    ) -> None:
        async def fire() -> None:
            await action(argument)

        if spec.after_bytes is not None:
            self._byte_triggers.append((spec.after_bytes, name, fire))
        else:
            self._at_ms(spec.after_ms or 0, name, fire)

    def _at_ms(self, delay_ms: int, name: str, action: Callable[[], Awaitable[None]]) -> None:
        async def later() -> None:
            remaining = self._opened_at + delay_ms / 1000 - self.loop.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
            try:
                await action()
            except ConnectionClosed:
                pass
            except Exception:
                log.exception("connection %d: fault %s failed", self.number, name)

        task = asyncio.ensure_future(later())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _fire_byte_triggers(self) -> None:
        received = len(self.record.audio)
        while self._byte_triggers and self._byte_triggers[0][0] <= received:
            _, _, action = self._byte_triggers.pop(0)
            await action()

    async def _stop_reading(self) -> None:
        log.info(
            "connection %d: fault: stopped reading after %d bytes%s",
            self.number,
            len(self.record.audio),
            f" for {self.fault.stop_reading_for_ms} ms" if self.fault.stop_reading_for_ms else "",
        )
        self._pause_reading()
        resume = self._resume_reading
        if self.fault.stop_reading_for_ms is not None:

            async def resume_later() -> None:
                resume.set()

            self._at_ms(
                int((self.loop.time() - self._opened_at) * 1000) + self.fault.stop_reading_for_ms,
                "resume reading",
                resume_later,
            )

    async def _partition(self, spec: Partition) -> None:
        """Stop reading and sending, keep TCP open (see faults.Partition)."""
        if self.partitioned:
            return
        log.info(
            "connection %d: fault: partition after %d bytes%s",
            self.number,
            len(self.record.audio),
            f" for {spec.for_ms} ms" if spec.for_ms is not None else "",
        )
        self.partitioned = True
        self.record.partitioned_at_bytes = len(self.record.audio)
        connection = self.connection
        transport = connection.transport
        # Nothing leaves: writes (events, pongs, pings, close frames, FIN) are held.
        held = self._held_writes
        transport.write = lambda data: held.append(("write", bytes(data)))  # type: ignore[method-assign]
        transport.write_eof = lambda: held.append(("eof", b""))  # type: ignore[method-assign]
        if connection.keepalive_task is not None:
            connection.keepalive_task.cancel()
            connection.keepalive_task = None
        # Nothing is read: no ping is answered, and the client's sends block once the
        # socket buffers are full.
        sock = self._pause_reading()
        watcher = asyncio.ensure_future(self._watch_partitioned_peer(sock))
        self.tasks.add(watcher)
        watcher.add_done_callback(self.tasks.discard)
        if spec.for_ms is not None:

            async def heal() -> None:
                self._heal()

            self._at_ms(
                int((self.loop.time() - self._opened_at) * 1000) + spec.for_ms, "heal", heal
            )

    def _pause_reading(self) -> socket.socket | None:
        """Stop reading the socket until `_resume_reading` is set; returns the socket."""
        transport = self.connection.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A small receive buffer makes the client's sends block sooner
            # (restored on resume: it would throttle loopback TCP badly).
            with contextlib.suppress(OSError):
                self._normal_rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        transport.pause_reading()
        self.reading_paused = True
        self._resume_reading = asyncio.Event()
        return sock

    def _heal(self) -> None:
        """The partition is over: what was held back goes out, in order; reading resumes."""
        if not self.partitioned:
            return
        log.info("connection %d: fault: partition healed", self.number)
        self.partitioned = False
        self.record.partition_healed = True
        transport = self.connection.transport
        del transport.write  # type: ignore[method-assign]
        del transport.write_eof  # type: ignore[method-assign]
        held, self._held_writes = self._held_writes, []
        for kind, data in held:
            if transport.is_closing():
                break
            if kind == "write":
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
        self.connection.start_keepalive()
        # Reading resumes here too: the read loop may be parked in recv(), not in
        # _wait_resumed_or_closed (a time-triggered partition).
        resume = self._resume_reading
        self._resume_reading = None
        self.reading_paused = False
        sock = transport.get_extra_info("socket")
        if sock is not None and self._normal_rcvbuf:
            with contextlib.suppress(OSError):
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, max(self._normal_rcvbuf // 2, 65536)
                )
        transport.resume_reading()
        if resume is not None:
            resume.set()

    async def _watch_partitioned_peer(self, sock: socket.socket | None) -> None:
        """A partitioned server reads nothing, so it would never notice the client
        leaving: look at the TCP state instead, and end the connection if it is gone."""
        tcp_info = getattr(socket, "TCP_INFO", None)
        if sock is None or tcp_info is None:
            return
        established = 1  # Linux TCP_ESTABLISHED
        while self.partitioned:
            await asyncio.sleep(0.02)
            try:
                state = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 1)[0]
            except OSError:
                state = 0
            if state != established and self.partitioned:
                log.info("connection %d: the client left during the partition", self.number)
                self._peer_gone = True
                self.abort("partitioned client gone")
                return

    async def _wait_resumed_or_closed(self, resume: asyncio.Event) -> None:
        resumed = asyncio.ensure_future(resume.wait())
        closed = asyncio.ensure_future(self.connection.wait_closed())
        try:
            await asyncio.wait({resumed, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (resumed, closed):
                waiter.cancel()
            await asyncio.gather(resumed, closed, return_exceptions=True)
        if resume.is_set() and self._resume_reading is resume:
            log.info("connection %d: fault: reading resumed", self.number)
            self._resume_reading = None
            self.reading_paused = False
            sock = self.connection.transport.get_extra_info("socket")
            if sock is not None and self._normal_rcvbuf:
                with contextlib.suppress(OSError):
                    # The kernel reports twice the size it was given.
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_RCVBUF, max(self._normal_rcvbuf // 2, 65536)
                    )
            self.connection.transport.resume_reading()

    def _arm_idle_timers(self) -> None:
        """(Re)start the timers that count time without audio."""
        if not self.answering:
            return
        seconds = self.fault.idle_end_after_s
        if seconds is not None:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._idle_timer = self.loop.call_later(seconds, self._idle_expired)
        if self.stream_timeout_s is not None:
            if self._stream_timer is not None:
                self._stream_timer.cancel()
            self._stream_timer = self.loop.call_later(self.stream_timeout_s, self._stream_timed_out)

    def _stream_timed_out(self) -> None:
        if not self.answering:
            return
        log.info(
            "connection %d: stream timed out after %.3g s without audio",
            self.number,
            self.stream_timeout_s,
        )
        self._stop_answering("timeout")

        async def report_and_close() -> None:
            with contextlib.suppress(ConnectionClosed):
                await self._send(error_event(STREAM_TIMED_OUT))
                await self._close_connection(1011, STREAM_TIMED_OUT)

        task = asyncio.ensure_future(report_and_close())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _idle_expired(self) -> None:
        if self.answering:
            log.info(
                "connection %d: fault: session ended after %.3g s without audio",
                self.number,
                self.fault.idle_end_after_s,
            )
            self._stop_answering("idle")

    def _stop_answering(self, why: str) -> None:
        if self.answering:
            self.answering = False
            self.record.session_end = why
            self.record.session_over.set()

    # -- helpers -----------------------------------------------------------

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run recogniser work: in the connection's worker thread if it is heavy."""
        if self.executor is None:
            return function(*args)
        return await self.loop.run_in_executor(self.executor, function, *args)

    async def _sleep_unless_closed(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.connection.wait_closed(), seconds)


def _describe_config(config: SessionConfig) -> str:
    parts = [
        f"{config.sample_rate} Hz",
        config.encoding,
        f"endpointing {config.endpointing_ms} ms",
    ]
    if config.interim_results:
        parts.append("interim")
    if config.multichannel:
        parts.append(f"{config.channels} channels")
    return ", ".join(parts)
