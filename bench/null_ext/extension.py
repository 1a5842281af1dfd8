from __future__ import annotations

import json

from ten_runtime import AsyncExtension, AsyncTenEnv, AudioFrame, Data


class NullASRExtension(AsyncExtension):
    """Receives frames and drops them; answers asr_finalize at once."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.frames = 0

    async def on_audio_frame(self, ten_env: AsyncTenEnv, audio_frame: AudioFrame) -> None:
        self.frames += 1

    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        if data.get_name() != "asr_finalize":
            return
        finalize_id, _ = data.get_property_string("finalize_id")
        end = Data.create("asr_finalize_end")
        end.set_property_from_json(None, json.dumps({"finalize_id": finalize_id or ""}))
        await ten_env.send_data(end)
