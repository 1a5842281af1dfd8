"""Command paths and result policies (§7.4, §7.6).

When a cmd is delivered, a :class:`CmdPath` records who sent it to whom (the
sender's "out path" and the receiver's "in path" in native terms).  A result
travels back by (receiver, cmd id) along that record, never via the graph.

A :class:`ResultGroup` joins the paths of one send (several for fan-out) and
applies the policy: ``send_cmd`` gets "first error or last OK", ``send_cmd_ex``
gets every result, with ``is_completed`` on the one that finishes the last
outstanding destination.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..error import _TenError
from ..msg import MsgCore

if TYPE_CHECKING:
    from .node import Node

ResultHandler = Callable[[MsgCore | None, _TenError | None], None]


class ResultGroup:
    def __init__(
        self, sender: Node, handler: ResultHandler | None, is_ex: bool, total: int
    ) -> None:
        self.sender = sender
        self.handler = handler  # None: the sender forwarded without a callback
        self.is_ex = is_ex
        self.total = total
        self.finished = 0
        self.done = False
        self.last_ok: MsgCore | None = None


class CmdPath:
    __slots__ = (
        "cmd_id",
        "cmd_name",
        "done",
        "group",
        "in_deadline",
        "in_expired",
        "out_deadline",
        "parent_cmd_id",
        "receiver",
        "sender",
    )

    def __init__(self, sender: Node, receiver: Node, core: MsgCore, group: ResultGroup) -> None:
        now = time.monotonic()
        self.sender = sender
        self.receiver = receiver
        self.cmd_id: str = core.cmd_id or ""
        self.parent_cmd_id = core.parent_cmd_id
        self.cmd_name = core.name
        self.group = group
        self.done = False
        self.in_expired = False
        self.out_deadline = now + sender.out_path_timeout_s
        self.in_deadline = now + receiver.in_path_timeout_s


def apply_policy(group: ResultGroup, result: MsgCore) -> MsgCore | None:
    """Feed one result into the group; returns the result to hand to the sender, if any."""
    if group.done:
        return None
    if result.is_final:
        group.finished += 1
    if group.is_ex:
        completed = result.is_final and group.finished >= group.total
        result.is_completed = completed
        if completed:
            group.done = True
        return result
    if result.status != 0:
        # First error wins: the sender sees exactly one completed result.
        result.is_completed = True
        group.done = True
        return result
    if result.is_final:
        group.last_ok = result
        if group.finished >= group.total:
            result.is_completed = True
            group.done = True
            return result
        return None
    if group.total == 1:
        # A non-final OK result for a plain send_cmd: natively it reaches the
        # callback with is_completed() False, and the binding's
        # ``assert result.is_completed()`` fires (quirk Q12).
        result.is_completed = False
        return result
    return None
