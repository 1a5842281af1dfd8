"""Async testing API: ``AsyncExtensionTester`` and ``AsyncTenEnvTester`` (§11.2, §11.3).

The tester runs on its own thread with its own asyncio loop (distinct from the
extension loop); every callback is a separate task on it, so ``on_data`` runs
concurrently with a long ``on_start``.
"""

from __future__ import annotations

import asyncio
import threading

from .async_ten_env import _AsyncSends
from .audio_frame import AudioFrame
from .cmd import Cmd
from .data import Data
from .error import _TenError
from .test import TenEnvTester, _TesterConfig
from .video_frame import VideoFrame


class AsyncTenEnvTester(_AsyncSends):
    """send_* / return_result (async), stop_test and log_* (sync); no property API."""

    _ten_thread: threading.Thread

    def __init__(
        self,
        ten_env_tester: TenEnvTester,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
    ) -> None:
        super().__init__(ten_env_tester._internal)
        self._ten_loop = loop
        self._ten_thread = thread

    def stop_test(self, error: _TenError | None = None) -> _TenError | None:
        """Sync. Records ``error`` if none is recorded yet (first wins); stops the test."""
        return self._internal.stop_test(error)


class AsyncExtensionTester(_TesterConfig):
    _ten_is_async = True

    def __init__(self) -> None:
        pass

    async def on_init(self, ten_env: AsyncTenEnvTester) -> None:
        pass

    async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
        pass

    async def on_stop(self, ten_env: AsyncTenEnvTester) -> None:
        pass

    async def on_deinit(self, ten_env: AsyncTenEnvTester) -> None:
        pass

    async def on_cmd(self, ten_env: AsyncTenEnvTester, cmd: Cmd) -> None:
        pass

    async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
        pass

    async def on_audio_frame(self, ten_env: AsyncTenEnvTester, audio_frame: AudioFrame) -> None:
        pass

    async def on_video_frame(self, ten_env: AsyncTenEnvTester, video_frame: VideoFrame) -> None:
        pass
