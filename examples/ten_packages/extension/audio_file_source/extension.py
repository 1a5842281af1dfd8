"""Streams an audio file into the graph as pcm_frame messages, then finalizes.

Frames carry `metadata.session_id`, are paced in real time (or `speed` times
faster; 0 = as fast as possible), and the file ends with one `asr_finalize`.
"""

from __future__ import annotations

import asyncio
import json
import time

from ten_runtime import AsyncExtension, AsyncTenEnv, AudioFrame, Data

from .audio_io import AudioInputError, decode


class AudioFileSource(AsyncExtension):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._task: asyncio.Task[None] | None = None

    async def on_start(self, ten_env: AsyncTenEnv) -> None:
        # Stream in a task: on_start must return, or the graph cannot stop.
        self._task = asyncio.get_running_loop().create_task(self._stream(ten_env))

    async def on_stop(self, ten_env: AsyncTenEnv) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _stream(self, ten_env: AsyncTenEnv) -> None:
        path, _ = await ten_env.get_property_string("path")
        raw_rate, _ = await ten_env.get_property_int("raw_sample_rate")
        rate, _ = await ten_env.get_property_int("sample_rate")
        frame_ms, _ = await ten_env.get_property_int("frame_ms")
        speed, err = await ten_env.get_property_float("speed")
        if err is not None:
            speed = 1.0
        session_id, _ = await ten_env.get_property_string("session_id")
        finalize_id, _ = await ten_env.get_property_string("finalize_id")
        rate = rate or 16000
        frame_ms = frame_ms or 20
        try:
            decoded = decode(path, rate, raw_rate or 0)
        except AudioInputError as exc:
            ten_env.log_error(str(exc))
            data = Data.create("source_error")
            data.set_property_string("message", str(exc))
            await ten_env.send_data(data)
            return
        for note in decoded.notes:
            ten_env.log_warn(f"{path}: the {decoded.kind} decoder said: {note}")
        if decoded.ends_early:
            ten_env.log_warn(
                f"{path}: the file ends before its header says: {decoded.seconds:.1f} s "
                f"decoded of the {decoded.declared_seconds:.1f} s it declares"
            )
        pcm = decoded.pcm
        metadata = json.dumps({"session_id": session_id or "demo"})
        frame_bytes = rate * 2 * frame_ms // 1000
        started = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), frame_bytes)):
            chunk = pcm[offset : offset + frame_bytes]
            frame = AudioFrame.create("pcm_frame")
            frame.set_property_from_json("metadata", metadata)
            frame.alloc_buf(len(chunk))
            buf = frame.lock_buf()
            buf[:] = chunk
            frame.unlock_buf(buf)
            frame.set_sample_rate(rate)
            frame.set_bytes_per_sample(2)
            frame.set_number_of_channels(1)
            frame.set_samples_per_channel(len(chunk) // 2)
            frame.set_timestamp(index * frame_ms)
            await ten_env.send_audio_frame(frame)
            if speed > 0:
                # Pace against the start time, so scheduling jitter does not accumulate.
                due = started + (index + 1) * frame_ms / 1000 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        finalize = Data.create("asr_finalize")
        # The finalize's metadata comes back on asr_finalize_end: it tells the
        # end of the graph how much audio this turn had.
        turn_metadata = {**json.loads(metadata), "audio_ms": len(pcm) * 1000 // (rate * 2)}
        finalize.set_property_from_json(
            None, json.dumps({"finalize_id": finalize_id, "metadata": turn_metadata})
        )
        await ten_env.send_data(finalize)
