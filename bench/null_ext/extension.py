from __future__ import annotations

import asyncio
import json
from typing import Any

from ten_runtime import AsyncExtension, AsyncTenEnv, AudioFrame, Data


class NullASRExtension(AsyncExtension):
    """Receives frames and drops them; answers asr_finalize at once.

    "Receives" is what any extension on the ASR interface must do with a frame:
    take its audio out of the buffer and read its `metadata` (the latest is
    echoed on outputs), both through the runtime's API. What a frame costs up to
    there is the runtime's; whatever an extension does with it is its own.

    With the property `forward_url` it also sends every frame, as it came, over one
    bare `websockets` connection to that URL (bench.frame_cost's `forward` variant):
    the least any extension that streams frames to a WebSocket service can cost.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.frames = 0
        self.last_audio = b""
        self.last_metadata = ""
        self.result_words = 0
        self.results = 0
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def on_audio_frame(self, ten_env: AsyncTenEnv, audio_frame: AudioFrame) -> None:
        self.frames += 1
        self.last_audio = bytes(audio_frame.get_buf())
        self.last_metadata, _ = audio_frame.get_property_to_json("metadata")
        if self._ws is not None:
            await self._ws.send(self.last_audio)

    async def on_init(self, ten_env: AsyncTenEnv) -> None:
        # bench.finalize_latency: answer each finalize with a final asr_result of this
        # many words first, so the runtime carries what an extension's answer carries.
        words, err = await ten_env.get_property_int("result_words")
        self.result_words = words if err is None else 0
        url, err = await ten_env.get_property_string("forward_url")
        if err is None and url:
            import inspect

            from websockets.asyncio.client import connect

            # Configured as the bare client of bench.harness.ws_connect.
            extra: dict[str, Any] = {}
            if "proxy" in inspect.signature(connect.__init__).parameters:
                extra["proxy"] = None
            self._ws = await connect(
                url,
                additional_headers={"Authorization": "Bearer bench-key"},
                compression=None,
                max_queue=64,
                **extra,
            )
            self._reader = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        async for _ in self._ws:
            pass

    async def on_stop(self, ten_env: AsyncTenEnv) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()

    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        if data.get_name() != "asr_finalize":
            return
        finalize_id, _ = data.get_property_string("finalize_id")
        if self.result_words:
            result = Data.create("asr_result")
            result.set_property_from_json(None, json.dumps(self._final_result()))
            await ten_env.send_data(result)
        end = Data.create("asr_finalize_end")
        end.set_property_from_json(None, json.dumps({"finalize_id": finalize_id or ""}))
        await ten_env.send_data(end)

    def _final_result(self) -> dict[str, object]:
        """A final asr_result shaped as xai_asr_python's (one word per 10 ms)."""
        self.results += 1
        words = [
            {"word": str(k), "start_ms": 10 * k, "duration_ms": 10, "stable": True}
            for k in range(self.result_words)
        ]
        return {
            "id": f"null-{self.results}",
            "text": " ".join(str(k) for k in range(self.result_words)),
            "final": True,
            "start_ms": 0,
            "duration_ms": 10 * self.result_words,
            "language": "en-US",
            "words": words,
            "metadata": {
                "session_id": "bench",
                "asr_info": {"vendor": "null", "locked": True, "speech_final": True},
            },
        }
