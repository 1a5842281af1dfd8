"""Running an extension under TEN's extension tester, lean enough to bench.

The ideas are those of tests/asr_harness.py (a script task on the tester's
loop drives the extension; every wait is bounded), with less work per
message: a bench cannot afford to decode every `asr_result` in the harness,
because that cost would be charged to the extension.

Import this only after `bench._paths.setup()`.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from stt_server import marker
from ten_runtime import (
    AsyncExtensionTester,
    AsyncTenEnvTester,
    AudioFrame,
    Cmd,
    CmdResult,
    Data,
    StatusCode,
    TenError,
    TenErrorCode,
)

EXT_ADDON = "xai_asr_python"
SAMPLE_RATE = 16000
FRAME_BYTES = SAMPLE_RATE // 100 * 2  # 10 ms of 16-bit mono
# Messages whose payload the harness decodes; the rest are only counted and timed.
DECODED = frozenset({"asr_finalize_end", "connection_status_changed", "error"})


def ext_properties(url: str, **overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "finalize_timeout_ms": 2000,
        "params": {
            "api_key": "bench-key",
            "base_url": url,
            "language": "en",
            "sample_rate": SAMPLE_RATE,
            "encoding": "pcm",
            "interim_results": True,
            "endpointing": 300,
        },
    }
    props.update(overrides)
    return props


def marker_frames(pattern: list[tuple[bool, int]]) -> list[bytes]:
    """Marker audio cut into 10 ms frames: frame k carries index k."""
    pcm = marker.generate(pattern, SAMPLE_RATE)
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def make_frame(pcm: bytes) -> AudioFrame:
    frame = AudioFrame.create("pcm_frame")
    frame.set_property_from_json("metadata", '{"session_id": "bench"}')
    frame.alloc_buf(len(pcm))
    buf = frame.lock_buf()
    buf[:] = pcm
    frame.unlock_buf(buf)
    frame.set_sample_rate(SAMPLE_RATE)
    frame.set_bytes_per_sample(2)
    frame.set_number_of_channels(1)
    frame.set_samples_per_channel(len(pcm) // 2)
    return frame


@dataclass
class Received:
    name: str
    at: float
    payload: dict[str, Any] | None


Script = Callable[["BenchTester"], Awaitable[None]]


class BenchTester(AsyncExtensionTester):
    """Runs one script; records (name, arrival time) of every data message."""

    def __init__(self, script: Script, timeout_s: float, decoded: frozenset[str] = DECODED) -> None:
        super().__init__()
        self.script = script
        self.timeout_s = timeout_s
        self.decoded = decoded
        self.env: AsyncTenEnvTester | None = None
        self.received: list[Received] = []
        self.failure: str | None = None
        self._arrival: asyncio.Event | None = None

    async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
        self.env = ten_env
        self._arrival = asyncio.Event()
        asyncio.get_running_loop().create_task(self._run())

    async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
        now = time.monotonic()
        name = data.get_name()
        payload = None
        if name in self.decoded:
            text, err = data.get_property_to_json(None)
            payload = json.loads(text) if err is None and text else {}
        self.received.append(Received(name, now, payload))
        if self._arrival is not None:
            self._arrival.set()

    async def on_cmd(self, ten_env: AsyncTenEnvTester, cmd: Cmd) -> None:
        await ten_env.return_result(CmdResult.create(StatusCode.OK, cmd))

    async def _run(self) -> None:
        assert self.env is not None
        try:
            await asyncio.wait_for(self.script(self), self.timeout_s)
        except Exception as exc:
            self.failure = f"{exc!r}\n{traceback.format_exc()}"
            self.env.stop_test(TenError.create(TenErrorCode.ErrorCodeGeneric, self.failure))
        else:
            self.env.stop_test()

    def count(self, name: str) -> int:
        return sum(1 for m in self.received if m.name == name)

    async def wait_for(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda p: True,
        *,
        timeout: float = 10.0,
        start: int = 0,
    ) -> Received:
        deadline = time.monotonic() + timeout
        checked = start
        assert self._arrival is not None
        while True:
            for m in self.received[checked:]:
                if m.name == name and predicate(m.payload or {}):
                    return m
            checked = max(checked, len(self.received))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = sorted({m.name for m in self.received})
                errors = [m.payload for m in self.received if m.name == "error"]
                raise TimeoutError(f"no {name!r} within {timeout} s (got {names}; {errors})")
            self._arrival.clear()
            if len(self.received) > checked:
                continue
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await self.wait_for(
            "connection_status_changed", lambda p: p.get("current") == "connected", timeout=timeout
        )

    async def send_frame(self, frame: AudioFrame) -> None:
        assert self.env is not None
        err = await self.env.send_audio_frame(frame)
        if err is not None:
            raise RuntimeError(f"send_audio_frame failed: {err.error_message()}")

    async def send_finalize(self, finalize_id: str) -> None:
        assert self.env is not None
        data = Data.create("asr_finalize")
        data.set_property_from_json(
            None, json.dumps({"finalize_id": finalize_id, "metadata": {"session_id": "bench"}})
        )
        err = await self.env.send_data(data)
        if err is not None:
            raise RuntimeError(f"send_data failed: {err.error_message()}")


def run_tester(
    addon: str,
    properties: dict[str, Any],
    script: Script,
    timeout_s: float,
    decoded: frozenset[str] = DECODED,
) -> BenchTester:
    tester = BenchTester(script, timeout_s, decoded)
    tester.set_test_mode_single(addon, json.dumps(properties))
    tester.set_timeout(int((timeout_s + 30) * 1_000_000))
    err = tester.run()
    if err is not None:
        raise RuntimeError(f"tester run failed: {tester.failure or err.error_message()}")
    return tester


async def sleep_until(due: float) -> None:
    delay = due - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class ExtProbe:
    """Arrival times inside xai_asr_python, observed without changing it.

    Wraps three methods of the extension class in this process only (the
    wrappers call the originals first thing, so ordering is unchanged):
    `on_audio_frame` (the n-th call is the n-th frame: the runtime keeps
    each sender's order), `on_data` (asr_finalize arrivals) and
    `handle_finalize_end` (when the engine reports a finalize's end).
    """

    def __init__(self) -> None:
        self.frame_at: list[float] = []
        self.finalize_at: list[float] = []
        self.finalize_end_at: list[float] = []

    def install(self) -> ExtProbe:
        from ten_packages.extension.xai_asr_python.extension import XAIASRExtension

        probe = self
        on_audio_frame = XAIASRExtension.on_audio_frame
        on_data = XAIASRExtension.on_data
        handle_finalize_end = XAIASRExtension.handle_finalize_end

        async def probed_audio_frame(self: Any, ten_env: Any, audio_frame: Any) -> None:
            probe.frame_at.append(time.monotonic())
            await on_audio_frame(self, ten_env, audio_frame)

        async def probed_data(self: Any, ten_env: Any, data: Any) -> None:
            if data.get_name() == "asr_finalize":
                probe.finalize_at.append(time.monotonic())
            await on_data(self, ten_env, data)

        def probed_finalize_end(self: Any, outcome: Any) -> None:
            probe.finalize_end_at.append(time.monotonic())
            handle_finalize_end(self, outcome)

        XAIASRExtension.on_audio_frame = probed_audio_frame  # type: ignore[method-assign]
        XAIASRExtension.on_data = probed_data  # type: ignore[method-assign]
        XAIASRExtension.handle_finalize_end = probed_finalize_end  # type: ignore[method-assign]
        return self


def observing_server(handshake_delay_ms: int = 0, done_delay_ms: int = 0) -> Any:
    """bench/_server.py in its own process (a `common.ServerProcess`)."""
    from bench import common

    return common.ServerProcess(
        [
            "bench._server",
            "--handshake-delay-ms",
            str(handshake_delay_ms),
            "--done-delay-ms",
            str(done_delay_ms),
        ]
    )


def dump_observations(server: Any) -> list[dict[str, Any]]:
    import tempfile
    from pathlib import Path

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        path = Path(tmp.name)
    try:
        answer = server.command(f"dump {path}")
        if answer != "ok":
            raise RuntimeError(f"server dump failed: {answer}")
        return json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)


# The marker recogniser makes one word of every speech-flagged frame. Flagging
# every frame of an utterance would make 100 words a second (partials of up to
# 250 words); the benches flag one frame in WORD_EVERY (4 words a second, about
# the rate of conversational speech) so that results have realistic sizes.
WORD_EVERY = 25


def utterance(frames: int, word_every: int = WORD_EVERY) -> list[tuple[bool, int]]:
    """An utterance of `frames` 10 ms frames: a word (speech frame) every `word_every`."""
    pattern: list[tuple[bool, int]] = []
    for start in range(0, frames, word_every):
        pattern.append((True, 1))
        rest = min(word_every, frames - start) - 1
        if rest:
            pattern.append((False, rest))
    return pattern


def turn_schedule(
    turns: int, speech_frames: int, gap_frames: int
) -> tuple[list[tuple[bool, int]], set[int]]:
    """Utterances each followed by silence; the finalize follows each utterance's
    last frame (while the silence keeps flowing). Returns the marker pattern and
    the indices of the frames after which a finalize is sent."""
    pattern: list[tuple[bool, int]] = []
    finalize_after: set[int] = set()
    position = 0
    for _ in range(turns):
        pattern += [*utterance(speech_frames), (False, gap_frames)]
        finalize_after.add(position + speech_frames - 1)
        position += speech_frames + gap_frames
    return pattern, finalize_after


def ws_connect(url: str) -> Any:
    """A bare websockets client connection to the local server (the benches' floor),
    configured as the engine configures its own: no compression, max_queue 64, no
    proxy from the environment (the `proxy` argument exists from websockets 15)."""
    import inspect

    from websockets.asyncio.client import connect

    kwargs: dict[str, Any] = {}
    if "proxy" in inspect.signature(connect.__init__).parameters:
        kwargs["proxy"] = None
    return connect(
        f"{url}?{ws_query()}",
        additional_headers={"Authorization": "Bearer bench-key"},
        compression=None,
        max_queue=64,
        **kwargs,
    )


def ws_query() -> str:
    return (
        "sample_rate=16000&encoding=pcm&interim_results=true&diarize=false"
        "&multichannel=false&endpointing=300&language=en"
    )
