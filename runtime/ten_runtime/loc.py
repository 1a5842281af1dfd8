"""``Loc``: the address of an app / graph / extension (§6.7)."""

from __future__ import annotations


class Loc:
    """A plain location; ``Loc("", "", "ext")`` is extension ``ext`` in this app and graph."""

    def __init__(
        self,
        app_uri: str | None = None,
        graph_id: str | None = None,
        extension_name: str | None = None,
    ) -> None:
        self.app_uri = app_uri
        self.graph_id = graph_id
        self.extension_name = extension_name

    def __repr__(self) -> str:
        return (
            f"Loc(app_uri={self.app_uri!r}, graph_id={self.graph_id!r}, "
            f"extension_name={self.extension_name!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Loc):
            return NotImplemented
        return (self.app_uri, self.graph_id, self.extension_name) == (
            other.app_uri,
            other.graph_id,
            other.extension_name,
        )

    def __hash__(self) -> int:
        return hash((self.app_uri, self.graph_id, self.extension_name))
