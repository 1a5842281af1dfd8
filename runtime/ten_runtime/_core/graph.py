"""Graph JSON (§9.2): parse, validate, and turn connections into a route table.

Connections are written from the named extension's point of view: ``dest``
means "I send X to these", ``source`` means "I receive X from these" (the
same as each source having a ``dest`` back to me).  Errors name the offending
item so a user can find it in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TEST_EXTENSION = "ten:test_extension"
MSG_KINDS = ("cmd", "data", "audio_frame", "video_frame")


class GraphError(ValueError):
    """The graph definition is invalid."""


@dataclass
class NodeDef:
    name: str
    addon: str
    extension_group: str | None = None
    app: str | None = None
    property: dict[str, Any] = field(default_factory=dict)


@dataclass
class GraphDef:
    nodes: list[NodeDef]
    # (sender node, msg kind, msg name) -> receiver node names, in file order
    routes: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    def node(self, name: str) -> NodeDef | None:
        for node in self.nodes:
            if node.name == name:
                return node
        return None


def _ident(value: Any, what: str, allow_test_extension: bool = False) -> str:
    if allow_test_extension and value == TEST_EXTENSION:
        return value
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise GraphError(
            f"{what} must be an identifier matching {IDENTIFIER.pattern}, got {value!r}"
        )
    return value


def parse_graph(obj: Any, allow_test_extension: bool = False) -> GraphDef:
    """Validate a graph object (``{"nodes": [...], "connections": [...]}``)."""
    if not isinstance(obj, dict):
        raise GraphError("the graph must be a JSON object with 'nodes' and 'connections'")
    raw_nodes = obj.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise GraphError("the graph needs a non-empty 'nodes' list")

    nodes: list[NodeDef] = []
    names: set[str] = set()
    for i, raw in enumerate(raw_nodes):
        where = f"nodes[{i}]"
        if not isinstance(raw, dict):
            raise GraphError(f"{where} must be an object")
        node_type = raw.get("type", "extension")
        if node_type != "extension":
            raise GraphError(
                f"{where} has type {node_type!r}: only 'extension' nodes are supported "
                "by the stand-in (no subgraph/selector)"
            )
        name = _ident(raw.get("name"), f"{where}.name", allow_test_extension)
        where = f"node '{name}'"
        if name in names:
            raise GraphError(f"duplicate node name '{name}' (nodes[{i}])")
        names.add(name)
        addon = _ident(raw.get("addon"), f"{where}: 'addon'", allow_test_extension)
        if (name == TEST_EXTENSION) != (addon == TEST_EXTENSION):
            raise GraphError(f"{where}: '{TEST_EXTENSION}' is reserved for the tester's node")
        group = raw.get("extension_group")
        if group is not None:
            _ident(group, f"{where}: 'extension_group'")
        app = raw.get("app")
        if app is not None and not isinstance(app, str):
            raise GraphError(f"{where}: 'app' must be a string")
        prop = raw.get("property", {})
        if prop is None:
            prop = {}
        if not isinstance(prop, dict):
            raise GraphError(f"{where}: 'property' must be an object")
        nodes.append(NodeDef(name, addon, group, app, prop))

    graph = GraphDef(nodes)
    raw_conns = obj.get("connections", [])
    if raw_conns is None:
        raw_conns = []
    if not isinstance(raw_conns, list):
        raise GraphError("'connections' must be a list")
    for i, conn in enumerate(raw_conns):
        _parse_connection(conn, i, names, graph, allow_test_extension)
    return graph


def _add_route(graph: GraphDef, sender: str, kind: str, name: str, receiver: str) -> None:
    receivers = graph.routes.setdefault((sender, kind, name), [])
    if receiver not in receivers:
        receivers.append(receiver)


def _node_ref(value: Any, where: str, names: set[str], allow_test: bool) -> str:
    if isinstance(value, dict) and ("subgraph" in value or "selector" in value):
        raise GraphError(f"{where}: subgraph/selector references are not supported by the stand-in")
    ext = value.get("extension") if isinstance(value, dict) else None
    if ext is None:
        raise GraphError(f"{where} needs an 'extension'")
    _ident(ext, f"{where}.extension", allow_test)
    if ext not in names:
        raise GraphError(f"{where} refers to unknown node '{ext}'")
    return ext


def _parse_connection(
    conn: Any, index: int, names: set[str], graph: GraphDef, allow_test: bool
) -> None:
    where = f"connections[{index}]"
    if not isinstance(conn, dict):
        raise GraphError(f"{where} must be an object")
    owner = _node_ref(conn, where, names, allow_test)
    where = f"{where} (extension '{owner}')"
    for kind in MSG_KINDS:
        items = conn.get(kind)
        if items is None:
            continue
        if not isinstance(items, list):
            raise GraphError(f"{where}.{kind} must be a list")
        for j, item in enumerate(items):
            iwhere = f"{where}.{kind}[{j}]"
            if not isinstance(item, dict):
                raise GraphError(f"{iwhere} must be an object")
            has_name, has_names = "name" in item, "names" in item
            if has_name == has_names:
                raise GraphError(f"{iwhere} needs exactly one of 'name' or 'names'")
            if has_name:
                msg_names = [_ident(item["name"], f"{iwhere}.name")]
            else:
                if not isinstance(item["names"], list) or not item["names"]:
                    raise GraphError(f"{iwhere}.names must be a non-empty list")
                msg_names = [_ident(n, f"{iwhere}.names[{k}]") for k, n in enumerate(item["names"])]
            has_dest, has_source = "dest" in item, "source" in item
            if has_dest == has_source:
                raise GraphError(f"{iwhere} needs exactly one of 'dest' or 'source'")
            peers = item["dest"] if has_dest else item["source"]
            side = "dest" if has_dest else "source"
            if not isinstance(peers, list) or not peers:
                raise GraphError(f"{iwhere}.{side} must be a non-empty list")
            for k, peer in enumerate(peers):
                pwhere = f"{iwhere}.{side}[{k}]"
                if isinstance(peer, dict) and "msg_conversion" in peer:
                    if has_names:
                        raise GraphError(f"{pwhere}: 'msg_conversion' is not allowed with 'names'")
                    raise GraphError(f"{pwhere}: 'msg_conversion' is not supported by the stand-in")
                other = _node_ref(peer, pwhere, names, allow_test)
                for msg_name in msg_names:
                    if has_dest:
                        _add_route(graph, owner, kind, msg_name, other)
                    else:
                        _add_route(graph, other, kind, msg_name, owner)
