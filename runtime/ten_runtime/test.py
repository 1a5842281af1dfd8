"""Sync testing API: ``ExtensionTester`` and ``TenEnvTester`` (§11.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._core.tester_run import TesterRun
from .audio_frame import AudioFrame
from .cmd import Cmd
from .cmd_result import CmdResult
from .data import Data
from .error import _TenError
from .msg import MsgCore
from .ten_env_base import TenEnvBase
from .video_frame import VideoFrame

ResultHandler = Callable[["TenEnvTester", CmdResult | None, _TenError | None], None]
ErrorHandler = Callable[["TenEnvTester", _TenError | None], None]


class TenEnvTesterBase(TenEnvBase):
    def stop_test(self, error: _TenError | None = None) -> _TenError | None:
        """Record ``error`` if none is recorded yet (first wins) and stop the test app."""
        return self._internal.stop_test(error)


class TenEnvTester(TenEnvTesterBase):
    def on_init_done(self) -> None:
        self._internal.on_init_done()

    def on_start_done(self) -> None:
        self._internal.on_start_done()

    def on_stop_done(self) -> None:
        self._internal.on_stop_done()

    def on_deinit_done(self) -> None:
        self._internal.on_deinit_done()

    def _on_native_thread(self, what: str, fn: Callable[[], None]) -> None:
        from ._core.adapters import run_sync_handler

        run_sync_handler(self._internal.node, "TenEnvTester", what, fn)

    def _result_cb(
        self, handler: ResultHandler | None
    ) -> Callable[[MsgCore | None, _TenError | None], None] | None:
        if handler is None:
            return None

        def deliver(core: MsgCore | None, err: _TenError | None) -> None:
            result = core.wrap() if core is not None else None
            self._on_native_thread("result_handler", lambda: handler(self, result, err))  # type: ignore[arg-type]

        return deliver

    def _error_cb(self, handler: ErrorHandler | None) -> Callable[[_TenError | None], None] | None:
        if handler is None:
            return None
        return lambda err: self._on_native_thread("error_handler", lambda: handler(self, err))

    def send_cmd(self, cmd: Cmd, result_handler: ResultHandler | None = None) -> _TenError | None:
        if not isinstance(cmd, Cmd):
            raise TypeError(f"send_cmd expects a Cmd, got {type(cmd).__name__}")
        return self._internal.send_cmd(cmd, self._result_cb(result_handler), False)

    def send_cmd_ex(
        self, cmd: Cmd, result_handler: ResultHandler | None = None
    ) -> _TenError | None:
        if not isinstance(cmd, Cmd):
            raise TypeError(f"send_cmd_ex expects a Cmd, got {type(cmd).__name__}")
        return self._internal.send_cmd(cmd, self._result_cb(result_handler), True)

    def send_data(self, data: Data, error_handler: ErrorHandler | None = None) -> _TenError | None:
        if not isinstance(data, Data):
            raise TypeError(f"send_data expects a Data, got {type(data).__name__}")
        return self._internal.send(data, self._error_cb(error_handler))

    def send_audio_frame(
        self, audio_frame: AudioFrame, error_handler: ErrorHandler | None = None
    ) -> _TenError | None:
        if not isinstance(audio_frame, AudioFrame):
            raise TypeError(
                f"send_audio_frame expects an AudioFrame, got {type(audio_frame).__name__}"
            )
        return self._internal.send(audio_frame, self._error_cb(error_handler))

    def send_video_frame(
        self, video_frame: VideoFrame, error_handler: ErrorHandler | None = None
    ) -> _TenError | None:
        if not isinstance(video_frame, VideoFrame):
            raise TypeError(
                f"send_video_frame expects a VideoFrame, got {type(video_frame).__name__}"
            )
        return self._internal.send(video_frame, self._error_cb(error_handler))

    def return_result(
        self, cmd_result: CmdResult, error_handler: ErrorHandler | None = None
    ) -> _TenError | None:
        if not isinstance(cmd_result, CmdResult):
            raise TypeError(f"return_result expects a CmdResult, got {type(cmd_result).__name__}")
        return self._internal.return_result(cmd_result, self._error_cb(error_handler))


class _TesterConfig:
    """set_test_mode_single / set_test_mode_graph / set_timeout / run, shared by both testers."""

    _ten_run: TesterRun
    _ten_is_async = False

    def _ten_runner(self) -> TesterRun:
        run = self.__dict__.get("_ten_run")
        if run is None:
            run = self.__dict__["_ten_run"] = TesterRun(self, self._ten_is_async)
        return run

    def set_test_mode_single(self, addon_name: str, property_json_str: str | None = None) -> None:
        self._ten_runner().set_test_mode_single(addon_name, property_json_str)

    def set_test_mode_graph(self, graph_json: str) -> None:
        self._ten_runner().set_test_mode_graph(graph_json)

    def set_timeout(self, timeout_us: int) -> None:
        self._ten_runner().set_timeout(timeout_us)

    def run(self) -> _TenError | None:
        """Block until the test app has ended; None, the first stop_test error, or the timeout."""
        return self._ten_runner().run()


class ExtensionTester(_TesterConfig):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_init(self, ten_env_tester: TenEnvTester) -> None:
        ten_env_tester.on_init_done()

    def on_start(self, ten_env_tester: TenEnvTester) -> None:
        ten_env_tester.on_start_done()

    def on_stop(self, ten_env_tester: TenEnvTester) -> None:
        ten_env_tester.on_stop_done()

    def on_deinit(self, ten_env_tester: TenEnvTester) -> None:
        ten_env_tester.on_deinit_done()

    def on_cmd(self, ten_env_tester: TenEnvTester, cmd: Cmd) -> None:
        pass

    def on_data(self, ten_env_tester: TenEnvTester, data: Data) -> None:
        pass

    def on_audio_frame(self, ten_env_tester: TenEnvTester, audio_frame: AudioFrame) -> None:
        pass

    def on_video_frame(self, ten_env_tester: TenEnvTester, video_frame: VideoFrame) -> None:
        pass
