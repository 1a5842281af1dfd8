"""``Cmd``: a message that gets a result (§6.2)."""

from __future__ import annotations

from typing import TypeVar

from .msg import Msg, MsgCore

C = TypeVar("C", bound="Cmd")


class Cmd(Msg):
    def __init__(self, name: str) -> None:
        raise NotImplementedError("Use Cmd.create instead.")

    @classmethod
    def create(cls: type[C], name: str) -> C:
        if not isinstance(name, str):
            raise ValueError(f"name must be a str, got {type(name).__name__}")
        return cls._ten_from_core(MsgCore("cmd", cls, name))
