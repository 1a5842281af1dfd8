"""Extension lifecycle (§4.2) and threading (§4.3) as a tester observes them."""

from __future__ import annotations

import asyncio
import json
import threading

from rt_helpers import Events, StopWhenReady, register_extension, send_ready

from ten_runtime import (
    AsyncExtension,
    AsyncExtensionTester,
    AsyncTenEnv,
    AsyncTenEnvTester,
    Cmd,
    CmdResult,
    Data,
    Extension,
    ExtensionTester,
    StatusCode,
    TenEnv,
    TenEnvTester,
    TriggerLifeCycleCmd,
)


class RecordingExtension(AsyncExtension):
    """Records every callback; on_start waits until a data message has arrived."""

    def __init__(
        self,
        name: str,
        events: Events,
        start_waits_for_data: bool = False,
        wait_in_init_for: str = "",
    ) -> None:
        super().__init__(name)
        self.events = events
        self.start_waits_for_data = start_waits_for_data
        self.wait_in_init_for = wait_in_init_for
        self.got_data = asyncio.Event()

    async def on_configure(self, ten_env: AsyncTenEnv) -> None:
        self.events.add("on_configure")

    async def on_init(self, ten_env: AsyncTenEnv) -> None:
        self.events.add("on_init")
        if self.wait_in_init_for:
            # Stay in on_init until the tester has sent: those messages must be
            # queued, then delivered at init-done.
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.events.wait_for(lambda e: self.wait_in_init_for in e)
            )
        self.events.add("on_init_end")

    async def on_start(self, ten_env: AsyncTenEnv) -> None:
        self.events.add("on_start")
        if self.start_waits_for_data:
            # Handlers are not blocked by a long on_start: on_data runs meanwhile.
            await asyncio.wait_for(self.got_data.wait(), 5)
            # Still inside on_start when the test is stopped, and for a while after.
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.events.wait_for(lambda e: "stop_requested" in e)
            )
            await asyncio.sleep(0.1)
        self.events.add("on_start_end")

    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        self.events.add(f"data:{data.get_property_int('i')[0]}")
        self.got_data.set()

    async def on_stop(self, ten_env: AsyncTenEnv) -> None:
        self.events.add("on_stop")

    async def on_deinit(self, ten_env: AsyncTenEnv) -> None:
        self.events.add("on_deinit")


class SendsThenStops(AsyncExtensionTester):
    def __init__(self, count: int, stop_on_first_data: bool = True) -> None:
        super().__init__()
        self.count = count
        self.stop_on_first_data = stop_on_first_data

    async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
        for i in range(self.count):
            d = Data.create("d")
            d.set_property_int("i", i)
            await ten_env.send_data(d)
        if self.stop_on_first_data:
            ten_env.stop_test()


def test_messages_before_init_done_are_queued_and_flushed_in_order_before_on_start() -> None:
    events = Events()
    addon = register_extension(
        "lc_queue", lambda n: RecordingExtension(n, events, wait_in_init_for="all_sent")
    )

    class Stopper(SendsThenStops):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            await super().on_start(ten_env)
            events.add("all_sent")
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: events.wait_for(lambda e: "on_start_end" in e)
            )
            ten_env.stop_test()

    tester = Stopper(5, stop_on_first_data=False)
    tester.set_test_mode_single(addon)
    assert tester.run() is None
    names = events.names()
    data = [n for n in names if n.startswith("data:")]
    assert data == [f"data:{i}" for i in range(5)]  # none lost, arrival order kept
    assert names.index("on_init_end") < names.index("data:0")
    # Delivered at init-done, i.e. scheduled before on_start.
    assert names.index("data:4") < names.index("on_start")
    assert names[-2:] == ["on_stop", "on_deinit"]
    # The tester runs on its own thread and may send before on_configure: the
    # extension's own lifecycle starts with on_configure whatever the tester does.
    lifecycle = [n for n in names if n != "all_sent"]
    assert lifecycle[0] == "on_configure" and names.index("on_init") < names.index("on_init_end")
    assert names.index("all_sent") < names.index("on_init_end")


def test_handlers_overlap_on_start_and_on_stop_waits_for_on_start() -> None:
    events = Events()
    addon = register_extension(
        "lc_overlap", lambda n: RecordingExtension(n, events, start_waits_for_data=True)
    )

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: events.wait_for(lambda e: "on_start" in e))
            d = Data.create("d")
            d.set_property_int("i", 1)
            await ten_env.send_data(d)
            # Stop as soon as on_data ran, while the extension is still in on_start.
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: events.wait_for(lambda e: "data:1" in e)
            )
            events.add("stop_requested")
            ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_single(addon)
    assert tester.run() is None
    names = events.names()
    assert names.index("on_start") < names.index("data:1") < names.index("on_start_end")
    # on_stop is delivered only after on_start has returned (§4.2 item 5).
    assert names.index("stop_requested") < names.index("on_start_end") < names.index("on_stop")


def test_calls_after_deinit_return_closed_error() -> None:
    seen: dict[str, object] = {}

    class Ext(AsyncExtension):
        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            seen["env"] = ten_env
            await ten_env.send_data(Data.create("ready"))

    addon = register_extension("lc_closed2", Ext)

    class Tester(AsyncExtensionTester):
        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_single(addon)
    assert tester.run() is None
    env = seen["env"]
    assert isinstance(env, AsyncTenEnv)
    err = env.log_info("after the run")
    assert err is not None and err.error_code() == 6
    text, err = asyncio.run(env.get_property_to_json(""))
    assert text == "" and err is not None and err.error_code() == 6
    data = Data.create("late")
    err = asyncio.run(env.send_data(data))
    assert err is not None and err.error_code() == 6
    assert data.get_name() == "late"  # a synchronous error does not consume the message


