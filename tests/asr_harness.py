"""Harness for running xai_asr_python under TEN's extension tester.

Uses only the `ten_runtime` contract API (so it runs on the native runtime
too) plus the project's local STT server, hosted on its own event-loop thread
because `tester.run()` blocks the calling thread.

A test writes a *script*: an async function that drives the extension through
the tester (send audio, finalize, wait for messages) and asserts. The script
runs as a task on the tester's loop; its assertion failures end the run with
that message, and every wait is bounded so nothing can hang.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from stt_server import STTServer
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

ADDON = "xai_asr_python"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
AUDIO_DIR = Path(__file__).resolve().parent.parent / "stt_server" / "audio"

T = TypeVar("T")


def load_config(name: str, **overrides: Any) -> dict[str, Any]:
    """tests/configs/property_<name>.json, with `params` keys overridden."""
    config = json.loads((CONFIG_DIR / f"property_{name}.json").read_text())
    params = overrides.pop("params", {})
    config.update(overrides)
    config.setdefault("params", {}).update(params)
    return config


class ServerThread:
    """An STTServer running on a private loop thread, usable from any thread."""

    def __init__(self, **server_kwargs: Any) -> None:
        self._kwargs = server_kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stt-server")
        self.server: STTServer | None = None

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.server = STTServer(**self._kwargs)
        self.call(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.server is not None:
                self.call(self.server.stop(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run a coroutine on the server's loop and wait for it (from a plain thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """The same, awaited from another event loop (e.g. a tester script)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def run_sync(self, fn: Callable[[], T]) -> T:
        async def _wrapper() -> T:
            return fn()

        return self.call(_wrapper())

    def set_fault(self, n: int, fault: Any) -> None:
        assert self.server is not None
        server = self.server
        self.run_sync(lambda: server.set_fault(n, fault))

    def set_default_fault(self, fault: Any) -> None:
        assert self.server is not None
        server = self.server
        self.run_sync(lambda: server.set_default_fault(fault))

    def set_api_key(self, key: str | None) -> None:
        assert self.server is not None
        server = self.server
        self.run_sync(lambda: setattr(server, "api_key", key))

    @property
    def connections(self) -> list[Any]:
        assert self.server is not None
        server = self.server
        return self.run_sync(lambda: list(server.connections))

    async def wait_for_connection(self, n: int, timeout: float = 5.0) -> Any:
        assert self.server is not None
        return await self.acall(self.server.wait_for_connection(n, timeout=timeout))

    async def wait_ended(self, n: int, timeout: float = 5.0) -> Any:
        record = await self.wait_for_connection(n, timeout)
        await self.acall(record.wait_ended(timeout=timeout))
        return record


@dataclass
class Received:
    name: str
    payload: dict[str, Any]
    at: float  # time.monotonic() when the tester got it


Script = Callable[["AsrTester"], Awaitable[None]]


