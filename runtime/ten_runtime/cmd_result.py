"""``CmdResult`` and ``StatusCode`` (§6.3)."""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

from .cmd import Cmd
from .msg import Msg, MsgCore

R = TypeVar("R", bound="CmdResult")


class StatusCode(IntEnum):
    OK = 0
    ERROR = 1


class CmdResult(Msg):
    def __init__(self, status_code: int, target_cmd: Cmd) -> None:
        raise NotImplementedError("Use CmdResult.create instead.")

    @classmethod
    def create(cls: type[R], status_code: StatusCode, target_cmd: Cmd) -> R:
        if not isinstance(target_cmd, Cmd):
            raise TypeError(f"target_cmd must be a Cmd, got {type(target_cmd).__name__}")
        target = target_cmd._c()
        core = MsgCore("cmd_result", cls, target.name)
        # The result inherits the cmd's identity: return_result() finds the
        # path back to the sender by this id (§7.4).
        core.cmd_id = target.cmd_id
        core.parent_cmd_id = target.parent_cmd_id
        core.status = int(StatusCode(status_code))
        core.extra["cmd_class"] = target.py_class.__name__
        return cls._ten_from_core(core)

    def get_status_code(self) -> StatusCode:
        return StatusCode(self._c().status)

    def set_final(self, is_final: bool = True) -> None:
        self._c().is_final = bool(is_final)

    def is_final(self) -> bool:
        return self._c().is_final

    def is_completed(self) -> bool:
        return self._c().is_completed
