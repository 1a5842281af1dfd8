from __future__ import annotations

import json

from ten_runtime import AsyncExtension, AsyncTenEnv, AudioFrame, Data


class NullASRExtension(AsyncExtension):
    """Receives frames and drops them; answers asr_finalize at once.

    "Receives" is what any extension on the ASR interface must do with a frame:
    take its audio out of the buffer and read its `metadata` (the latest is
    echoed on outputs), both through the runtime's API. What a frame costs up to
    there is the runtime's; whatever an extension does with it is its own.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.frames = 0
        self.last_audio = b""
        self.last_metadata = ""

    async def on_audio_frame(self, ten_env: AsyncTenEnv, audio_frame: AudioFrame) -> None:
        self.frames += 1
        self.last_audio = bytes(audio_frame.get_buf())
        self.last_metadata, _ = audio_frame.get_property_to_json("metadata")

    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        if data.get_name() != "asr_finalize":
            return
        finalize_id, _ = data.get_property_string("finalize_id")
        end = Data.create("asr_finalize_end")
        end.set_property_from_json(None, json.dumps({"finalize_id": finalize_id or ""}))
        await ten_env.send_data(end)
