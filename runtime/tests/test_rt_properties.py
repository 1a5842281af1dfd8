"""Extension properties (§5.1, §9.3-9.5, §10): defaults, merge, env, schema, quirks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import StopWhenReady, register_extension, send_ready

from ten_runtime import AsyncExtension, AsyncTenEnv
from ten_runtime.standin import GraphStartError, clear_recorded_logs, recorded_logs


class Probe(AsyncExtension):
    """Runs ``probe(ten_env)`` in on_start, stores its result, then reports ready."""

    probe: Any = None
    out: dict[str, Any] = {}

    async def on_start(self, ten_env: AsyncTenEnv) -> None:
        type(self).out.update(await type(self).probe(ten_env))
        await send_ready(ten_env)


def run_probe(
    probe: Any,
    tmp_path: Path | None = None,
    property_json: dict[str, Any] | None = None,
    manifest: dict[str, Any] | None = None,
    graph_property: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cls = type("ProbeExt", (Probe,), {"probe": staticmethod(probe), "out": out})
    base_file = None
    if tmp_path is not None:
        if property_json is not None:
            (tmp_path / "property.json").write_text(json.dumps(property_json), encoding="utf-8")
        if manifest is not None:
            (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        base_file = str(tmp_path / "addon.py")
    addon = register_extension("prop", cls, base_file)
    tester = StopWhenReady()
    tester.set_test_mode_single(addon, json.dumps(graph_property or {}))
    assert tester.run() is None
    return out


async def dump_all(ten_env: AsyncTenEnv) -> dict[str, Any]:
    text, err = await ten_env.get_property_to_json("")
    assert err is None
    return {"config": json.loads(text), "raw": text}


def test_property_json_defaults_deep_merged_with_graph_property(tmp_path: Path) -> None:
    defaults = {
        "params": {"api_key": "", "base_url": "wss://x", "channels": 1, "list": [1, 2]},
        "dump": False,
    }
    out = run_probe(
        dump_all,
        tmp_path,
        property_json=defaults,
        graph_property={"params": {"api_key": "k", "language": "en", "list": [9]}},
    )
    assert out["config"] == {
        "params": {
            "api_key": "k",
            "base_url": "wss://x",
            "channels": 1,
            "list": [9],
            "language": "en",
        },
        "dump": False,
    }
    assert out["raw"].startswith('{\n    "params": {\n        "api_key": "k",')


def test_env_placeholders_default_and_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_PROP_SET", "1234")
    monkeypatch.delenv("RT_PROP_UNSET", raising=False)
    out = run_probe(
        dump_all,
        tmp_path,
        property_json={
            "a": "${env:RT_PROP_SET}",
            "b": "${env:RT_PROP_UNSET|dflt}",
            "c": "${env:RT_PROP_UNSET|}",
            "nested": {"d": "${env:RT_PROP_SET|x}"},
        },
        graph_property={"e": "${env:RT_PROP_SET}"},
    )
    assert out["config"] == {
        "a": "1234",
        "b": "dflt",
        "c": "",
        "nested": {"d": "1234"},
        "e": "1234",
    }


def test_missing_env_var_without_default_is_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RT_PROP_MISSING", raising=False)
    with pytest.raises(GraphStartError, match="RT_PROP_MISSING"):
        run_probe(dump_all, tmp_path, property_json={"api_key": "${env:RT_PROP_MISSING}"})


SCHEMA_MANIFEST = {
    "type": "extension",
    "name": "prop",
    "version": "0.1.0",
    "api": {
        "property": {
            "properties": {
                "rate": {"type": "int32"},
                "gain": {"type": "float64"},
                "flag": {"type": "bool"},
                "name": {"type": "string"},
                "params": {"type": "object", "properties": {"x": {"type": "int8"}}},
            }
        }
    },
}


async def typed_reads(ten_env: AsyncTenEnv) -> dict[str, Any]:
    return {
        "rate": await ten_env.get_property_int("rate"),
        "gain": await ten_env.get_property_float("gain"),
        "plain_int_as_float": await ten_env.get_property_float("plain"),
        "float_as_int": await ten_env.get_property_int("gain"),
        "int_as_string": await ten_env.get_property_string("rate"),
        "missing_exists": await ten_env.is_property_exist("nope"),
        "present_exists": await ten_env.is_property_exist("params.x"),
        "missing_string": await ten_env.get_property_string("nope"),
        "set_out_of_range": await ten_env.set_property_int("rate", 2**40),
        "set_ok": await ten_env.set_property_int("rate", 8000),
        "rate_after": await ten_env.get_property_int("rate"),
        "nested_unchecked": await ten_env.set_property_int("params.x", 1000),
        "set_float_on_int": await ten_env.set_property_float("rate", 1.5),
        "empty_path": await ten_env.set_property_string("", "x"),
        "app_read": await ten_env.get_property_to_json("app:ten"),
        "app_write": await ten_env.set_property_string("app:k", "v"),
        "bool_as_bool": await ten_env.get_property_bool("flag"),
    }


def test_schema_adjusts_on_load_and_checks_top_level_writes(tmp_path: Path) -> None:
    out = run_probe(
        typed_reads,
        tmp_path,
        property_json={"rate": 16000, "gain": 2, "plain": 16000, "flag": True, "params": {"x": 1}},
        manifest=SCHEMA_MANIFEST,
    )
    assert out["rate"] == (16000, None)
    assert out["gain"] == (2.0, None)  # declared float64: the JSON int was converted
    value, err = out["plain_int_as_float"]
    assert value == 0.0 and err.error_code() == 1  # undeclared uint64 stays an int
    assert "uint64" in err.error_message() and "unfit" in err.error_message()
    assert out["float_as_int"] == (0, None)  # async int getter quirk (Q3)
    assert out["int_as_string"] == (None, None)  # async string getter quirk (Q4)
    assert out["missing_exists"] == (False, None)  # absence is not an error
    assert out["present_exists"] == (True, None)
    assert out["missing_string"][1].error_code() == 100000
    err = out["set_out_of_range"]
    assert (
        err is not None and err.error_code() == 1 and "out of range of int32" in err.error_message()
    )
    assert out["set_ok"] is None and out["rate_after"] == (8000, None)
    assert out["nested_unchecked"] is None  # only exact top-level names are validated
    err = out["set_float_on_int"]
    assert (
        err is not None
        and "unsupported conversion from `float64` to `int32`" in err.error_message()
    )
    err = out["empty_path"]
    assert (err.error_code(), err.error_message()) == (3, "path should not be empty.")
    assert out["app_read"][1].error_code() == 100000  # the test app has no such property
    assert out["app_write"].error_code() == 1
    assert out["bool_as_bool"] == (True, None)


@pytest.mark.parametrize(
    ("props", "fragment"),
    [
        ({"rate": 2**31}, "out of range of int32"),
        ({"rate": 1.5}, "unsupported conversion from `float64` to `int32`"),
        ({"flag": "true"}, "unsupported conversion from `string` to `bool`"),
        ({"params": {"x": 300}}, "out of range of int8"),
    ],
)
def test_schema_violation_at_configure_is_fatal(tmp_path: Path, props: dict, fragment: str) -> None:
    with pytest.raises(GraphStartError) as info:
        run_probe(dump_all, tmp_path, property_json=props, manifest=SCHEMA_MANIFEST)
    assert fragment in str(info.value)


def test_required_property_missing_is_fatal(tmp_path: Path) -> None:
    manifest = json.loads(json.dumps(SCHEMA_MANIFEST))
    manifest["api"]["property"]["required"] = ["name"]
    with pytest.raises(GraphStartError, match="'name' is required"):
        run_probe(dump_all, tmp_path, property_json={"rate": 1}, manifest=manifest)


def test_interface_conflict_disables_every_schema_check(tmp_path: Path) -> None:
    (tmp_path / "iface.json").write_text(
        json.dumps({"property": {"properties": {"params": {"type": "object", "properties": {}}}}}),
        encoding="utf-8",
    )
    manifest = json.loads(json.dumps(SCHEMA_MANIFEST))
    manifest["api"]["interface"] = [{"import_uri": "iface.json"}]
    clear_recorded_logs()
    # rate is a string and flag an int: both would be fatal with a schema.
    out = run_probe(
        dump_all, tmp_path, property_json={"rate": "fast", "flag": 1}, manifest=manifest
    )
    assert out["config"] == {"rate": "fast", "flag": 1}
    assert any("Failed to flatten manifest api definition" in r.msg for r in recorded_logs())


async def json_quirks(ten_env: AsyncTenEnv) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, path, text in (("bad_json", "k", "{oops"), ("none_path", None, "{}")):
        try:
            await ten_env.set_property_from_json(path, text)  # type: ignore[arg-type]
            out[key] = "no exception"
        except ValueError:
            out[key] = "ValueError"
    out["set"] = await ten_env.set_property_from_json("a.b", '{"c": [1, 2.0]}')
    out["get"] = await ten_env.get_property_to_json("a.b.c")
    return out


def test_set_property_from_json_quirks_and_typed_storage() -> None:
    out = run_probe(json_quirks)
    assert out["bad_json"] == "ValueError" and out["none_path"] == "ValueError"  # Q5
    assert out["set"] is None
    assert json.loads(out["get"][0]) == [1, 2.0]
    assert out["get"][0] == "[\n    1,\n    2.0\n]"
