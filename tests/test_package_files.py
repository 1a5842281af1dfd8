"""What we ship must load in TEN's tools: validate it with TEN's own schemas."""

from __future__ import annotations

import json
from pathlib import Path

from ten_schemas import REPO_ROOT, SCHEMA_DIR, validation_errors


def _load(path: Path) -> object:
    return json.loads(path.read_text())


def test_schemas_are_available() -> None:
    assert (SCHEMA_DIR / "manifest.schema.json").is_file(), f"missing TEN schemas at {SCHEMA_DIR}"


def test_manifest_validates_against_ten_schema() -> None:
    assert validation_errors(_load(REPO_ROOT / "manifest.json"), "manifest") == []


def test_property_json_validates_against_ten_schema() -> None:
    assert validation_errors(_load(REPO_ROOT / "property.json"), "property") == []


def test_schema_check_rejects_a_broken_manifest() -> None:
    # The validator must be able to fail: a name with a space is not an identifier.
    manifest = _load(REPO_ROOT / "manifest.json")
    assert isinstance(manifest, dict)
    manifest["name"] = "xai asr"
    assert any(e.startswith("name:") for e in validation_errors(manifest, "manifest"))


def test_manifest_name_matches_addon_registration() -> None:
    manifest = _load(REPO_ROOT / "manifest.json")
    assert isinstance(manifest, dict)
    addon_source = (REPO_ROOT / "addon.py").read_text()
    assert f'register_addon_as_extension("{manifest["name"]}")' in addon_source


def test_property_json_keys_are_declared_in_manifest() -> None:
    manifest = _load(REPO_ROOT / "manifest.json")
    props = _load(REPO_ROOT / "property.json")
    assert isinstance(manifest, dict) and isinstance(props, dict)
    declared = manifest["api"]["property"]["properties"]
    for key, value in props.items():
        assert key in declared, f"property.json key {key!r} is not declared in manifest.json"
        if isinstance(value, dict):
            for sub in value:
                assert sub in declared[key]["properties"], f"{key}.{sub} not declared"


def test_api_key_comes_from_the_environment() -> None:
    props = _load(REPO_ROOT / "property.json")
    assert isinstance(props, dict)
    assert props["params"]["api_key"] == "${env:XAI_API_KEY|}"


def test_example_graph_validates_as_an_app_property_json() -> None:
    graph = _load(REPO_ROOT / "examples" / "property.json")
    assert validation_errors(graph, "property") == []


def test_example_extensions_validate_against_ten_schemas() -> None:
    packages = sorted((REPO_ROOT / "examples" / "ten_packages" / "extension").iterdir())
    assert packages
    for package in packages:
        assert validation_errors(_load(package / "manifest.json"), "manifest") == [], package
        assert validation_errors(_load(package / "property.json"), "property") == [], package


def test_example_graph_uses_only_declared_addons() -> None:
    graph = _load(REPO_ROOT / "examples" / "property.json")
    assert isinstance(graph, dict)
    nodes = graph["ten"]["predefined_graphs"][0]["graph"]["nodes"]
    examples = REPO_ROOT / "examples" / "ten_packages" / "extension"
    for node in nodes:
        addon = node["addon"]
        manifest = (
            REPO_ROOT / "manifest.json"
            if addon == "xai_asr_python"
            else (examples / addon / "manifest.json")
        )
        assert _load(manifest)["name"] == addon  # type: ignore[index]


def test_examples_is_a_ten_app_whose_dependencies_are_the_graphs_packages() -> None:
    """examples/ opens in TEN's designer and installs with TEN's package manager: an
    app manifest naming the runtime and every extension its graph uses."""
    manifest = _load(REPO_ROOT / "examples" / "manifest.json")
    assert validation_errors(manifest, "manifest") == []
    assert isinstance(manifest, dict) and manifest["type"] == "app"
    names = set()
    for dependency in manifest["dependencies"]:
        if "path" in dependency:
            package = _load(REPO_ROOT / "examples" / dependency["path"] / "manifest.json")
            names.add(package["name"])  # type: ignore[index]
        else:
            names.add(dependency["name"])
            if dependency["type"] == "extension":
                local = REPO_ROOT / "examples" / "ten_packages" / "extension" / dependency["name"]
                version = _load(local / "manifest.json")["version"]  # type: ignore[index]
                assert version == dependency["version"], dependency
    graph = _load(REPO_ROOT / "examples" / "property.json")
    nodes = graph["ten"]["predefined_graphs"][0]["graph"]["nodes"]  # type: ignore[index]
    assert {"ten_runtime_python"} | {node["addon"] for node in nodes} == names


def test_the_package_includes_every_root_module() -> None:
    """TEN's package manager ships only package.include: a module left out breaks the
    installed extension (an ImportError in the app, not here)."""
    manifest = _load(REPO_ROOT / "manifest.json")
    include = set(manifest["package"]["include"])  # type: ignore[index]
    modules = {path.name for path in REPO_ROOT.glob("*.py")}
    assert modules - include == set()


def _fits(value: object, schema: dict[str, object]) -> bool:
    """Does a JSON value fit a TEN property schema (what TEN's own check accepts)?"""
    kind = schema["type"]
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(kind, str) and kind.startswith(("int", "uint")):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float32", "float64"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        items = schema["items"]
        assert isinstance(items, dict)
        return isinstance(value, list) and all(_fits(item, items) for item in value)
    if kind == "object":
        declared = schema.get("properties") or {}
        assert isinstance(declared, dict)
        return isinstance(value, dict) and all(
            _fits(v, declared[k]) for k, v in value.items() if k in declared
        )
    raise AssertionError(f"unexpected TEN type {kind!r}")


def test_example_configs_validate_and_use_only_declared_properties_of_their_types() -> None:
    """tests/configs/ are property.json files too: each must load in TEN, with every
    key declared in manifest.json and of the declared type."""
    manifest = _load(REPO_ROOT / "manifest.json")
    assert isinstance(manifest, dict)
    declared = manifest["api"]["property"]["properties"]
    configs = sorted((REPO_ROOT / "tests" / "configs").glob("property_*.json"))
    assert configs
    for path in configs:
        props = _load(path)
        assert isinstance(props, dict)
        assert validation_errors(props, "property") == [], path.name
        for key, value in props.items():
            assert key in declared, f"{path.name}: {key!r} is not declared in manifest.json"
            if isinstance(value, dict):
                for sub in value:
                    assert sub in declared[key]["properties"], f"{path.name}: {key}.{sub}"
            assert _fits(value, declared[key]), f"{path.name}: {key} is not a {declared[key]}"


def test_readme_lists_every_declared_property() -> None:
    """The README's Properties table and manifest.json name the same properties."""
    manifest = _load(REPO_ROOT / "manifest.json")
    assert isinstance(manifest, dict)
    declared = manifest["api"]["property"]["properties"]
    names = {f"params.{sub}" for sub in declared["params"]["properties"]}
    names |= {key for key in declared if key != "params"}
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Properties", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.split("`")[1]
        for line in table.splitlines()
        if line.startswith("| `") and line.count("`") >= 2
    }
    assert rows == names
