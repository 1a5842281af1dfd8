"""Cmd results (§7.4-7.6): send_cmd, send_cmd_ex streaming, fan-out policy, timeouts."""

from __future__ import annotations

import asyncio
import json
import time
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
    StatusCode,
)

TEST_NODE = {"type": "extension", "name": "ten:test_extension", "addon": "ten:test_extension"}


class Responder(AsyncExtension):
    """Answers ``q`` after ``delay_ms`` with ``status`` and ``detail`` = its name."""

    async def on_cmd(self, ten_env: AsyncTenEnv, cmd: Cmd) -> None:
        delay, _ = await ten_env.get_property_int("delay_ms")
        status, _ = await ten_env.get_property_int("status")
        await asyncio.sleep(delay / 1000)
        result = CmdResult.create(StatusCode(status), cmd)
        result.set_property_string("detail", self.name)
        await ten_env.return_result(result)


def test_send_cmd_returns_error_status_as_a_result_not_an_error() -> None:
    addon = register_extension("res_status", Responder)
    got: dict[str, Any] = {}

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            got["r"] = await ten_env.send_cmd(Cmd.create("q"))
            ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_single(addon, json.dumps({"delay_ms": 0, "status": 1}))
    assert tester.run() is None
    result, err = got["r"]
    assert err is None
    assert result.get_status_code() == StatusCode.ERROR
    assert result.is_completed() and result.is_final()
    assert result.get_property_string("detail")[0] == addon


def test_send_cmd_ex_streams_partials_until_completed() -> None:
    class Streamer(AsyncExtension):
        async def on_cmd(self, ten_env: AsyncTenEnv, cmd: Cmd) -> None:
            for i in range(3):
                partial = CmdResult.create(StatusCode.OK, cmd)
                partial.set_final(False)
                partial.set_property_int("i", i)
                await ten_env.return_result(partial)
            final = CmdResult.create(StatusCode.OK, cmd)
            final.set_property_int("i", 3)
            await ten_env.return_result(final)
            # A result after the final one is dropped silently.
            assert await ten_env.return_result(CmdResult.create(StatusCode.OK, cmd)) is None

    addon = register_extension("res_stream", Streamer)
    seen: list[tuple[int, bool, bool]] = []

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            async for result, err in ten_env.send_cmd_ex(Cmd.create("s")):
                assert err is None and result is not None
                seen.append(
                    (result.get_property_int("i")[0], result.is_final(), result.is_completed())
                )
            await asyncio.sleep(0.1)  # a late extra result would have shown up by now
            ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_single(addon)
    assert tester.run() is None
    assert seen == [(0, False, False), (1, False, False), (2, False, False), (3, True, True)]


def _fan_out_graph(specs: dict[str, tuple[int, int]], addon: str) -> str:
    nodes = [
        {
            "type": "extension",
            "name": name,
            "addon": addon,
            "property": {"delay_ms": d, "status": s},
        }
        for name, (d, s) in specs.items()
    ]
    return json.dumps(
        {
            "nodes": [*nodes, TEST_NODE],
            "connections": [
                {
                    "extension": "ten:test_extension",
                    "cmd": [{"name": "q", "dest": [{"extension": n} for n in specs]}],
                }
            ],
        }
    )


def _run_fan_out(graph: str, ex: bool) -> list[tuple[str, int, bool]]:
    seen: list[tuple[str, int, bool]] = []

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            if ex:
                async for result, err in ten_env.send_cmd_ex(Cmd.create("q")):
                    assert err is None and result is not None
                    seen.append(
                        (
                            result.get_property_string("detail")[0],
                            result.get_status_code(),
                            result.is_completed(),
                        )
                    )
            else:
                result, err = await ten_env.send_cmd(Cmd.create("q"))
                assert err is None and result is not None
                seen.append(
                    (
                        result.get_property_string("detail")[0],
                        result.get_status_code(),
                        result.is_completed(),
                    )
                )
            ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_graph(graph)
    assert tester.run() is None
    return seen


def test_fan_out_send_cmd_first_error_or_last_ok() -> None:
    addon = register_extension("res_fan", Responder)
    all_ok = _fan_out_graph({"fast": (0, 0), "slow": (150, 0)}, addon)
    assert _run_fan_out(all_ok, ex=False) == [("slow", StatusCode.OK, True)]  # the last OK
    one_error = _fan_out_graph({"fast": (0, 0), "bad": (50, 1), "slow": (300, 0)}, addon)
    assert _run_fan_out(one_error, ex=False) == [("bad", StatusCode.ERROR, True)]


def test_fan_out_send_cmd_ex_yields_each_and_completes_on_the_last() -> None:
    addon = register_extension("res_fan_ex", Responder)
    graph = _fan_out_graph({"fast": (0, 0), "slow": (150, 1)}, addon)
    assert _run_fan_out(graph, ex=True) == [
        ("fast", StatusCode.OK, False),
        ("slow", StatusCode.ERROR, True),
    ]


def test_path_timeout_answers_error_path_timeout() -> None:
    class Asker(AsyncExtension):
        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            started = time.monotonic()
            result, err = await ten_env.send_cmd(Cmd.create("never_answered"))
            report = Data.create("report")
            report.set_property_float("elapsed", time.monotonic() - started)
            report.set_property_bool("err_is_none", err is None)
            if result is not None:
                report.set_property_int("status", result.get_status_code())
                report.set_property_string("detail", result.get_property_string("detail")[0])
            await ten_env.send_data(report)

    addon = register_extension("res_timeout", Asker)
    report: dict[str, Any] = {}

    class Tester(AsyncExtensionTester):
        async def on_cmd(self, ten_env: AsyncTenEnvTester, cmd: Cmd) -> None:
            pass  # never answers

        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            report.update(json.loads(data.get_property_to_json()[0]))
            ten_env.stop_test()

    tester = Tester()
    config = {"ten": {"path_timeout": 200_000, "path_check_interval": 50_000}}
    tester.set_test_mode_single(addon, json.dumps(config))
    assert tester.run() is None
    assert report["err_is_none"] is True
    assert report["status"] == StatusCode.ERROR
    assert report["detail"] == "Path timeout."
    assert 0.2 <= report["elapsed"] < 2.0


def test_result_created_from_a_clone_goes_nowhere() -> None:
    class CloneAnswerer(AsyncExtension):
        async def on_cmd(self, ten_env: AsyncTenEnv, cmd: Cmd) -> None:
            err = await ten_env.return_result(CmdResult.create(StatusCode.OK, cmd.clone()))
            assert err is None  # silently dropped
            await ten_env.send_data(Data.create("dropped"))

    addon = register_extension("res_clone", CloneAnswerer)
    outcome: dict[str, Any] = {}

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            # Awaited in a task: an on_start that never returns would block
            # the stop (on_stop waits for on_start), natively as here.
            self.pending = asyncio.create_task(self.ask(ten_env))

        async def ask(self, ten_env: AsyncTenEnvTester) -> None:
            outcome["result"] = await ten_env.send_cmd(Cmd.create("q"))

        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            await asyncio.sleep(0.1)
            outcome["pending"] = "result" not in outcome
            ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_single(addon)
    assert tester.run() is None
    assert outcome["pending"] is True
