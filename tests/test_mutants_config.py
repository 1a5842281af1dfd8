"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in config.py once tests/test_config_params.py ran against it: the error a
bad property gives (README "Properties": a FATAL `error` naming the field, with the
bad value shown, e.g. `invalid property params.sample_rate: must be one of 8000, ...
(got 12345)`) and `update_configs`' refusal, whose message is the CmdResult's detail.

Survivors left as equivalent:
- `_first_error`: `errors(include_input=False)` -> `True`: only the error's `loc`,
  `msg` and `type` are read; `input` is an extra key nobody reads.
- `_first_error`: `err["type"] != "missing"` -> `!= "XXmissingXX"`: a "missing" error
  is about a key absent from the input, so its value is `_MISSING` and the value
  clause before it is already false (the check is redundant; no field can be
  missing today anyway: every field has a default and `params` is always set).
- `_first_error`: the location filter `startswith("function-")` -> `"XXfunction-XX"`
  (sample seed 1): with these models no error location holds a `function-...` part.
  pydantic names a validator in a location only for a member of a union it tried,
  and every optional field here is `X | None`, which pydantic builds as a nullable
  schema, not a union (checked with pydantic 2.14.4: every field of both models given
  a string, None, a float, a large and a negative int, a list, a dict, a bool, NaN,
  and each model validator's failure: no such part). The filter guards a future field.
"""

from __future__ import annotations

import pytest

from xai_asr_python.config import ConfigError, parse_config, parse_params_update

SECRET = "sk-test-DO-NOT-LEAK-7d2e19b0"


def _refusal(call: object, *args: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        call(*args)  # type: ignore[operator]
    assert SECRET not in str(info.value)
    return info.value


def test_params_that_are_not_an_object_are_refused_naming_params() -> None:
    error = _refusal(parse_config, {"params": ["api_key", SECRET]})
    assert (error.field, error.reason) == ("params", "must be an object")
    assert str(error) == "invalid property params: must be an object"


def test_a_bad_value_is_shown_in_the_start_error() -> None:
    error = _refusal(parse_config, {"params": {"api_key": SECRET, "sample_rate": 12345}})
    assert error.field == "params.sample_rate"
    assert error.reason.startswith("must be one of 8000, ")
    assert error.reason.endswith("(got 12345)")


def test_the_key_pasted_into_another_field_is_not_shown_in_the_start_error() -> None:
    """The echoed value would hold the key: it is masked, the rest still shown."""
    error = _refusal(parse_config, {"params": {"api_key": SECRET, "base_url": f"https://{SECRET}"}})
    assert error.field == "params.base_url"
    assert "(got " in error.reason and "https://" in error.reason


def test_a_bad_value_is_shown_in_the_update_configs_refusal() -> None:
    current = parse_config({"params": {"api_key": SECRET}}).params
    error = _refusal(parse_params_update, current, {"sample_rate": 12345})
    assert error.field == "params.sample_rate"
    assert error.reason.endswith("(got 12345)")
    error = _refusal(parse_params_update, current, {"base_url": f"https://{SECRET}"})
    assert "(got " in error.reason and "https://" in error.reason


def test_an_update_configs_whose_params_are_not_an_object_says_so() -> None:
    current = parse_config({"params": {"api_key": SECRET}}).params
    error = _refusal(parse_params_update, current, "sample_rate=8000")
    assert str(error) == "invalid property params: must be an object"


def test_properties_that_are_not_an_object_are_refused_naming_the_properties() -> None:
    """The whole property store is a JSON array: the error names `<properties>`."""
    error = _refusal(parse_config, '["params"]')
    assert (error.field, error.reason) == ("<properties>", "must be an object")
    assert str(error) == "invalid property <properties>: must be an object"


def test_a_blank_property_store_is_no_properties() -> None:
    """Blank text is an empty store, not broken JSON: what it lacks is the key, and the
    error says so."""
    for blank in ("", "  \n"):
        error = _refusal(parse_config, blank)
        assert error.field == "params.api_key"
        assert error.reason.startswith("is missing")


@pytest.mark.parametrize(
    ("language", "reported"),
    [("en", "en-US"), ("EN", "en-US"), ("Ja", "ja-JP"), ("en-GB", "en-GB"), ("sw", "sw")],
)
def test_results_report_the_language_with_its_region(language: str, reported: str) -> None:
    """README: `params.language` is a code; results report it as `en-US` etc. The short
    code is matched whatever its case; a code with a region, or one without a known
    region, is reported as given."""
    config = parse_config({"params": {"api_key": SECRET, "language": language}})
    assert config.language == reported
