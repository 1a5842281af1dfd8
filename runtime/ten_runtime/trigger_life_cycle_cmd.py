"""``TriggerLifeCycleCmd``: release a manually triggered lifecycle stage (§6.2, §9.5)."""

from __future__ import annotations

from typing import TypeVar

from .cmd import Cmd
from .msg import MsgCore

S = TypeVar("S", bound="TriggerLifeCycleCmd")


class TriggerLifeCycleCmd(Cmd):
    def __init__(self) -> None:  # type: ignore[override]
        raise NotImplementedError("Use TriggerLifeCycleCmd.create instead.")

    @classmethod
    def create(cls: type[S]) -> S:  # type: ignore[override]
        return cls._ten_from_core(MsgCore("cmd", cls, "ten:trigger_life_cycle"))

    def set_stage(self, stage: str) -> bool:
        if stage not in ("start", "stop"):
            return False
        self._c().extra["stage"] = stage
        return True
