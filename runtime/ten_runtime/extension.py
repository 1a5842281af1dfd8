"""Sync ``Extension`` (§4.4): plain-function callbacks that call ``ten_env.on_X_done()``."""

from __future__ import annotations

from typing import Any

from .audio_frame import AudioFrame
from .cmd import Cmd
from .data import Data
from .ten_env import TenEnv
from .video_frame import VideoFrame


class Extension:
    def __new__(cls, *args: Any, **kwargs: Any) -> Extension:
        return super().__new__(cls)

    def __init__(self, name: str) -> None:
        # Native keeps the instance name inside the C object; nothing to store.
        pass

    def on_configure(self, ten_env: TenEnv) -> None:
        ten_env.on_configure_done()

    def on_init(self, ten_env: TenEnv) -> None:
        ten_env.on_init_done()

    def on_start(self, ten_env: TenEnv) -> None:
        ten_env.on_start_done()

    def on_stop(self, ten_env: TenEnv) -> None:
        ten_env.on_stop_done()

    def on_deinit(self, ten_env: TenEnv) -> None:
        ten_env.on_deinit_done()

    def on_cmd(self, ten_env: TenEnv, cmd: Cmd) -> None:
        pass

    def on_data(self, ten_env: TenEnv, data: Data) -> None:
        pass

    def on_video_frame(self, ten_env: TenEnv, video_frame: VideoFrame) -> None:
        pass

    def on_audio_frame(self, ten_env: TenEnv, audio_frame: AudioFrame) -> None:
        pass
