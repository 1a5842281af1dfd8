"""``SendOptions`` (§5.2): whether a data/frame/result send awaits its outcome."""

from __future__ import annotations


class SendOptions:
    """``wait_for_result=False`` (default) is fire-and-forget: routing errors are only logged."""

    def __init__(self, wait_for_result: bool = False) -> None:
        self.wait_for_result = wait_for_result

    def __repr__(self) -> str:
        return f"SendOptions(wait_for_result={self.wait_for_result})"
