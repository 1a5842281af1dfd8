"""Sync ``TenEnv`` (§5.4): used by Addon, App and sync Extension.

Native quirks reproduced here:
* Q6: ``set_property_*`` always returns None (failures are lost);
* Q7: ``is_property_exist`` on a missing path returns ``(False, Err(100000))``;
* ``get_property_string`` on a non-string returns ``("", Err)`` with code 0.
Result/error handlers run on the extension's thread (its group worker).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._core.values import TValue, to_json_text
from .audio_frame import AudioFrame
from .cmd import Cmd
from .cmd_result import CmdResult
from .data import Data
from .error import TenErrorCode, _TenError, make_error, not_found
from .msg import INT64_MAX, INT64_MIN, MsgCore
from .ten_env_base import TenEnvBase
from .video_frame import VideoFrame

ResultHandler = Callable[["TenEnv", CmdResult | None, _TenError | None], None]
ErrorHandler = Callable[["TenEnv", _TenError | None], None]


def unfit(value: TValue, target: str) -> _TenError:
    return make_error(
        TenErrorCode.ErrorCodeGeneric, f"The conversion from {value.type} to {target} is unfit."
    )


class TenEnv(TenEnvBase):
    def __init__(self, internal_obj: Any) -> None:
        super().__init__(internal_obj)

    # -- lifecycle -------------------------------------------------------------

    def on_configure_done(self) -> None:
        self._internal.on_configure_done()

    def on_init_done(self) -> None:
        self._internal.on_init_done()

    def on_start_done(self) -> None:
        self._internal.on_start_done()

    def on_stop_done(self) -> None:
        self._internal.on_stop_done()

    def on_deinit_done(self) -> None:
        self._internal.on_deinit_done()

    def on_create_instance_done(self, instance: Any, context: Any) -> None:
        self._internal.on_create_instance_done(instance, context)

    # -- properties --------------------------------------------------------------

    def get_property_to_json(self, path: str | None = None) -> tuple[str, _TenError | None]:
        value, err = self._internal.get_value(path)
        if value is None:
            return "", err
        return to_json_text(value), None

    def set_property_from_json(self, path: str, json_str: str) -> _TenError | None:
        if not isinstance(path, str):
            raise ValueError("path must be a str")
        return self._internal.set_json(path, json_str)

    def get_property_int(self, path: str) -> tuple[int, _TenError | None]:
        value, err = self._internal.get_value(path)
        if value is None:
            return 0, err
        if not value.is_int:
            return 0, unfit(value, "int64")
        return value.data, None

    def set_property_int(self, path: str, value: int) -> _TenError | None:
        if not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"value must be an int64, got {value!r}")
        self._internal.set_value(path, TValue("int64", int(value)))
        return None

    def get_property_string(self, path: str) -> tuple[str, _TenError | None]:
        value, err = self._internal.get_value(path)
        if value is None:
            return "", err
        if value.type != "string":
            return "", make_error(0, "Value is not string.")
        return value.data, None

    def set_property_string(self, path: str, value: str) -> _TenError | None:
        if not isinstance(value, str):
            raise ValueError("value must be a str")
        self._internal.set_value(path, TValue("string", value))
        return None

    def get_property_bool(self, path: str) -> tuple[bool, _TenError | None]:
        value, err = self._internal.get_value(path)
        if value is None:
            return False, err
        if value.type != "bool":
            return False, unfit(value, "bool")
        return value.data, None

    def set_property_bool(self, path: str, value: int) -> _TenError | None:
        if not isinstance(value, int):
            raise ValueError("value must be a bool or int")
        self._internal.set_value(path, TValue("bool", value != 0))
        return None

    def get_property_float(self, path: str) -> tuple[float, _TenError | None]:
        value, err = self._internal.get_value(path)
        if value is None:
            return 0.0, err
        if not value.is_float:
            return 0.0, unfit(value, "float64")
        return value.data, None

    def set_property_float(self, path: str, value: float) -> _TenError | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("value must be a float")
        self._internal.set_value(path, TValue("float64", float(value)))
        return None

    def is_property_exist(self, path: str) -> tuple[bool, _TenError | None]:
        exists, err = self._internal.exists(path)
        if err is not None:
            return False, err
        if not exists:
            return False, not_found(path)
        return True, None

    def init_property_from_json(self, json_str: str) -> _TenError | None:
        return self._internal.init_property_from_json(json_str)

    # -- messages ------------------------------------------------------------------

    def _on_native_thread(self, what: str, fn: Callable[[], None]) -> None:
        from ._core.adapters import run_sync_handler

        node = getattr(self._internal, "node", None)
        if node is None:
            fn()
            return
        run_sync_handler(node, "TenEnv", what, fn)

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

    def send_video_frame(
        self, video_frame: VideoFrame, error_handler: ErrorHandler | None = None
    ) -> _TenError | None:
        if not isinstance(video_frame, VideoFrame):
            raise TypeError(
                f"send_video_frame expects a VideoFrame, got {type(video_frame).__name__}"
            )
        return self._internal.send(video_frame, self._error_cb(error_handler))

    def send_audio_frame(
        self, audio_frame: AudioFrame, error_handler: ErrorHandler | None = None
    ) -> _TenError | None:
        if not isinstance(audio_frame, AudioFrame):
            raise TypeError(
                f"send_audio_frame expects an AudioFrame, got {type(audio_frame).__name__}"
            )
        return self._internal.send(audio_frame, self._error_cb(error_handler))

    def return_result(
        self, result: CmdResult, error_handler: ErrorHandler | None = None
    ) -> _TenError | None:
        if not isinstance(result, CmdResult):
            raise TypeError(f"return_result expects a CmdResult, got {type(result).__name__}")
        return self._internal.return_result(result, self._error_cb(error_handler))
