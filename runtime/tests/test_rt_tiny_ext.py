"""The fixture extension ``tiny_ext`` (written from the contract only) under a tester.

It is found like a real package: ``ten_packages.extension.tiny_ext`` on
sys.path, whose ``__init__`` imports ``addon`` (which applies the decorator).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ten_runtime import (
    AsyncExtensionTester,
    AsyncTenEnvTester,
    AudioFrame,
    Cmd,
    Data,
    TenError,
    TenErrorCode,
)


class TinyTester(AsyncExtensionTester):
    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}
        self.stream: list[tuple[int, bool]] = []
        self.reports: list[dict[str, Any]] = []
        self.greeting = ""

    async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
        result, err = await ten_env.send_cmd(Cmd.create("get_config"))
        assert err is None and result is not None
        self.config = json.loads(result.get_property_to_json("detail")[0])

        stream = Cmd.create("stream")
        stream.set_property_int("count", 2)
        async for partial, err in ten_env.send_cmd_ex(stream):
            assert err is None and partial is not None
            self.stream.append((partial.get_property_int("index")[0], partial.is_completed()))

        greet = Data.create("greet")
        greet.set_property_string("who", "tester")
        await ten_env.send_data(greet)

        for i in range(4):
            frame = AudioFrame.create("pcm_frame")
            frame.set_property_from_json("metadata", json.dumps({"session_id": f"s{i}"}))
            frame.alloc_buf(320)
            view = frame.lock_buf()
            view[:] = bytes([i]) * 320
            frame.unlock_buf(view)
            frame.set_sample_rate(16000)
            frame.set_bytes_per_sample(2)
            frame.set_number_of_channels(1)
            frame.set_samples_per_channel(160)
            await ten_env.send_audio_frame(frame)

    async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
        if data.get_name() == "greeting":
            self.greeting = data.get_property_string("text")[0]
        elif data.get_name() == "frame_report":
            self.reports.append(json.loads(data.get_property_to_json()[0]))
        if self.greeting and len(self.reports) == 2:
            ten_env.stop_test()


def test_tiny_ext_properties_data_frames_and_cmds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINY_EXT_GREETING", raising=False)
    monkeypatch.setenv("TINY_EXT_API_KEY", "key-from-env")
    tester = TinyTester()
    tester.set_test_mode_single("tiny_ext", json.dumps({"params": {"language": "fr-FR"}}))
    assert tester.run() is None
    assert tester.config == {
        "greeting": "hello",  # ${env:TINY_EXT_GREETING|hello} with the variable unset
        "report_every": 2,
        "params": {"api_key": "key-from-env", "language": "fr-FR", "sample_rate": 16000},
    }
    assert tester.stream == [(0, False), (1, False), (2, True)]
    assert tester.greeting == "hello, tester"
    assert tester.reports == [
        {"frames": 2, "bytes": 640, "sample_rate": 16000, "metadata": {"session_id": "s1"}},
        {"frames": 4, "bytes": 1280, "sample_rate": 16000, "metadata": {"session_id": "s3"}},
    ]


def test_tiny_ext_greeting_from_env_and_stop_test_with_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TINY_EXT_GREETING", "bonjour")

    class FailingTester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            greet = Data.create("greet")
            greet.set_property_string("who", "x")
            await ten_env.send_data(greet)

        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            text, _ = data.get_property_string("text")
            ten_env.stop_test(TenError.create(TenErrorCode.ErrorCodeGeneric, f"unexpected: {text}"))

    tester = FailingTester()
    tester.set_test_mode_single("tiny_ext")
    err = tester.run()
    assert err is not None
    assert (err.error_code(), err.error_message()) == (1, "unexpected: bonjour, x")
