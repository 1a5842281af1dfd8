"""``StartGraphCmd``: ask the app to start a graph (§6.2)."""

from __future__ import annotations

from typing import TypeVar

from ._core.values import JsonError, parse_json_text
from .cmd import Cmd
from .msg import MsgCore

S = TypeVar("S", bound="StartGraphCmd")


class StartGraphCmd(Cmd):
    def __init__(self) -> None:  # type: ignore[override]
        raise NotImplementedError("Use StartGraphCmd.create instead.")

    @classmethod
    def create(cls: type[S]) -> S:  # type: ignore[override]
        return cls._ten_from_core(MsgCore("cmd", cls, "ten:start_graph"))

    def set_predefined_graph_name(self, predefined_graph_name: str) -> bool:
        if not isinstance(predefined_graph_name, str):
            return False
        self._c().extra["predefined_graph_name"] = predefined_graph_name
        return True

    def set_graph_from_json(self, graph_json_str: str) -> bool:
        try:
            graph = parse_json_text(graph_json_str)
        except JsonError:
            return False
        if not isinstance(graph, dict):
            return False
        self._c().extra["graph"] = graph
        return True

    def set_sync_stop_before_deinit(self, sync_stop_before_deinit: bool) -> bool:
        self._c().extra["sync_stop_before_deinit"] = bool(sync_stop_before_deinit)
        return True
