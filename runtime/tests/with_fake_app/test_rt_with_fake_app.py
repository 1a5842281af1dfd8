"""Testers under the FakeApp session fixture (the conftest next to this file)."""

from __future__ import annotations

import json

from ten_runtime import AsyncExtensionTester, AsyncTenEnvTester, Cmd


class ConfigTester(AsyncExtensionTester):
    def __init__(self) -> None:
        super().__init__()
        self.language = ""

    async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
        result, err = await ten_env.send_cmd(Cmd.create("get_config"))
        assert err is None and result is not None
        self.language = json.loads(result.get_property_to_json("detail")[0])["params"]["language"]
        ten_env.stop_test()


def test_tester_runs_while_the_fake_app_is_up(capfd) -> None:  # type: ignore[no-untyped-def]
    for language in ("de-DE", "es-ES"):  # sequential testers in one test
        tester = ConfigTester()
        tester.set_test_mode_single("tiny_ext", json.dumps({"params": {"language": language}}))
        assert tester.run() is None
        assert tester.language == language
    # The FakeApp's ten.log handler (debug, plain, colored, stdout) prints the
    # extension's own log line.
    out = capfd.readouterr().out
    assert "tiny_ext configured: language=es-ES" in out
