"""``AsyncExtension`` (§4.1): coroutine callbacks, run on the extension loop.

Instances are constructible outside any runtime or event loop (unit tests build
them directly and use mocks for ``ten_env``).  The runtime keeps its own
per-instance state outside the object, so a subclass that forgot
``super().__init__(name)`` still runs (it only lacks ``self.name``).
"""

from __future__ import annotations

import asyncio

from .async_ten_env import AsyncTenEnv
from .audio_frame import AudioFrame
from .cmd import Cmd
from .data import Data
from .video_frame import VideoFrame


class AsyncExtension:
    name: str

    def __init__(self, name: str) -> None:
        self.name = name
        # Mirrors the native private state; an Event needs no running loop.
        self._ten_stop_event = asyncio.Event()

    async def on_configure(self, ten_env: AsyncTenEnv) -> None:
        pass

    async def on_init(self, ten_env: AsyncTenEnv) -> None:
        pass

    async def on_start(self, ten_env: AsyncTenEnv) -> None:
        pass

    async def on_stop(self, ten_env: AsyncTenEnv) -> None:
        pass

    async def on_deinit(self, ten_env: AsyncTenEnv) -> None:
        pass

    async def on_cmd(self, ten_env: AsyncTenEnv, cmd: Cmd) -> None:
        # No result by default: the sender waits until its path timeout (§4.1).
        pass

    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        pass

    async def on_video_frame(self, ten_env: AsyncTenEnv, video_frame: VideoFrame) -> None:
        pass

    async def on_audio_frame(self, ten_env: AsyncTenEnv, audio_frame: AudioFrame) -> None:
        pass
