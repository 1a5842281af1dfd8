"""Pure pieces: value tree, merge, env placeholders, schemas, graph validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ten_runtime._core.envsubst import MissingEnvVar, substitute_env
from ten_runtime._core.graph import GraphError, parse_graph
from ten_runtime._core.schema import SchemaViolation, ValueSchema, build_schema_store
from ten_runtime._core.values import (
    deep_merge,
    from_py,
    parse_path,
    to_json_text,
    to_py,
)


def test_parse_path() -> None:
    assert parse_path("") == []
    assert parse_path("a.b[0].c") == ["a", "b", 0, "c"]
    assert parse_path("m[1][2]") == ["m", 1, 2]
    for bad in ("a..b", "a[x]", "a[1", "a[1]b"):
        with pytest.raises(ValueError):
            parse_path(bad)


def test_deep_merge_graph_over_file() -> None:
    base = from_py(
        {"params": {"api_key": "", "base_url": "u", "channels": 1}, "keep": [1, 2], "x": 1}
    )
    deep_merge(
        base, from_py({"params": {"api_key": "k", "language": "en"}, "keep": [3], "x": {"o": 1}})
    )
    assert to_py(base) == {
        "params": {"api_key": "k", "base_url": "u", "channels": 1, "language": "en"},
        "keep": [3],  # arrays are replaced, not concatenated
        "x": {"o": 1},
    }


def test_env_substitution_rules() -> None:
    warnings: list[str] = []
    store = from_py(
        {
            "set": "${env:RT_SET}",
            "default": "${env:RT_UNSET|fallback}",
            "empty": "${env:RT_UNSET|}",
            "numeric": "${env:RT_NUM}",
            "inside": "prefix ${env:RT_SET}",
            "escaped": "${env:RT_UNSET|a\\|b}",
            "nested": [{"deep": "${env:RT_SET}"}],
            "bad_scope": "${cfg:X}",
        }
    )
    substitute_env(store, warnings.append, {"RT_SET": "v", "RT_NUM": "42"})
    assert to_py(store) == {
        "set": "v",
        "default": "fallback",
        "empty": "",
        "numeric": "42",  # always a string, even when it looks numeric
        "inside": "prefix ${env:RT_SET}",  # no interpolation inside longer strings
        "escaped": "a|b",
        "nested": [{"deep": "v"}],
        "bad_scope": "${cfg:X}",  # logged and kept raw
    }
    assert any("cfg" in w for w in warnings)
    with pytest.raises(MissingEnvVar, match="RT_MISSING"):
        substitute_env(from_py({"k": "${env:RT_MISSING}"}), warnings.append, {})


def _schema(props: dict, required: list[str] | None = None) -> ValueSchema:
    section: dict = {"properties": props}
    if required:
        section["required"] = required
    schema = ValueSchema.object_of(section, "api.property")
    assert schema is not None
    return schema


def test_schema_adjust_converts_widths_and_int_to_float() -> None:
    schema = _schema(
        {
            "rate": {"type": "int32"},
            "gain": {"type": "float64"},
            "o": {"type": "object", "properties": {"n": {"type": "uint8"}}},
            "arr": {"type": "array", "items": {"type": "float32"}},
        }
    )
    value = schema.check(
        from_py({"rate": 16000, "gain": 2, "o": {"n": 7}, "arr": [1, 2.5], "extra": "ok"})
    )
    assert value.data["rate"].type == "int32"
    assert value.data["gain"].type == "float64" and value.data["gain"].data == 2.0
    assert value.data["o"].data["n"].type == "uint8"
    assert [v.type for v in value.data["arr"].data] == ["float32", "float32"]
    tenth = _schema({"f": {"type": "float32"}}).check(from_py({"f": 0.1}))
    assert tenth.data["f"].data == 0.10000000149011612  # float32 precision, as natively
    with pytest.raises(SchemaViolation, match="out of range of float32"):
        _schema({"f": {"type": "float32"}}).check(from_py({"f": 1e39}))


@pytest.mark.parametrize(
    ("props", "value", "message"),
    [
        ({"rate": {"type": "int32"}}, {"rate": 2**31}, "out of range of int32"),
        ({"n": {"type": "uint8"}}, {"n": -1}, "out of range of uint8"),
        (
            {"rate": {"type": "int32"}},
            {"rate": 1.5},
            "unsupported conversion from `float64` to `int32`",
        ),
        (
            {"flag": {"type": "bool"}},
            {"flag": "true"},
            "unsupported conversion from `string` to `bool`",
        ),
    ],
)
def test_schema_refusals(props: dict, value: dict, message: str) -> None:
    with pytest.raises(SchemaViolation, match=message.replace("`", ".")):
        _schema(props).check(from_py(value))


def test_schema_required() -> None:
    schema = _schema({"a": {"type": "string"}}, required=["a"])
    with pytest.raises(SchemaViolation, match="'a' is required"):
        schema.check(from_py({}))
    schema.check(from_py({"a": "x"}))


def _write(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj), encoding="utf-8")


def test_flatten_merges_identical_definitions(tmp_path: Path) -> None:
    _write(
        tmp_path / "iface.json",
        {
            "property": {"properties": {"shared": {"type": "int32"}, "extra": {"type": "bool"}}},
            "data_out": [
                {"name": "asr_result", "property": {"properties": {"text": {"type": "string"}}}}
            ],
        },
    )
    manifest = {
        "api": {
            "interface": [{"import_uri": "iface.json"}],
            "property": {"properties": {"shared": {"type": "int32"}}, "required": ["shared"]},
        }
    }
    store = build_schema_store(manifest, str(tmp_path), None, lambda m: None)
    assert store is not None and store.property is not None
    assert set(store.property.properties or {}) == {"shared", "extra"}
    assert store.property.required == []  # top-level required is not merged
    assert store.msg_schema("data", "out", "asr_result") is not None


def test_flatten_conflict_installs_no_schema_at_all(tmp_path: Path) -> None:
    _write(
        tmp_path / "iface.json",
        {"property": {"properties": {"params": {"type": "object", "properties": {}}}}},
    )
    manifest = {
        "api": {
            "interface": [{"import_uri": "iface.json"}],
            "property": {
                "properties": {
                    "params": {"type": "object", "properties": {"rate": {"type": "int32"}}},
                    "other": {"type": "int32"},
                }
            },
        }
    }
    warnings: list[str] = []
    assert build_schema_store(manifest, str(tmp_path), None, warnings.append) is None
    assert any("Failed to flatten manifest api definition" in w for w in warnings)


def test_flatten_fails_on_missing_or_circular_imports(tmp_path: Path) -> None:
    warnings: list[str] = []
    missing = {"api": {"interface": [{"import_uri": "nope.json"}], "property": {"properties": {}}}}
    assert build_schema_store(missing, str(tmp_path), None, warnings.append) is None
    _write(tmp_path / "a.json", {"interface": [{"import_uri": "b.json"}]})
    _write(tmp_path / "b.json", {"interface": [{"import_uri": "a.json"}]})
    circular = {"api": {"interface": [{"import_uri": "a.json"}]}}
    assert build_schema_store(circular, str(tmp_path), None, warnings.append) is None
    assert any("Circular reference" in w for w in warnings)


def test_graph_routes_from_dest_and_source_forms() -> None:
    graph = parse_graph(
        {
            "nodes": [
                {"type": "extension", "name": "a", "addon": "x"},
                {"type": "extension", "name": "b", "addon": "x"},
                {"type": "extension", "name": "c", "addon": "x"},
            ],
            "connections": [
                {
                    "extension": "a",
                    "data": [
                        {"names": ["d1", "d2"], "dest": [{"extension": "b"}, {"extension": "c"}]}
                    ],
                },
                {"extension": "c", "cmd": [{"name": "q", "source": [{"extension": "b"}]}]},
            ],
        }
    )
    assert graph.routes[("a", "data", "d1")] == ["b", "c"]
    assert graph.routes[("a", "data", "d2")] == ["b", "c"]
    assert graph.routes[("b", "cmd", "q")] == ["c"]


@pytest.mark.parametrize(
    ("graph", "fragment"),
    [
        ({"nodes": []}, "non-empty 'nodes'"),
        ({"nodes": [{"type": "extension", "name": "a-b", "addon": "x"}]}, "nodes[0].name"),
        (
            {
                "nodes": [
                    {"type": "extension", "name": "a", "addon": "x"},
                    {"type": "extension", "name": "a", "addon": "y"},
                ]
            },
            "duplicate node name 'a'",
        ),
        (
            {
                "nodes": [{"type": "extension", "name": "a", "addon": "x"}],
                "connections": [
                    {"extension": "a", "data": [{"name": "d", "dest": [{"extension": "ghost"}]}]}
                ],
            },
            "unknown node 'ghost'",
        ),
        (
            {
                "nodes": [{"type": "extension", "name": "a", "addon": "x"}],
                "connections": [
                    {
                        "extension": "a",
                        "data": [{"name": "d", "names": ["e"], "dest": [{"extension": "a"}]}],
                    }
                ],
            },
            "exactly one of 'name' or 'names'",
        ),
        (
            {
                "nodes": [{"type": "extension", "name": "a", "addon": "x"}],
                "connections": [
                    {
                        "extension": "a",
                        "cmd": [
                            {
                                "name": "d",
                                "dest": [{"extension": "a"}],
                                "source": [{"extension": "a"}],
                            }
                        ],
                    }
                ],
            },
            "exactly one of 'dest' or 'source'",
        ),
        (
            {
                "nodes": [
                    {
                        "type": "extension",
                        "name": "ten:test_extension",
                        "addon": "ten:test_extension",
                    }
                ]
            },
            "nodes[0].name",
        ),
    ],
)
def test_graph_validation_names_the_offending_item(graph: dict, fragment: str) -> None:
    with pytest.raises(GraphError) as info:
        parse_graph(graph)
    assert fragment in str(info.value)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_pretty_json_text_is_exactly_the_indented_json_of_the_value(value: object) -> None:
    """The fast pretty printer writes what json.dumps(indent=4) writes (unicode kept,
    non-finite floats as null), so get_property_to_json's text did not change."""
    tree = from_py(value)
    assert to_json_text(tree) == json.dumps(to_py(tree), indent=4, ensure_ascii=False)
