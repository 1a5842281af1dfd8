"""Message schemas (§4.2, §10.4): ``*_in`` checks on arrival, ``*_out`` checks on send.

On arrival the stand-in does what native TEN 2e56d96 does
(core/src/ten_runtime/extension/msg_handling.c, ten_extension_handle_in_msg, and
ten_extension_validate_msg_schema in extension/extension.c): an invalid message
is logged at WARN as ``See in <type>::<name> with invalid schema: ...`` and never
reaches the extension. A cmd is answered ERROR with the problem as its detail;
data and frames are dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rt_helpers import register_extension

from ten_runtime import (
    AsyncExtension,
    AsyncExtensionTester,
    AsyncTenEnv,
    AsyncTenEnvTester,
    AudioFrame,
    Cmd,
    CmdResult,
    Data,
    SendOptions,
    StatusCode,
    VideoFrame,
)
from ten_runtime.standin import clear_recorded_logs, recorded_logs

MANIFEST = {
    "type": "extension",
    "name": "schema_ext",
    "version": "0.1.0",
    "api": {
        "cmd_in": [
            {
                "name": "set_rate",
                "property": {"properties": {"rate": {"type": "int32"}}, "required": ["rate"]},
            },
            {
                "name": "ask",
                "result": {
                    "property": {
                        "properties": {"answer": {"type": "string"}},
                        "required": ["answer"],
                    }
                },
            },
        ],
        "data_in": [
            {"name": "meta", "property": {"properties": {"sample_rate": {"type": "int32"}}}}
        ],
        "audio_frame_in": [
            {
                "name": "pcm",
                "property": {"properties": {"metadata": {"type": "object", "properties": {}}}},
            }
        ],
        "video_frame_in": [{"name": "img", "property": {"properties": {"w": {"type": "int32"}}}}],
        "data_out": [
            {
                "name": "report",
                "property": {"properties": {"count": {"type": "int64"}}, "required": ["count"]},
            }
        ],
    },
}


class SchemaExt(AsyncExtension):
    seen: dict[str, Any] = {}

    async def on_cmd(self, ten_env: AsyncTenEnv, cmd: Cmd) -> None:
        self.seen.setdefault("cmds", []).append(cmd.get_name())
        if cmd.get_name() == "ask":
            bad = CmdResult.create(StatusCode.OK, cmd)
            self.seen["bad_result"] = await ten_env.return_result(
                bad, SendOptions(wait_for_result=True)
            )
            good = CmdResult.create(StatusCode.OK, cmd)
            good.set_property_string("answer", "42")
            await ten_env.return_result(good)
            return
        await ten_env.return_result(CmdResult.create(StatusCode.OK, cmd))

    async def on_audio_frame(self, ten_env: AsyncTenEnv, frame: AudioFrame) -> None:
        metadata = frame.get_property_to_json("metadata")[0]
        self.seen.setdefault("delivered", []).append(("audio_frame", frame.get_name(), metadata))

    async def on_video_frame(self, ten_env: AsyncTenEnv, frame: VideoFrame) -> None:
        width = frame.get_property_int("w")
        self.seen.setdefault("delivered", []).append(("video_frame", frame.get_name(), width))

    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        if data.get_name() == "meta":
            rate = data.get_property_int("sample_rate")
            self.seen.setdefault("delivered", []).append(("data", "meta", rate))
            return
        # "done" (undeclared, so never checked) comes after everything else the
        # tester sends; each sender's messages arrive in order.
        self.seen.setdefault("delivered", []).append(("data", data.get_name(), None))
        self.seen["bad_report"] = await ten_env.send_data(
            Data.create("report"), SendOptions(wait_for_result=True)
        )
        report = Data.create("report")
        report.set_property_int("count", 1)
        await ten_env.send_data(report)


def test_message_schemas_in_and_out(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST), encoding="utf-8")
    seen: dict[str, Any] = {}
    cls = type("Ext", (SchemaExt,), {"seen": seen})
    addon = register_extension("schema_ext", cls, str(tmp_path / "addon.py"))
    got: dict[str, Any] = {}

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            missing = Cmd.create("set_rate")
            got["missing_rate"] = await ten_env.send_cmd(missing)
            ok = Cmd.create("set_rate")
            ok.set_property_int("rate", 16000)
            got["ok_rate"] = await ten_env.send_cmd(ok)
            got["ask"] = await ten_env.send_cmd(Cmd.create("ask"))
            bad_meta = Data.create("meta")
            bad_meta.set_property_string("sample_rate", "not a number")
            await ten_env.send_data(bad_meta)
            meta = Data.create("meta")
            meta.set_property_int("sample_rate", 16000)  # an int64, adjusted to int32
            await ten_env.send_data(meta)
            bad_pcm = AudioFrame.create("pcm")
            bad_pcm.set_property_string("metadata", "not an object")
            await ten_env.send_audio_frame(bad_pcm)
            pcm = AudioFrame.create("pcm")
            pcm.set_property_from_json("metadata", '{"session_id": "s"}')
            await ten_env.send_audio_frame(pcm)
            bad_img = VideoFrame.create("img")
            bad_img.set_property_float("w", 1.5)  # float -> int32 is no conversion
            await ten_env.send_video_frame(bad_img)
            img = VideoFrame.create("img")
            img.set_property_int("w", 2)
            await ten_env.send_video_frame(img)
            await ten_env.send_data(Data.create("done"))

        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            got["report"] = data.get_property_int("count")
            ten_env.stop_test()

    clear_recorded_logs()
    tester = Tester()
    tester.set_test_mode_single(addon)
    assert tester.run() is None

    result, err = got["missing_rate"]  # answered by the runtime, never delivered
    assert err is None and result.get_status_code() == StatusCode.ERROR
    assert "'rate' is required" in result.get_property_string("detail")[0]
    assert got["ok_rate"][0].get_status_code() == StatusCode.OK
    assert seen["cmds"] == ["set_rate", "ask"]

    assert seen["bad_result"].error_code() == 1  # outgoing result checked against cmd_in result
    result, err = got["ask"]
    assert err is None and result.get_property_string("answer") == ("42", None)

    # Invalid data and frames never reach the extension; valid ones do, adjusted.
    assert seen["delivered"] == [
        ("data", "meta", (16000, None)),
        ("audio_frame", "pcm", '{\n    "session_id": "s"\n}'),
        ("video_frame", "img", (2, None)),
        ("data", "done", None),
    ]
    # Each invalid message, the cmd included, is warned about as natively.
    warnings = [r.msg for r in recorded_logs() if r.level == 3]
    for kind_and_name in ("cmd::set_rate", "data::meta", "audio_frame::pcm", "video_frame::img"):
        expected = f"See in {kind_and_name} with invalid schema: "
        assert len([w for w in warnings if w.startswith(expected)]) == 1, (expected, warnings)
    assert seen["bad_report"].error_code() == 1  # outgoing data_out violation
    assert got["report"] == (1, None)
