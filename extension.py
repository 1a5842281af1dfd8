"""The xai_asr_python TEN extension: TEN's ASR interface over the session engine.

This module only adapts. The session engine (session.py) owns the vendor
connections, the audio buffer, reconnects and finalize timing; this class
turns TEN messages into engine calls and engine callbacks into TEN messages
(shared/docs/ten-asr-interface.md): their payloads are built in ten_messages.py,
the turns they belong to are tracked in ten_turns.py, and ten_outbox.py sends them.

Two orderings matter and are kept on purpose:
- Inbound: `on_audio_frame` and `on_data` hand their message to the engine
  before their first `await`. The runtime starts handlers in arrival order,
  so a finalize keeps its place among the audio frames.
- Outbound: engine callbacks are synchronous; their messages go through one
  outbox task (ten_outbox.py) that sends them in the order they were produced,
  so the final result of a turn always precedes its `asr_finalize_end`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any, BinaryIO

from ten_runtime import (
    AsyncExtension,
    AsyncTenEnv,
    AudioFrame,
    Cmd,
    CmdResult,
    Data,
    LogLevel,
    StatusCode,
)

from . import ten_messages as msg
from . import ten_outbox
from .config import ConfigError, XAIASRConfig, parse_config, parse_params_update, redact
from .reconnect_manager import BackoffPolicy
from .session import (
    ConnState,
    FinalizeOutcome,
    SessionError,
    SessionSettings,
    StreamingSession,
    Transcript,
)
from .ten_turns import PendingFinalize, PendingFinalizes, TurnTracker

DUMP_FILE_NAME = "xai_asr_python_in.pcm"
# The extension's own promise to the graph does not depend on the engine
# being bug-free: a finalize is answered at the latest this long after its
# timeout, even if the engine never reports it.
FINALIZE_SAFETY_MARGIN_S = 0.5
# Bound on how long on_stop waits to hand queued messages to the runtime.
OUTBOX_DRAIN_TIMEOUT_S = 1.0


def settings_from_config(config: XAIASRConfig) -> SessionSettings:
    params = config.params
    return SessionSettings(
        url=params.base_url,
        api_key=params.api_key,
        sample_rate=params.sample_rate,
        encoding=params.encoding,
        channels=params.audio_channels,
        language=params.language or None,
        interim_results=params.interim_results,
        endpointing_ms=params.endpointing,
        diarize=params.diarize,
        multichannel=params.multichannel,
        keyterms=tuple(params.keyterm or ()),
        filler_words=params.filler_words,
        smart_turn=params.smart_turn,
        smart_turn_timeout_ms=params.smart_turn_timeout,
        vad_threshold=params.vad_threshold,
        finalize_mode=config.finalize_mode,
        finalize_timeout_s=config.finalize_timeout_ms / 1000,
        buffer_max_ms=config.buffer_max_ms,
        replay_max_ms=config.replay_max_ms,
        prewarm=config.prewarm,
        standby=config.standby,
        connect_timeout_s=config.connect_timeout_ms / 1000,
        backoff=BackoffPolicy(
            base_s=config.reconnect_base_delay_ms / 1000,
            cap_s=config.reconnect_max_delay_ms / 1000,
            max_attempts=config.reconnect_max_attempts,
        ),
        healthy_after_s=config.healthy_after_ms / 1000,
        stall_timeout_s=config.stall_timeout_ms / 1000,
        liveness_timeout_s=config.liveness_timeout_ms / 1000,
        keepalive_s=config.keepalive_ms / 1000,
        idle_close_s=config.idle_close_ms / 1000,
    )


class XAIASRExtension(AsyncExtension):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._env: AsyncTenEnv | None = None
        self._config: XAIASRConfig | None = None
        self._config_error: ConfigError | None = None
        self._session: StreamingSession | None = None
        # Everything the extension sends goes through the outbox, in order (ten_outbox.py).
        self._outbox: ten_outbox.Outbox | None = None
        self._outbox_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._latest_metadata: dict[str, Any] = {}
        self._frame_metadata_json = ""
        # The latest frame whose metadata nobody has read yet. Reading a frame's metadata
        # costs a JSON serialisation in the runtime (about a fifth of a WebSocket send):
        # it is read when an output needs it, not for every frame.
        self._unread_frame: AudioFrame | None = None
        self._finalizes = PendingFinalizes()
        self._turn = TurnTracker()
        self._carry = b""
        self._aligned_for: XAIASRConfig | None = None
        self._frame_bytes = 1
        self._dump: BinaryIO | None = None
        self._bytes_sent = 0
        self._bytes_reported = 0
        self._warned: set[str] = set()
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def on_init(self, ten_env: AsyncTenEnv) -> None:
        # Everything that receives messages exists before init-done: the runtime
        # delivers frames queued until then *before* on_start is called.
        self._env = ten_env
        self._outbox = ten_outbox.Outbox()
        self._outbox_task = self._spawn(self._outbox.run(ten_env, self._warn), "outbox")
        properties, _ = await ten_env.get_property_to_json("")
        try:
            self._config = parse_config(properties or "{}")
        except ConfigError as exc:
            self._config_error = exc
            self._log(LogLevel.ERROR, f"configuration rejected: {exc}")
            error = msg.error(
                fatal=True,
                message=str(exc),
                vendor_code="",
                vendor_message="",
                metadata=self._metadata,
                api_key=self._api_key,
            )
            self._enqueue("error", error)
            return
        self._log(LogLevel.INFO, f"config: {json.dumps(self._config.redacted())}")
        if self._config.dump:
            self._open_dump(self._config.dump_path)
        self._session = StreamingSession(settings_from_config(self._config), _Listener(self))

    async def on_start(self, ten_env: AsyncTenEnv) -> None:
        # Returns at once: connecting and retrying happen in tracked tasks, because
        # the runtime does not deliver on_stop until on_start has returned.
        if self._session is None or self._config is None:
            return
        self._spawn(self._run_periodic_metrics(), "metrics")
        if self._config.auto_connect:
            self._session.start()
        else:
            self._log(LogLevel.INFO, "auto_connect is false: waiting for trigger_connect")

    async def on_stop(self, ten_env: AsyncTenEnv) -> None:
        await self._shutdown()

    async def on_deinit(self, ten_env: AsyncTenEnv) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self._session is not None:
            # Pending finalizes end with status "stopped" through the listener.
            await self._session.stop()
        for pending in self._finalizes.all():
            self._answer_finalize(pending, "stopped")
        if self._config is not None and self._session is not None:
            self._emit_send_metrics()
        self._close_dump()
        if self._outbox is not None:
            self._outbox.close()
            if self._outbox_task is not None:
                await asyncio.wait([self._outbox_task], timeout=OUTBOX_DRAIN_TIMEOUT_S)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ------------------------------------------------------------------ inbound

    async def on_audio_frame(self, ten_env: AsyncTenEnv, audio_frame: AudioFrame) -> None:
        # No await before the engine has queued the audio: this keeps arrival order with
        # asr_finalize (push_audio_and_send queues it before its own first await).
        try:
            chunk = bytes(audio_frame.get_buf())
        except SystemError:
            chunk = b""
        self._unread_frame = audio_frame
        if not chunk:
            self._warn_once("empty_frame", "received an empty pcm_frame; ignored")
            return
        if self._session is None:
            self._warn_once("unconfigured", "audio ignored: the configuration was rejected")
            return
        await self._session.push_audio_and_send(self._align(chunk))

    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        name = data.get_name()
        if name == "asr_finalize":
            self._on_finalize(data)
        elif name == "trigger_connect":
            if self._session is not None:
                self._log(LogLevel.INFO, "trigger_connect: connecting")
                self._session.start()
            else:
                self._warn_once("trigger_unconfigured", "trigger_connect ignored: not configured")
        else:
            self._log(LogLevel.WARN, f"unknown data message {name!r} ignored")

    async def on_cmd(self, ten_env: AsyncTenEnv, cmd: Cmd) -> None:
        name = cmd.get_name()
        status, detail = StatusCode.OK, "ok"
        if name == "update_configs":
            status, detail = self._update_configs(cmd)
        else:
            self._log(LogLevel.WARN, f"cmd {name!r} is not one this extension handles: answered OK")
        result = CmdResult.create(status, cmd)
        result.set_property_string("detail", detail)
        # Every cmd gets exactly one final result, so no sender waits for a path timeout.
        await ten_env.return_result(result)

    def _on_finalize(self, data: Data) -> None:
        finalize_id, err = data.get_property_string("finalize_id")
        if err is not None or not isinstance(finalize_id, str):
            self._log(LogLevel.WARN, "asr_finalize without a finalize_id: finalizing anyway")
            finalize_id = ""
        metadata_json, err = data.get_property_to_json("metadata")
        if err is None and metadata_json:
            self._unread_frame = None  # older than the finalize's own
            self._remember_metadata(metadata_json, source="asr_finalize")
            self._frame_metadata_json = ""  # the next frame's metadata is the latest again
        pending = PendingFinalize(finalize_id, dict(self._metadata), time.monotonic())
        key = self._finalizes.add(pending)
        if self._session is None or self._config is None:
            # Nothing to finalize against, and nothing will come: answer now.
            self._answer_finalize(pending, "no_connection")
            return
        if self._carry:
            self._log(LogLevel.WARN, f"dropping {len(self._carry)} byte(s) of a partial sample")
            self._carry = b""
        loop = asyncio.get_running_loop()
        pending.safety_timer = loop.call_later(
            self._config.finalize_timeout_ms / 1000 + FINALIZE_SAFETY_MARGIN_S,
            self._finalize_safety_net,
            key,
        )
        self._session.finalize(key)

    def _finalize_safety_net(self, key: str) -> None:
        pending = self._finalizes.get(key)
        if pending is not None and not pending.answered:
            self._log(LogLevel.ERROR, "finalize not reported by the engine in time; answering")
            self._answer_finalize(pending, "timeout")

    def _update_configs(self, cmd: Cmd) -> tuple[StatusCode, str]:
        if self._config is None or self._session is None:
            return StatusCode.ERROR, f"not configured: {self._config_error}"
        params_json, err = cmd.get_property_to_json("params")
        if err is not None:
            return StatusCode.ERROR, "update_configs needs a params object"
        try:
            params = parse_params_update(self._config.params, json.loads(params_json))
        except (ConfigError, json.JSONDecodeError) as exc:
            message = redact(str(exc), self._config.params.api_key)
            self._log(LogLevel.WARN, f"update_configs rejected: {message}")
            return StatusCode.ERROR, message
        self._config = self._config.model_copy(update={"params": params})
        self._session.update_settings(settings_from_config(self._config))
        self._log(LogLevel.INFO, "update_configs accepted: applies at the next connection")
        return StatusCode.OK, "applies at the next connection"

    @property
    def _metadata(self) -> dict[str, Any]:
        """The latest metadata the graph sent (a frame's or a finalize's), echoed on outputs."""
        frame = self._unread_frame
        if frame is not None:
            self._unread_frame = None
            metadata_json, err = frame.get_property_to_json("metadata")
            # Graphs send the same metadata with every frame: parse it only when it changes.
            if err is None and metadata_json and metadata_json != self._frame_metadata_json:
                self._frame_metadata_json = metadata_json
                self._remember_metadata(metadata_json, source="pcm_frame")
        return self._latest_metadata

    def _remember_metadata(self, metadata_json: str, source: str) -> None:
        try:
            metadata = json.loads(metadata_json)
        except json.JSONDecodeError:
            metadata = None
        if not isinstance(metadata, dict):
            self._warn_once(f"metadata:{source}", f"{source} metadata is not an object; ignored")
            return
        self._latest_metadata = metadata

    def _align(self, chunk: bytes) -> bytes:
        """Keep whole samples: a frame that ends mid-sample lends its tail to the next."""
        config = self._config
        assert config is not None
        if config is not self._aligned_for:  # per frame: read the config once per change
            self._aligned_for = config
            self._frame_bytes = config.params.bytes_per_sample * config.params.audio_channels
        frame_bytes = self._frame_bytes
        if self._carry:
            chunk = self._carry + chunk
            self._carry = b""
        elif not len(chunk) % frame_bytes:
            return chunk
        usable = len(chunk) - len(chunk) % frame_bytes
        if usable != len(chunk):
            self._warn_once(
                "odd_frame",
                f"pcm_frame of {len(chunk)} bytes is not a whole number of "
                f"{frame_bytes}-byte samples; the tail is carried to the next frame",
            )
            self._carry = chunk[usable:]
        return chunk[:usable]

    # ------------------------------------------------------------------ engine callbacks

    def handle_transcript(self, t: Transcript) -> None:
        now = time.monotonic()
        ttfw = self._turn.ttfw_ms(now)
        if ttfw is not None:
            self._emit_metrics({"ttfw": ttfw})
        if t.final:
            # It completes the turn of the oldest finalize not answered yet.
            pending = self._finalizes.oldest_unanswered()
            if pending is not None and not pending.final_sent:
                pending.final_sent = True
                self._report_ttlw(pending, now)
        self._send_result(t, self._metadata)

    def _send_result(self, t: Transcript, metadata: dict[str, Any], **asr_info_extra: Any) -> None:
        """An asr_result for `t`; a final one ends its turn (the next result, a new id)."""
        result_id = self._turn.result_id(t)
        language = self._config.language if self._config else ""
        self._enqueue(
            "asr_result", msg.asr_result(t, result_id, language, metadata, **asr_info_extra)
        )
        self._turn.result_sent(t)

    def _report_ttlw(self, pending: PendingFinalize, now: float) -> None:
        ttlw = round((now - pending.received_at) * 1000)
        # In order with the results, so it reaches the graph before the turn's
        # asr_finalize_end: a graph that stops at the end still has its ttlw.
        self._emit_metrics({"ttlw": ttlw}, metadata=pending.metadata, lane=ten_outbox.MESSAGES)

    def handle_finalize_end(self, outcome: FinalizeOutcome) -> None:
        pending = self._finalizes.get(outcome.finalize_id)
        if pending is None:
            return
        if pending.answered:
            self._log(LogLevel.WARN, f"finalize {pending.finalize_id!r} ended after its answer")
            return
        self._answer_finalize(pending, outcome.status, outcome.position_ms)

    def _answer_finalize(
        self,
        pending: PendingFinalize,
        status: str,
        position_ms: int | None = None,
    ) -> None:
        if pending.answered:
            return
        pending.answered = True
        if pending.safety_timer is not None:
            pending.safety_timer.cancel()
        if status != "done":
            self._log(LogLevel.WARN, f"finalize {pending.finalize_id!r} ended: {status}")
        # A module that gave up (configuration rejected, or a FATAL error) sends nothing
        # more but finalize ends.
        transcribing = self._session is not None and not self._session.gave_up
        if transcribing and not pending.final_sent:
            # Every finalize is followed by a final result before its asr_finalize_end,
            # as TEN's ASR extensions do: when the turn's text was already final
            # (endpointing got there first) or there was none, an empty one that spans
            # the audio after the turn's last result up to where the finalize cut it.
            pending.final_sent = True
            closing = msg.closing_final(self._turn.results_end_ms, position_ms)
            self._send_result(closing, pending.metadata, finalize_id=pending.finalize_id)
            if status == "done":
                # The vendor's transcript.done confirms the text complete: that is when
                # the graph knows it has the turn's last word.
                self._report_ttlw(pending, time.monotonic())
        self._enqueue("asr_finalize_end", msg.finalize_end(pending.finalize_id, pending.metadata))
        if self._config is not None and self._session is not None and not self._stopping:
            # Report what was sent up to the end of the turn, so the figure a
            # graph sees at a turn boundary is current, not a period old; after
            # the answer, which a user is waiting for and the metrics are not.
            if self._bytes_sent != self._bytes_reported:
                self._emit_send_metrics()
        self._finalizes.forget_answered()

    def handle_error(self, e: SessionError) -> None:
        level = LogLevel.ERROR if e.fatal else LogLevel.WARN
        self._log(level, f"{e.kind}: {e.message} (vendor code {e.vendor_code})")
        self._enqueue("error", msg.session_error(e, self._metadata, self._api_key))
        if e.kind == "audio_dropped" and self._config is not None and self._session is not None:
            self._emit_send_metrics()  # the new drop totals, with the error

    def handle_status(self, current: ConnState, last: ConnState, code: int, message: str) -> None:
        url = self._config.params.base_url if self._config else ""
        status = msg.connection_status(
            current, last, code, message, url=url, metadata=self._metadata, api_key=self._api_key
        )
        self._enqueue("connection_status_changed", status)

    def handle_connected(self, generation: int, connect_delay_ms: float) -> None:
        self._emit_metrics({"connect_delay": round(connect_delay_ms)})

    def handle_audio_sent(self, chunk: bytes) -> None:
        self._turn.audio_sent()
        self._bytes_sent += len(chunk)
        if self._dump is not None:
            self._dump.write(chunk)

    # ------------------------------------------------------------------ outbound

    def _emit_metrics(
        self,
        values: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        lane: int = ten_outbox.METRICS,
    ) -> None:
        payload = msg.metrics(values, self._metadata if metadata is None else metadata)
        self._enqueue("metrics", payload, lane)

    def _emit_send_metrics(self) -> None:
        assert self._config is not None and self._session is not None
        delta = self._bytes_sent - self._bytes_reported
        self._bytes_reported = self._bytes_sent
        stats = self._session.stats
        self._emit_metrics(msg.send_metrics(self._config, self._bytes_sent, delta, stats))

    def _enqueue(self, name: str, payload: dict[str, Any], lane: int = ten_outbox.MESSAGES) -> None:
        if self._outbox is not None:
            self._outbox.put(name, payload, lane)

    async def _run_periodic_metrics(self) -> None:
        assert self._config is not None
        interval = self._config.metrics_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            if self._bytes_sent != self._bytes_reported:
                self._emit_send_metrics()

    # ------------------------------------------------------------------ helpers

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log(LogLevel.ERROR, f"task {task.get_name()} failed: {task.exception()!r}")

    def _open_dump(self, dump_path: str) -> None:
        try:
            os.makedirs(dump_path, exist_ok=True)
            self._dump = open(os.path.join(dump_path, DUMP_FILE_NAME), "wb")
        except OSError as exc:
            self._log(LogLevel.ERROR, f"dump disabled: cannot open {dump_path}: {exc}")

    def _close_dump(self) -> None:
        if self._dump is not None:
            with contextlib.suppress(OSError):
                self._dump.close()
            self._dump = None

    @property
    def _api_key(self) -> str | None:
        return self._config.params.api_key if self._config else None

    def _log(self, level: LogLevel, message: str) -> None:
        if self._env is not None:
            self._env.log(level, redact(message, self._api_key))

    def _warn(self, message: str) -> None:
        self._log(LogLevel.WARN, message)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log(LogLevel.WARN, message)


class _Listener:
    """The engine's listener: forwards each callback to the extension."""

    def __init__(self, extension: XAIASRExtension) -> None:
        self._ext = extension

    def on_transcript(self, t: Transcript) -> None:
        self._ext.handle_transcript(t)

    def on_finalize_end(self, outcome: FinalizeOutcome) -> None:
        self._ext.handle_finalize_end(outcome)

    def on_error(self, e: SessionError) -> None:
        self._ext.handle_error(e)

    def on_status(self, current: ConnState, last: ConnState, code: int, message: str) -> None:
        self._ext.handle_status(current, last, code, message)

    def on_connected(self, generation: int, connect_delay_ms: float) -> None:
        self._ext.handle_connected(generation, connect_delay_ms)

    def on_audio_sent(self, chunk: bytes) -> None:
        self._ext.handle_audio_sent(chunk)

    def on_audio_dropped(self, dropped_ms: float, total_dropped_ms: float) -> None:
        # Called per drop: the session reports each drop episode once, as a NON_FATAL
        # error (handle_error), and the totals go out in the metrics. Nothing to do here.
        pass