class AsrTester(AsyncExtensionTester):
    """Runs one script against the extension and records every data message."""

    def __init__(self, script: Script, script_timeout_s: float) -> None:
        super().__init__()
        self.script = script
        self.script_timeout_s = script_timeout_s
        self.env: AsyncTenEnvTester | None = None
        self.received: list[Received] = []
        self.cmd_results: list[tuple[str, int, str]] = []
        self._arrival: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # -- tester callbacks

    async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
        self.env = ten_env
        if self._arrival is None:
            self._arrival = asyncio.Event()
        # The script runs as its own task so on_start returns at once.
        self._task = asyncio.get_running_loop().create_task(self._run_script())

    async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
        text, err = data.get_property_to_json(None)
        payload = json.loads(text) if err is None and text else {}
        self.received.append(Received(data.get_name(), payload, time.monotonic()))
        if self._arrival is None:
            self._arrival = asyncio.Event()
        self._arrival.set()

    async def on_cmd(self, ten_env: AsyncTenEnvTester, cmd: Cmd) -> None:
        await ten_env.return_result(CmdResult.create(StatusCode.OK, cmd))

    async def _run_script(self) -> None:
        assert self.env is not None
        try:
            await asyncio.wait_for(self.script(self), self.script_timeout_s)
        except AssertionError as exc:
            self._fail(f"assertion failed: {exc}\n{traceback.format_exc()}")
        except asyncio.TimeoutError:
            self._fail(f"script timed out after {self.script_timeout_s} s; {self.summary()}")
        except Exception as exc:  # any other bug in the script or the harness
            self._fail(f"script raised {exc!r}\n{traceback.format_exc()}")
        else:
            self.env.stop_test()

    def _fail(self, message: str) -> None:
        assert self.env is not None
        self.env.stop_test(TenError.create(TenErrorCode.ErrorCodeGeneric, message))

    # -- helpers for scripts

    def messages(self, name: str) -> list[dict[str, Any]]:
        return [m.payload for m in self.received if m.name == name]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for m in self.received:
            counts[m.name] = counts.get(m.name, 0) + 1
        return f"received so far: {counts}; errors: {self.messages('error')}"

    async def wait_for(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda p: True,
        *,
        timeout: float = 10.0,
        start: int = 0,
    ) -> dict[str, Any]:
        """First message `name` matching `predicate`, among those received from
        position `start` on; waits for it (bounded)."""
        deadline = time.monotonic() + timeout
        checked = start
        while True:
            for m in self.received[checked:]:
                if m.name == name and predicate(m.payload):
                    return m.payload
            checked = max(checked, len(self.received))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {name!r} message within {timeout} s; {self.summary()}")
            assert self._arrival is not None
            self._arrival.clear()
            # Messages may have arrived between the scan and clear(): rescan first.
            if len(self.received) > checked:
                continue
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def mark(self) -> int:
        """Position to pass as `start=` to wait only for later messages."""
        return len(self.received)

    async def send_audio(
        self,
        pcm: bytes,
        *,
        chunk_bytes: int = 320,
        metadata: dict[str, Any] | None = None,
        pace_s: float = 0.0,
        sample_rate: int = 16000,
    ) -> None:
        """Send `pcm` as pcm_frame messages of `chunk_bytes` (the last may be shorter).
        `pace_s` > 0 waits that long between frames, to stream in real time."""
        assert self.env is not None
        for offset in range(0, len(pcm), chunk_bytes):
            frame = make_frame(pcm[offset : offset + chunk_bytes], metadata, sample_rate)
            err = await self.env.send_audio_frame(frame)
            assert err is None, f"send_audio_frame failed: {err.error_message()}"
            if pace_s:
                await asyncio.sleep(pace_s)

    async def send_finalize(
        self, finalize_id: str | None, metadata: dict[str, Any] | None = None
    ) -> None:
        assert self.env is not None
        data = Data.create("asr_finalize")
        payload: dict[str, Any] = {"metadata": metadata or {}}
        if finalize_id is not None:
            payload["finalize_id"] = finalize_id
        data.set_property_from_json(None, json.dumps(payload))
        err = await self.env.send_data(data)
        assert err is None, f"send_data failed: {err.error_message()}"

    async def send_data(self, name: str, payload: dict[str, Any] | None = None) -> None:
        assert self.env is not None
        data = Data.create(name)
        if payload is not None:
            data.set_property_from_json(None, json.dumps(payload))
        err = await self.env.send_data(data)
        assert err is None, f"send_data failed: {err.error_message()}"

    async def send_cmd(self, name: str, payload: dict[str, Any] | None = None) -> tuple[int, str]:
        """Send a cmd; returns (status code, detail)."""
        assert self.env is not None
        cmd = Cmd.create(name)
        if payload is not None:
            cmd.set_property_from_json(None, json.dumps(payload))
        result, err = await self.env.send_cmd(cmd)
        assert err is None and result is not None, f"send_cmd {name} failed: {err}"
        detail, _ = result.get_property_string("detail")
        return int(result.get_status_code()), detail or ""


def make_frame(pcm: bytes, metadata: dict[str, Any] | None, sample_rate: int) -> AudioFrame:
    frame = AudioFrame.create("pcm_frame")
    frame.set_property_from_json("metadata", json.dumps(metadata or {"session_id": "123"}))
    if pcm:
        frame.alloc_buf(len(pcm))
        buf = frame.lock_buf()
        buf[:] = pcm
        frame.unlock_buf(buf)
    frame.set_sample_rate(sample_rate)
    frame.set_bytes_per_sample(2)
    frame.set_number_of_channels(1)
    frame.set_samples_per_channel(len(pcm) // 2)
    return frame


def run_asr_test(
    properties: dict[str, Any], script: Script, *, timeout_s: float = 30.0
) -> AsrTester:
    """Run the extension with `properties` under the tester; fail the test with
    the script's message if it failed. Returns the tester (for its records)."""
    tester = AsrTester(script, timeout_s)
    tester.set_test_mode_single(ADDON, json.dumps(properties))
    # The tester's own timeout is the last line of defence behind the script's.
    tester.set_timeout(int((timeout_s + 15) * 1_000_000))
    err = tester.run()
    if err is not None:
        raise AssertionError(err.error_message())
    return tester
