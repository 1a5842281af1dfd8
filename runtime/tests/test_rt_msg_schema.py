"""Message schemas (§4.2, §10.4): ``*_in`` checks on arrival, ``*_out`` checks on send."""

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
    Cmd,
    CmdResult,
    Data,
    SendOptions,
    StatusCode,
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

    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        self.seen["meta_delivered"] = data.get_property_to_json("sample_rate")[0]
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
            meta = Data.create("meta")
            meta.set_property_string("sample_rate", "not a number")
            await ten_env.send_data(meta)

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

    assert seen["meta_delivered"] == '"not a number"'  # invalid data is delivered anyway...
    assert any("does not match the schema" in r.msg for r in recorded_logs())  # ...with a warning
    assert seen["bad_report"].error_code() == 1  # outgoing data_out violation
    assert got["report"] == (1, None)
