"""``StopGraphCmd``: ask the app to stop a graph (§6.2).

Native extensions send it to the app (``set_dests([Loc("")])``) with the id of
the graph to stop; an empty id means the sender's own graph.
"""

from __future__ import annotations

from typing import TypeVar

from .cmd import Cmd
from .msg import MsgCore

S = TypeVar("S", bound="StopGraphCmd")


class StopGraphCmd(Cmd):
    def __init__(self) -> None:  # type: ignore[override]
        raise NotImplementedError("Use StopGraphCmd.create instead.")

    @classmethod
    def create(cls: type[S]) -> S:  # type: ignore[override]
        core = MsgCore("cmd", cls, "ten:stop_graph")
        core.extra["graph_id"] = ""
        return cls._ten_from_core(core)

    def set_graph_id(self, graph_id: str) -> bool:
        if not isinstance(graph_id, str):
            return False
        self._c().extra["graph_id"] = graph_id
        return True
