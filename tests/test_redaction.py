"""Secrets are masked where they could leak, and no other text is touched."""

from __future__ import annotations

import json

from asr_harness import AsrTester, ServerThread, load_config, run_asr_test
from hypothesis import given
from hypothesis import strategies as st

from xai_asr_python.config import mask_secret, redact


def test_a_short_key_is_masked_as_a_whole_token_only() -> None:
    # A one-letter key must not mangle the words that contain its letter.
    assert redact("invalid api key", "k") == "invalid api key"
    assert redact("the server rejected the API key (HTTP 401)", "k") == (
        "the server rejected the API key (HTTP 401)"
    )
    # Where a key leaks it stands alone: a header, a query value, a quoted value.
    assert redact("Authorization: Bearer k", "k") == "Authorization: Bearer ***"
    assert redact("wss://host/v1/stt?api_key=k&language=en", "k") == (
        "wss://host/v1/stt?api_key=***&language=en"
    )
    assert redact("got 'k'", "k") == "got '***'"
    assert redact('{"api_key": "ab-1"}', "ab-1") == '{"api_key": "***"}'


def test_a_long_key_is_masked_wherever_it_appears() -> None:
    key = "xai-0123456789abcdef"
    assert redact(f"prefix{key}suffix and {key}", key) == (
        f"prefix{mask_secret(key)}suffix and {mask_secret(key)}"
    )
    assert key not in redact(f"Bearer {key}", key)


@given(
    secret=st.text(alphabet="abcdefxyz0123-_", min_size=1, max_size=20),
    words=st.lists(st.sampled_from(["key", "api", "invalid", "x", "a-b", "(401)", "="])),
)
def test_redaction_never_leaks_a_standalone_key_nor_changes_text_without_it(
    secret: str, words: list[str]
) -> None:
    text = " ".join(words)
    leaked = f"{text} Bearer {secret} {text}"
    assert f" {secret} " not in redact(leaked, secret)
    if secret not in text:
        assert redact(text, secret) == text


def test_a_one_letter_key_refused_by_the_server_gives_a_readable_error() -> None:
    with ServerThread(recognizer="marker", api_key="the-right-key") as srv:
        props = load_config("fast_faults", params={"base_url": srv.url, "api_key": "k"})

        async def script(t: AsrTester) -> None:
            error = await t.wait_for("error", timeout=5)
            assert error["code"] == -1000
            assert "API key" in error["message"], error["message"]
            assert "***ey" not in json.dumps(error), error

        run_asr_test(props, script)
