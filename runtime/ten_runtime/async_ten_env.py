"""``AsyncTenEnv`` (§5): the env of an AsyncExtension.

Property and send methods are coroutines; logging is synchronous.  Outcomes
computed on the runtime thread come back to the extension's loop with
``call_soon_threadsafe``.

Native quirks reproduced here (§13):
* Q3: ``get_property_int`` on a non-integer value returns ``(0, None)``;
* Q4: ``get_property_string`` on a non-string value returns ``(None, None)``;
* Q5: ``set_property_from_json`` raises ValueError on invalid JSON or path None;
* Q7: ``is_property_exist`` on a missing path returns ``(False, None)``;
* Q8: fire-and-forget sends return None even when the message has no route;
* Q12: ``send_cmd`` asserts ``is_completed()`` on the result it gets.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

from ._core.values import JsonError, TValue, from_json_text, to_json_text
from .audio_frame import AudioFrame
from .cmd import Cmd
from .cmd_result import CmdResult
from .data import Data
from .error import _TenError
from .msg import INT64_MAX, INT64_MIN, Msg, MsgCore
from .send_options import SendOptions
from .ten_env import TenEnv, unfit
from .ten_env_base import TenEnvBase
from .video_frame import VideoFrame

CmdResultTuple = tuple[CmdResult | None, _TenError | None]


def _call_in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass  # the loop is closed: nobody is waiting any more


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


class _AsyncSends(TenEnvBase):
    """Send methods shared by AsyncTenEnv and AsyncTenEnvTester."""

    _ten_loop: asyncio.AbstractEventLoop

    def _result_handler(
        self, deliver: Callable[[CmdResultTuple], None]
    ) -> Callable[[MsgCore | None, _TenError | None], None]:
        loop = self._ten_loop

        def handler(core: MsgCore | None, err: _TenError | None) -> None:
            result = core.wrap() if core is not None else None
            _call_in_loop(loop, deliver, (result, err))

        return handler

    async def send_cmd(self, cmd: Cmd) -> CmdResultTuple:
        if not isinstance(cmd, Cmd):
            raise TypeError(f"send_cmd expects a Cmd, got {type(cmd).__name__}")
        fut: asyncio.Future[CmdResultTuple] = self._ten_loop.create_future()
        err = self._internal.send_cmd(
            cmd, self._result_handler(lambda item: _resolve(fut, item)), False
        )
        if err is not None:
            return None, err
        result, err = await fut
        if result is not None:
            assert result.is_completed()
        return result, err

    async def send_cmd_ex(self, cmd: Cmd) -> AsyncGenerator[CmdResultTuple, None]:
        if not isinstance(cmd, Cmd):
            raise TypeError(f"send_cmd_ex expects a Cmd, got {type(cmd).__name__}")
        queue: asyncio.Queue[CmdResultTuple] = asyncio.Queue()
        err = self._internal.send_cmd(cmd, self._result_handler(queue.put_nowait), True)
        if err is not None:
            yield None, err
            return
        while True:
            result, err = await queue.get()
            yield result, err
            if err is not None:
                break
            if result is not None and result.is_completed():
                break

    async def _send(self, msg: Msg, options: SendOptions | None) -> _TenError | None:
        if options is None or not options.wait_for_result:
            return self._internal.send(msg, None)
        fut: asyncio.Future[_TenError | None] = self._ten_loop.create_future()
        loop = self._ten_loop
        err = self._internal.send(msg, lambda e: _call_in_loop(loop, _resolve, fut, e))
        if err is not None:
            return err
        return await fut

    async def send_data(self, data: Data, options: SendOptions | None = None) -> _TenError | None:
        if not isinstance(data, Data):
            raise TypeError(f"send_data expects a Data, got {type(data).__name__}")
        return await self._send(data, options)

    async def send_audio_frame(
        self, audio_frame: AudioFrame, options: SendOptions | None = None
    ) -> _TenError | None:
        if not isinstance(audio_frame, AudioFrame):
            raise TypeError(
                f"send_audio_frame expects an AudioFrame, got {type(audio_frame).__name__}"
            )
        return await self._send(audio_frame, options)

    async def send_video_frame(
        self, video_frame: VideoFrame, options: SendOptions | None = None
    ) -> _TenError | None:
        if not isinstance(video_frame, VideoFrame):
            raise TypeError(
                f"send_video_frame expects a VideoFrame, got {type(video_frame).__name__}"
            )
        return await self._send(video_frame, options)

    async def return_result(
        self, result: CmdResult, options: SendOptions | None = None
    ) -> _TenError | None:
        if not isinstance(result, CmdResult):
            raise TypeError(f"return_result expects a CmdResult, got {type(result).__name__}")
        if options is None or not options.wait_for_result:
            return self._internal.return_result(result, None)
        fut: asyncio.Future[_TenError | None] = self._ten_loop.create_future()
        loop = self._ten_loop
        err = self._internal.return_result(result, lambda e: _call_in_loop(loop, _resolve, fut, e))
        if err is not None:
            return err
        return await fut


class AsyncTenEnv(_AsyncSends):
    """Created by the runtime for each AsyncExtension instance; never by users."""

    _ten_thread: threading.Thread

    def __init__(
        self, ten_env: TenEnv, loop: asyncio.AbstractEventLoop, thread: threading.Thread
    ) -> None:
        super().__init__(ten_env._internal)
        self._ten_loop = loop
        self._ten_thread = thread

    async def _hop(self) -> None:
        # Natively every property call round-trips through the runtime thread,
        # so awaiting it always yields to other tasks; keep that behaviour.
        await asyncio.sleep(0)

    async def get_property_to_json(self, path: str | None = None) -> tuple[str, _TenError | None]:
        await self._hop()
        value, err = self._internal.get_value(path)
        if value is None:
            return "", err
        return to_json_text(value), None

    async def set_property_from_json(self, path: str, json_str: str) -> _TenError | None:
        if path is None:
            raise ValueError("path must not be None")
        try:
            value = from_json_text(json_str)
        except (JsonError, TypeError) as exc:
            raise ValueError(f"Invalid JSON: {exc}") from None
        await self._hop()
        return self._internal.set_value(path, value)

    async def get_property_int(self, path: str) -> tuple[int, _TenError | None]:
        await self._hop()
        value, err = self._internal.get_value(path)
        if value is None:
            return 0, err
        if not value.is_int:
            return 0, None  # Q3
        return value.data, None

    async def set_property_int(self, path: str, value: int) -> _TenError | None:
        if not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"value must be an int64, got {value!r}")
        await self._hop()
        return self._internal.set_value(path, TValue("int64", int(value)))

    async def get_property_string(self, path: str) -> tuple[str, _TenError | None]:
        await self._hop()
        value, err = self._internal.get_value(path)
        if value is None:
            return "", err
        if value.type != "string":
            return None, None  # type: ignore[return-value]  # Q4
        return value.data, None

    async def set_property_string(self, path: str, value: str) -> _TenError | None:
        if not isinstance(value, str):
            raise ValueError("value must be a str")
        await self._hop()
        return self._internal.set_value(path, TValue("string", value))

    async def get_property_bool(self, path: str) -> tuple[bool, _TenError | None]:
        await self._hop()
        value, err = self._internal.get_value(path)
        if value is None:
            return False, err
        if value.type != "bool":
            return False, unfit(value, "bool")
        return value.data, None

    async def set_property_bool(self, path: str, value: int) -> _TenError | None:
        if not isinstance(value, int):
            raise ValueError("value must be a bool or int")
        await self._hop()
        return self._internal.set_value(path, TValue("bool", value != 0))

    async def get_property_float(self, path: str) -> tuple[float, _TenError | None]:
        await self._hop()
        value, err = self._internal.get_value(path)
        if value is None:
            return 0.0, err
        if not value.is_float:
            # e.g. a JSON 16000 (uint64) read as float: refused unless the
            # schema declared the field as float (then adjust converted it).
            return 0.0, unfit(value, "float32")
        return value.data, None

    async def set_property_float(self, path: str, value: float) -> _TenError | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("value must be a float")
        await self._hop()
        return self._internal.set_value(path, TValue("float64", float(value)))

    async def is_property_exist(self, path: str) -> tuple[bool, _TenError | None]:
        await self._hop()
        return self._internal.exists(path)  # absence is (False, None): Q7

    async def init_property_from_json(self, json_str: str) -> _TenError | None:
        await self._hop()
        return self._internal.init_property_from_json(json_str)
