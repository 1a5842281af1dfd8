"""``LogOption`` / ``DefaultLogOption`` (§8.2)."""

from __future__ import annotations


class LogOption:
    """``skip``: caller frames to walk up; ``sync``: block until emitted."""

    def __init__(self, skip: int = 2, sync: bool = False) -> None:
        self.skip = skip
        self.sync = sync

    def __repr__(self) -> str:
        return f"LogOption(skip={self.skip}, sync={self.sync})"


DefaultLogOption = LogOption(2, False)