def test_init_property_from_json_only_in_on_configure() -> None:
    seen: dict[str, object] = {}

    class Ext(AsyncExtension):
        async def on_configure(self, ten_env: AsyncTenEnv) -> None:
            seen["before"] = await ten_env.get_property_to_json("")
            seen["missing"] = await ten_env.get_property_int("x")
            seen["configure"] = await ten_env.init_property_from_json('{"x": 5}')

        async def on_init(self, ten_env: AsyncTenEnv) -> None:
            seen["init"] = await ten_env.init_property_from_json('{"x": 6}')
            seen["x"] = await ten_env.get_property_int("x")

        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            await send_ready(ten_env)

    addon = register_extension("lc_initprop", Ext)
    tester = StopWhenReady()
    tester.set_test_mode_single(addon)
    assert tester.run() is None
    assert json.loads(seen["before"][0]) == {}  # type: ignore[index]
    assert seen["missing"][1].error_code() == 100000  # type: ignore[index]
    assert seen["configure"] is None
    err = seen["init"]
    assert err is not None and err.error_message() == "Invalid timing to init property."  # type: ignore[attr-defined]
    assert seen["x"] == (5, None)


def test_cmd_to_a_deinitialising_extension_is_answered_with_error() -> None:
    a_in_deinit = threading.Event()
    reply: dict[str, object] = {}

    class A(AsyncExtension):
        async def on_deinit(self, ten_env: AsyncTenEnv) -> None:
            a_in_deinit.set()
            for _ in range(100):  # stay in deinit until B got its answer
                if "result" in reply:
                    break
                await asyncio.sleep(0.01)

    class B(AsyncExtension):
        async def on_stop(self, ten_env: AsyncTenEnv) -> None:
            for _ in range(200):
                if a_in_deinit.is_set():
                    break
                await asyncio.sleep(0.01)
            result, err = await ten_env.send_cmd(Cmd.create("ping"))
            reply["result"] = (result, err)

    addon_a = register_extension("lc_deinit_a", A)
    addon_b = register_extension("lc_deinit_b", B)
    graph = {
        "nodes": [
            {"type": "extension", "name": "a", "addon": addon_a},
            {"type": "extension", "name": "b", "addon": addon_b},
            {"type": "extension", "name": "ten:test_extension", "addon": "ten:test_extension"},
        ],
        "connections": [
            {"extension": "b", "cmd": [{"name": "ping", "dest": [{"extension": "a"}]}]}
        ],
    }

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            ten_env.stop_test()

    tester = Tester()
    tester.set_test_mode_graph(json.dumps(graph))
    assert tester.run() is None
    result, err = reply["result"]  # type: ignore[misc]
    assert err is None and isinstance(result, CmdResult)
    assert result.get_status_code() == StatusCode.ERROR
    assert result.get_property_string("detail") == (
        "The destination extension is in its de-initialization phase.",
        None,
    )


def test_sync_extension_and_sync_tester() -> None:
    events = Events()

    class SyncExt(Extension):
        def on_start(self, ten_env: TenEnv) -> None:
            events.add(("ext_thread", threading.current_thread().name))
            ten_env.on_start_done()

        def on_cmd(self, ten_env: TenEnv, cmd: Cmd) -> None:
            _, err = ten_env.get_property_int("missing")
            exists = ten_env.is_property_exist("missing")
            result = CmdResult.create(StatusCode.OK, cmd)
            result.set_property_int("missing_code", err.error_code() if err else 0)
            result.set_property_bool("exist_err", exists[1] is not None)
            ten_env.return_result(result)

    addon = register_extension("lc_sync", SyncExt)

    class Tester(ExtensionTester):
        def on_start(self, ten_env_tester: TenEnvTester) -> None:
            def on_result(env: TenEnvTester, result: CmdResult | None, error: object) -> None:
                assert result is not None
                events.add(("code", result.get_property_int("missing_code")[0]))
                events.add(("exist_err", result.get_property_bool("exist_err")[0]))
                env.stop_test()

            ten_env_tester.send_cmd(Cmd.create("check"), on_result)
            ten_env_tester.on_start_done()

    tester = Tester()
    tester.set_test_mode_single(addon)
    assert tester.run() is None
    names = events.names()
    assert ("code", 100000) in names
    assert ("exist_err", True) in names  # sync is_property_exist: (False, Err(100000)) quirk


def test_manual_trigger_life_cycle_start() -> None:
    events = Events()

    class Manual(AsyncExtension):
        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            events.add("on_start")
            await send_ready(ten_env)

        async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
            events.add("data")

    addon = register_extension("lc_manual", Manual)

    class Tester(StopWhenReady):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            await ten_env.send_data(Data.create("before_trigger"))
            loop = asyncio.get_running_loop()
            # Data is delivered after init-done, but on_start waits for the trigger.
            assert await loop.run_in_executor(None, lambda: events.wait_for(lambda e: "data" in e))
            await asyncio.sleep(0.1)
            events.add("triggering")
            trigger = TriggerLifeCycleCmd.create()
            trigger.set_stage("start")
            result, err = await ten_env.send_cmd(trigger)
            assert err is None and result is not None
            events.add(("trigger_result", result.get_status_code()))

    tester = Tester()
    config = {"ten": {"manual_trigger_life_cycle": [{"stage": "start"}]}}
    tester.set_test_mode_single(addon, json.dumps(config))
    assert tester.run() is None
    names = events.names()
    assert names.index("data") < names.index("triggering") < names.index("on_start")
    assert ("trigger_result", StatusCode.OK) in names
