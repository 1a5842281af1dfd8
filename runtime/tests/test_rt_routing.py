"""Routing (§7.1-7.3, §11.5): single mode, graph connections, fan-out, errors, order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rt_helpers import register_extension, send_ready

from ten_runtime import (
    AsyncExtension,
    AsyncExtensionTester,
    AsyncTenEnv,
    AsyncTenEnvTester,
    AudioFrame,
    Cmd,
    CmdResult,
    Data,
    Loc,
    SendOptions,
    StatusCode,
)

TEST_NODE = {"type": "extension", "name": "ten:test_extension", "addon": "ten:test_extension"}


def node(name: str, addon: str, **extra: Any) -> dict[str, Any]:
    return {"type": "extension", "name": name, "addon": addon, **extra}


def test_single_mode_routes_everything_to_the_counterpart_and_sets_sources() -> None:
    seen: dict[str, Any] = {}

    class Ext(AsyncExtension):
        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            await ten_env.send_data(Data.create("no_dest"))
            explicit = Data.create("explicit_dest")
            explicit.set_dests([Loc("", "", "some_other_extension")])
            await ten_env.send_data(explicit)
            result, err = await ten_env.send_cmd(Cmd.create("ask_tester"))
            seen["ext_cmd"] = (result.get_property_string("detail")[0] if result else None, err)
            await send_ready(ten_env)

        async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
            seen["ext_side_source"] = data.get_source().extension_name

    addon = register_extension("rt_single", Ext)

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            await ten_env.send_data(Data.create("from_tester"))

        async def on_cmd(self, ten_env: AsyncTenEnvTester, cmd: Cmd) -> None:
            seen["tester_cmd_source"] = cmd.get_source().extension_name
            result = CmdResult.create(StatusCode.OK, cmd)
            result.set_property_string("detail", "answered")
            await ten_env.return_result(result)

        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            seen.setdefault("tester_data", []).append(data.get_name())
            seen["tester_side_source"] = data.get_source().extension_name
            if data.get_name() == "ready":
                ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_single(addon, "{}")
    assert tester.run() is None
    assert seen["tester_data"] == ["no_dest", "explicit_dest", "ready"]
    assert seen["ext_cmd"] == ("answered", None)
    assert seen["tester_side_source"] == addon
    assert seen["tester_cmd_source"] == addon
    assert seen["ext_side_source"] == "ten:test_extension"


class Source(AsyncExtension):
    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        payload = Data.create("payload")
        payload.set_property_string("v", "original")
        await ten_env.send_data(payload)


class Sink(AsyncExtension):
    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        before, _ = data.get_property_string("v")
        data.set_property_string("v", f"changed by {self.name}")  # must not leak to the other copy
        seen = Data.create("seen")
        seen.set_property_string("by", self.name)
        seen.set_property_string("v", before)
        seen.set_property_string("from", data.get_source().extension_name or "")
        await ten_env.send_data(seen)


def test_graph_mode_dest_and_source_forms_with_fan_out_clones() -> None:
    src = register_extension("rt_src", Source)
    sink = register_extension("rt_sink", Sink)
    graph = {
        "nodes": [node("src", src), node("sink1", sink), node("sink2", sink), TEST_NODE],
        "connections": [
            {
                "extension": "ten:test_extension",
                "data": [{"name": "go", "dest": [{"extension": "src"}]}],
            },
            {
                "extension": "src",
                "data": [
                    {"name": "payload", "dest": [{"extension": "sink1"}, {"extension": "sink2"}]}
                ],
            },
            {
                "extension": "ten:test_extension",
                "data": [
                    {"name": "seen", "source": [{"extension": "sink1"}, {"extension": "sink2"}]}
                ],
            },
        ],
    }
    got: list[tuple[str, str, str]] = []

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            await ten_env.send_data(Data.create("go"))

        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            got.append(
                (
                    data.get_property_string("by")[0],
                    data.get_property_string("v")[0],
                    data.get_property_string("from")[0],
                )
            )
            if len(got) == 2:
                ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_graph(json.dumps(graph))
    assert tester.run() is None
    assert sorted(got) == [("sink1", "original", "src"), ("sink2", "original", "src")]


def test_not_connected_messages() -> None:
    report: dict[str, Any] = {}

    class Ext(AsyncExtension):
        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            report["data_default"] = await ten_env.send_data(Data.create("nowhere"))
            report["data_wait"] = await ten_env.send_data(
                Data.create("nowhere"), SendOptions(wait_for_result=True)
            )
            report["frame_wait"] = await ten_env.send_audio_frame(
                AudioFrame.create("pcm_frame"), SendOptions(wait_for_result=True)
            )
            report["cmd"] = await ten_env.send_cmd(Cmd.create("nowhere_cmd"))
            await ten_env.send_data(Data.create("ready"))

    addon = register_extension("rt_unconnected", Ext)
    graph = {
        "nodes": [node("ext", addon), TEST_NODE],
        "connections": [
            {
                "extension": "ext",
                "data": [{"name": "ready", "dest": [{"extension": "ten:test_extension"}]}],
            }
        ],
    }

    class Tester(AsyncExtensionTester):
        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_graph(json.dumps(graph))
    assert tester.run() is None
    assert report["data_default"] is None  # fire-and-forget: only logged
    err = report["data_wait"]
    assert err.error_code() == 7
    assert (
        err.error_message()
        == "Failed to find destination of a 'data' message 'nowhere' from graph."
    )
    assert "'audio_frame' message 'pcm_frame'" in report["frame_wait"].error_message()
    result, err = report["cmd"]
    assert result is None and err.error_code() == 7
    assert (
        err.error_message()
        == "Failed to find destination of a 'cmd' message 'nowhere_cmd' from graph."
    )


def test_explicit_dests_in_graph_mode() -> None:
    class Forwarder(AsyncExtension):
        async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
            out = Data.create("direct")
            out.set_dests([Loc("", "", "ten:test_extension")])
            await ten_env.send_data(out)

    addon = register_extension("rt_explicit", Forwarder)
    graph = {
        "nodes": [node("fwd", addon), TEST_NODE],
        "connections": [
            {
                "extension": "ten:test_extension",
                "data": [{"name": "go", "dest": [{"extension": "fwd"}]}],
            }
        ],
    }

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            await ten_env.send_data(Data.create("go"))

        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            if data.get_name() == "direct" and data.get_source().extension_name == "fwd":
                ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_graph(json.dumps(graph))
    tester.set_timeout(5_000_000)
    assert tester.run() is None


def test_per_sender_fifo_in_both_directions() -> None:
    count = 300

    class Echo(AsyncExtension):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.received: list[int] = []

        async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
            self.received.append(data.get_property_int("i")[0])
            if len(self.received) == count:
                for i in range(count):
                    back = Data.create("back")
                    back.set_property_int("i", i)
                    await ten_env.send_data(back)
                order = Data.create("order_ok")
                order.set_property_bool("ok", self.received == list(range(count)))
                await ten_env.send_data(order)

    addon = register_extension("rt_fifo", Echo)
    back: list[int] = []
    result: dict[str, bool] = {}

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            for i in range(count):
                d = Data.create("d")
                d.set_property_int("i", i)
                await ten_env.send_data(d)

        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            if data.get_name() == "back":
                back.append(data.get_property_int("i")[0])
            else:
                result["ext_order"] = data.get_property_bool("ok")[0]
                ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_single(addon)
    assert tester.run() is None
    assert result["ext_order"] is True
    assert back == list(range(count))


def test_sent_messages_are_invalidated_and_locked_buffers_are_refused() -> None:
    report: dict[str, Any] = {}

    class Ext(AsyncExtension):
        async def on_cmd(self, ten_env: AsyncTenEnv, cmd: Cmd) -> None:
            result = CmdResult.create(StatusCode.OK, cmd)
            await ten_env.return_result(result)
            with pytest.raises(ValueError, match=r"Msg is invalidated\."):
                result.get_status_code()
            report["ext_checked"] = True

    addon = register_extension("rt_invalid", Ext)

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            data = Data.create("d")
            data.set_property_string("k", "v")
            assert await ten_env.send_data(data) is None
            for call in (data.get_name, lambda: data.get_property_string("k"), data.clone):
                with pytest.raises(ValueError, match=r"Msg is invalidated\."):
                    call()
            with pytest.raises(ValueError, match=r"Msg is invalidated\."):
                await ten_env.send_data(data)  # re-sending a sent message

            locked = Data.create("locked")
            locked.alloc_buf(4)
            locked.lock_buf()
            err = await ten_env.send_data(locked, SendOptions(wait_for_result=True))
            report["locked"] = err

            with pytest.raises(TypeError):
                await ten_env.send_data(Cmd.create("not data"))  # type: ignore[arg-type]

            cmd = Cmd.create("c")
            result, err = await ten_env.send_cmd(cmd)
            report["cmd"] = (result is not None and result.get_status_code(), err)
            with pytest.raises(ValueError, match=r"Msg is invalidated\."):
                cmd.get_name()
            ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_single(addon)
    assert tester.run() is None
    err = report["locked"]
    assert err is not None and err.error_code() == 1
    assert (
        err.error_message()
        == "Locked resources are not allowed in messages sent from an extension."
    )
    assert report["cmd"] == (StatusCode.OK, None)
    assert report["ext_checked"] is True
