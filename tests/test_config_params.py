"""xAI's optional query parameters and finalize_mode: validated, and sent on the wire.

keyterm, filler_words, smart_turn, smart_turn_timeout and vad_threshold go into the
connect URL only when set; a bad value is a FATAL error naming its field.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
from asr_harness import AsrTester, ServerThread, load_config, run_asr_test

from xai_asr_python.config import ConfigError, parse_config, parse_params_update
from xai_asr_python.extension import settings_from_config
from xai_asr_python.protocol import build_query, build_url
from xai_asr_python.session_types import SessionSettings

SECRET = "sk-test-DO-NOT-LEAK-7d2e19b0"

QUERY_DEFAULTS: dict[str, Any] = dict(
    sample_rate=16000,
    encoding="pcm",
    interim_results=True,
    endpointing_ms=300,
    language="en",
    diarize=False,
    multichannel=False,
    channels=1,
)
OPTIONAL_KEYS = ("keyterm", "filler_words", "smart_turn", "smart_turn_timeout", "vad_threshold")


def _params(**params: Any) -> dict[str, Any]:
    return {"params": {"api_key": SECRET, **params}}


def _error(properties: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(properties)
    assert SECRET not in str(info.value)
    return info.value


def _query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


# --------------------------------------------------------------------------- config


def test_every_new_parameter_is_unset_by_default_and_finalize_mode_is_auto() -> None:
    config = parse_config(_params())
    for key in OPTIONAL_KEYS:
        assert getattr(config.params, key) is None, key
    assert config.finalize_mode == "auto"
    settings = settings_from_config(config)
    assert settings.keyterms == ()
    assert (settings.filler_words, settings.smart_turn, settings.vad_threshold) == (None,) * 3
    assert settings.smart_turn_timeout_ms is None
    assert settings.finalize_mode == "auto"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["TEN"], ["TEN"]),
        ([" Grok ", "xAI"], ["Grok", "xAI"]),  # surrounding spaces trimmed
        (["x" * 50], ["x" * 50]),
        (["x"], ["x"]),
        ([f"term{i}" for i in range(100)], [f"term{i}" for i in range(100)]),
        ([], []),
        (None, None),
    ],
)
def test_keyterm_good_values(value: Any, expected: Any) -> None:
    assert parse_config(_params(keyterm=value)).params.keyterm == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("TEN", "must be a list of strings"),
        ({"a": 1}, "must be a list of strings"),
        (["a", 3], "term 1 is not a string"),
        ([True], "term 0 is not a string"),
        ([""], "term 0 is empty"),
        (["ok", "   "], "term 1 is empty"),
        (["x" * 51], "term 0 is 51 characters long (at most 50)"),
        ([" " + "x" * 51 + " "], "term 0 is 51 characters long"),
        (["t"] * 101, "101 terms, at most 100 allowed"),
    ],
)
def test_keyterm_bad_values_name_the_field(value: Any, reason: str) -> None:
    error = _error(_params(keyterm=value))
    assert error.field == "params.keyterm"
    assert str(error).startswith("invalid property params.keyterm: ")
    assert reason in error.reason


def test_a_bad_keyterm_never_echoes_the_key() -> None:
    # The key pasted into the keyterm list by mistake: rejected, still a secret.
    error = _error(_params(keyterm=[SECRET, 7]))
    assert error.field == "params.keyterm" and SECRET not in str(error)


@pytest.mark.parametrize("value", [True, False, None])
def test_filler_words_good_values(value: Any) -> None:
    assert parse_config(_params(filler_words=value)).params.filler_words is value


@pytest.mark.parametrize("value", ["true", 1, 0, [True]])
def test_filler_words_bad_values_name_the_field(value: Any) -> None:
    assert _error(_params(filler_words=value)).field == "params.filler_words"


@pytest.mark.parametrize("key", ["smart_turn", "vad_threshold"])
@pytest.mark.parametrize(
    ("value", "expected"), [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (0, 0.0), (1, 1.0), (None, None)]
)
def test_fraction_good_values(key: str, value: Any, expected: Any) -> None:
    assert getattr(parse_config(_params(**{key: value})).params, key) == expected


@pytest.mark.parametrize("key", ["smart_turn", "vad_threshold"])
@pytest.mark.parametrize("value", [-0.01, 1.01, 2, -1, True, "0.5", float("nan"), float("inf")])
def test_fraction_bad_values_name_the_field(key: str, value: Any) -> None:
    error = _error(_params(**{key: value}))
    assert error.field == f"params.{key}"
    assert str(error).startswith(f"invalid property params.{key}: ")


@pytest.mark.parametrize("value", [1, 2000, 5000])
def test_smart_turn_timeout_good_values(value: int) -> None:
    params = parse_config(_params(smart_turn=0.5, smart_turn_timeout=value)).params
    assert params.smart_turn_timeout == value


@pytest.mark.parametrize("value", [0, -1, 5001, 1.5, "100", True])
def test_smart_turn_timeout_bad_values_name_the_field(value: Any) -> None:
    error = _error(_params(smart_turn=0.5, smart_turn_timeout=value))
    assert error.field == "params.smart_turn_timeout"


def test_smart_turn_timeout_is_only_valid_with_smart_turn() -> None:
    error = _error(_params(smart_turn_timeout=1000))
    assert error.field == "params.smart_turn_timeout"
    assert "only valid together with smart_turn" in error.reason


@pytest.mark.parametrize("mode", ["auto", "finalize", "audio_done"])
def test_finalize_mode_good_values(mode: str) -> None:
    config = parse_config({**_params(), "finalize_mode": mode})
    assert config.finalize_mode == mode
    assert settings_from_config(config).finalize_mode == mode


@pytest.mark.parametrize("mode", ["", "Finalize", "audio.done", "none", 1, None, True])
def test_finalize_mode_bad_values_name_the_field(mode: Any) -> None:
    error = _error({**_params(), "finalize_mode": mode})
    assert error.field == "finalize_mode"
    assert "'auto', 'finalize' or 'audio_done'" in error.reason


def test_update_configs_validates_the_new_parameters_too() -> None:
    current = parse_config(_params(smart_turn=0.4, smart_turn_timeout=800, keyterm=["a"])).params
    updated = parse_params_update(current, {"keyterm": ["b", " c "], "vad_threshold": 0.2})
    assert updated.keyterm == ["b", "c"] and updated.vad_threshold == 0.2
    assert updated.smart_turn_timeout == 800  # kept
    with pytest.raises(ConfigError) as info:
        parse_params_update(current, {"keyterm": [""]})
    assert info.value.field == "params.keyterm"
    with pytest.raises(ConfigError) as info:
        parse_params_update(current, {"smart_turn": None})  # the timeout would be left alone
    assert info.value.field == "params.smart_turn_timeout"


def test_the_redacted_config_shows_the_new_parameters_and_masks_the_key() -> None:
    config = parse_config(
        {**_params(keyterm=["Grok"], filler_words=True), "finalize_mode": "finalize"}
    )
    redacted = config.redacted()
    assert redacted["finalize_mode"] == "finalize"
    assert redacted["params"]["keyterm"] == ["Grok"]
    assert redacted["params"]["filler_words"] is True
    assert SECRET not in json.dumps(redacted)


# --------------------------------------------------------------------------- query


def test_unset_parameters_are_not_sent() -> None:
    query = build_query(**QUERY_DEFAULTS)
    assert not set(query) & set(OPTIONAL_KEYS)
    url = settings_from_config(parse_config(_params())).connect_url()
    assert not set(_query_of(url)) & set(OPTIONAL_KEYS)


def test_the_query_carries_every_parameter_set() -> None:
    query = build_query(
        **QUERY_DEFAULTS,
        keyterms=("TEN Framework", "Grok"),
        filler_words=False,
        smart_turn=0.5,
        smart_turn_timeout_ms=1200,
        vad_threshold=0.0,
    )
    assert query["keyterm"] == ["TEN Framework", "Grok"]
    assert query["filler_words"] == "false"  # lower-case, and sent though false
    assert query["smart_turn"] == "0.5"
    assert query["smart_turn_timeout"] == "1200"
    assert query["vad_threshold"] == "0.0"  # 0 (gate off) is a value, not unset
    assert build_query(**QUERY_DEFAULTS, filler_words=True)["filler_words"] == "true"


def test_keyterms_are_repeated_query_parameters_in_order() -> None:
    url = build_url("wss://api.x.ai/v1/stt", build_query(**QUERY_DEFAULTS, keyterms=["A", "B c"]))
    query = urlsplit(url).query
    assert "keyterm=A&keyterm=B+c" in query
    assert [v for k, v in parse_qsl(query) if k == "keyterm"] == ["A", "B c"]


def test_no_keyterm_is_sent_for_an_empty_list() -> None:
    assert "keyterm" not in build_query(**QUERY_DEFAULTS, keyterms=[])


def test_fractions_are_sent_as_plain_decimals() -> None:
    query = build_query(**QUERY_DEFAULTS, smart_turn=1e-05, vad_threshold=1)
    assert query["smart_turn"] == "0.00001"  # never "1e-05"
    assert query["vad_threshold"] == "1.0"


def test_base_url_query_merges_and_ours_wins_for_repeated_keys_too() -> None:
    url = build_url(
        "wss://api.x.ai/v1/stt?team=t1&keyterm=old&keyterm=older&sample_rate=8000",
        build_query(**QUERY_DEFAULTS, keyterms=["new"]),
    )
    query = _query_of(url)
    assert query["team"] == ["t1"]
    assert query["keyterm"] == ["new"]
    assert query["sample_rate"] == ["16000"]


def test_build_url_still_takes_a_plain_string_mapping() -> None:
    url = build_url("ws://127.0.0.1:1/v1/stt?a=1", {"b": "2"})
    assert _query_of(url) == {"a": ["1"], "b": ["2"]}


def test_the_live_params_example_becomes_the_connect_url() -> None:
    props = load_config("live_params", params={"api_key": SECRET})
    settings = settings_from_config(parse_config(props))
    assert settings.keyterms == ("TEN Framework", "xAI", "Grok")
    assert settings.finalize_mode == "auto"
    url = settings.connect_url()
    assert SECRET not in url
    query = _query_of(url)
    assert query["keyterm"] == ["TEN Framework", "xAI", "Grok"]
    assert query["filler_words"] == ["false"]
    assert query["smart_turn"] == ["0.5"]
    assert query["smart_turn_timeout"] == ["2000"]
    assert query["vad_threshold"] == ["0.1"]
    redacted = settings.redacted()
    assert redacted["keyterms"] == ["TEN Framework", "xAI", "Grok"]
    assert redacted["smart_turn_timeout_ms"] == 2000
    assert redacted["finalize_mode"] == "auto"
    assert SECRET not in json.dumps(redacted)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "bad",
    [
        {"finalize_mode": "sometimes"},
        {"keyterms": ("",)},
        {"keyterms": ("x" * 51,)},
        {"keyterms": ("t",) * 101},
        {"smart_turn": 1.5},
        {"vad_threshold": -0.1},
        {"smart_turn_timeout_ms": 500},  # without smart_turn
        {"smart_turn": 0.5, "smart_turn_timeout_ms": 0},
        {"smart_turn": 0.5, "smart_turn_timeout_ms": 5001},
    ],
)
def test_session_settings_refuse_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SessionSettings(url="ws://127.0.0.1:1/v1/stt", api_key="", **bad)


def test_session_settings_keep_keyterms_as_a_tuple() -> None:
    settings = SessionSettings(url="ws://127.0.0.1:1/v1/stt", api_key="", keyterms=["a", "b"])
    assert settings.keyterms == ("a", "b")


# --------------------------------------------------------------------------- extension


@pytest.fixture
def srv():
    with ServerThread(recognizer="marker") as server:
        yield server


def _as_lists(query: dict[str, Any]) -> dict[str, list[str]]:
    """The server's record of a query, one list per key, whether it keeps one value per
    key or every value."""
    return parse_qs(urlencode(query, doseq=True), keep_blank_values=True)


def test_the_extension_sends_the_new_parameters_to_the_server(srv) -> None:
    props = load_config("live_params", params={"base_url": srv.url, "api_key": SECRET})

    async def script(t: AsrTester) -> None:
        await srv.wait_for_connection(1)
        await t.wait_for(
            "connection_status_changed", lambda m: m["current"] == "connected", timeout=5
        )

    tester = run_asr_test(props, script)
    assert tester.messages("error") == []
    query = _as_lists(srv.connections[0].query)
    assert query["filler_words"] == ["false"]
    assert query["smart_turn"] == ["0.5"]
    assert query["smart_turn_timeout"] == ["2000"]
    assert query["vad_threshold"] == ["0.1"]
    assert "keyterm" in query


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"params": {"keyterm": ["ok", ""]}}, "params.keyterm"),
        ({"params": {"keyterm": ["x" * 51]}}, "params.keyterm"),
        ({"params": {"smart_turn": 1.5}}, "params.smart_turn"),
        ({"params": {"smart_turn": None, "smart_turn_timeout": 500}}, "params.smart_turn_timeout"),
        ({"params": {"vad_threshold": 2.0}}, "params.vad_threshold"),
        ({"finalize_mode": "sometimes"}, "finalize_mode"),
    ],
)
def test_a_bad_new_property_gives_a_fatal_error_naming_the_field(
    srv, override: dict[str, Any], field: str
) -> None:
    props = load_config("live_params", params={"base_url": srv.url, "api_key": SECRET})
    # Read, never popped: the parameters are shared by every run of the test in a
    # process (the mutation run calls pytest more than once in one).
    params = override.get("params", {})
    props.update({k: v for k, v in override.items() if k != "params"})
    props["params"].update(params)
    props["params"] = {k: v for k, v in props["params"].items() if v is not None}

    async def script(t: AsrTester) -> None:
        error = await t.wait_for("error", timeout=5)
        assert error["code"] == -1000
        assert f"invalid property {field}:" in error["message"], error["message"]
        assert SECRET not in json.dumps(error)
        # The extension stays up and makes no connection.
        await t.send_finalize("f1")
        await t.wait_for("asr_finalize_end", timeout=3)

    run_asr_test(props, script)
    assert srv.connections == []
