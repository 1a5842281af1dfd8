"""The testing API (§11): timeout, first error, threads, teardown, fatal paths."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from rt_helpers import StopWhenReady, register_extension, send_ready

from ten_runtime import (
    AsyncExtension,
    AsyncExtensionTester,
    AsyncTenEnv,
    AsyncTenEnvTester,
    Data,
    TenError,
    TenErrorCode,
)
from ten_runtime._core.loops import EXTENSION_LOOPS
from ten_runtime.standin import FatalRuntimeError, GraphStartError, recorded_logs


class Quiet(AsyncExtension):
    async def on_start(self, ten_env: AsyncTenEnv) -> None:
        await send_ready(ten_env)


def test_timeout_returns_test_timeout_error() -> None:
    addon = register_extension("tst_timeout", Quiet)
    tester = AsyncExtensionTester()  # never calls stop_test
    tester.set_test_mode_single(addon)
    tester.set_timeout(300_000)
    started = time.monotonic()
    err = tester.run()
    assert err is not None
    assert (err.error_code(), err.error_message()) == (
        TenErrorCode.ErrorCodeTimeout,
        "Test timeout.",
    )
    assert 0.3 <= time.monotonic() - started < 3


def test_first_stop_test_error_wins_and_repeated_calls_are_safe() -> None:
    addon = register_extension("tst_first", Quiet)
    first = TenError.create(TenErrorCode.ErrorCodeGeneric, "first failure")
    calls: list[Any] = []

    class Tester(AsyncExtensionTester):
        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            calls.append(ten_env.stop_test(first))
            calls.append(
                ten_env.stop_test(TenError.create(TenErrorCode.ErrorCodeInvalidJSON, "second"))
            )
            calls.append(ten_env.stop_test())

    tester = Tester()
    tester.set_test_mode_single(addon)
    err = tester.run()
    assert calls == [None, None, None]
    assert err is not None and err is not first  # a copy, same code and message
    assert (err.error_code(), err.error_message()) == (1, "first failure")


def test_tester_and_extension_run_on_distinct_loop_threads_and_leftovers_are_cancelled() -> None:
    threads: dict[str, str] = {}
    cancelled = threading.Event()

    class Ext(AsyncExtension):
        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            threads["ext"] = threading.current_thread().name

            async def forever() -> None:
                try:
                    await asyncio.sleep(3600)
                finally:
                    cancelled.set()

            self.task = asyncio.create_task(forever())  # left running on purpose
            await send_ready(ten_env)

    addon = register_extension("tst_threads", Ext)

    class Tester(StopWhenReady):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            threads["tester"] = threading.current_thread().name

    tester = Tester()
    tester.set_test_mode_single(addon)
    assert tester.run() is None
    assert threads["ext"] == "PythonGlobalMainThread"
    assert threads["tester"] != threads["ext"]
    # run() returned only after the extension loop cancelled what was left on it.
    assert cancelled.is_set()
    alive = {t.name for t in threading.enumerate()}
    assert "PythonGlobalMainThread" not in alive and "ten-tester-loop" not in alive


def test_testers_run_sequentially_in_one_process() -> None:
    addon = register_extension("tst_seq", Quiet)
    for _ in range(3):
        tester = StopWhenReady()
        tester.set_test_mode_single(addon)
        assert tester.run() is None


def test_teardown_slower_than_the_timeout_returns_the_timeout_error() -> None:
    class SlowStop(Quiet):
        async def on_stop(self, ten_env: AsyncTenEnv) -> None:
            await asyncio.sleep(0.6)

    addon = register_extension("tst_slowstop", SlowStop)
    tester = StopWhenReady()
    tester.set_test_mode_single(addon)
    tester.set_timeout(300_000)
    err = tester.run()
    assert err is not None and err.error_code() == TenErrorCode.ErrorCodeTimeout


def test_exception_in_an_extension_callback_aborts_the_run_loudly() -> None:
    class Crasher(Quiet):
        async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
            raise RuntimeError("boom in on_data")

    addon = register_extension("tst_crash", Crasher)

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            await ten_env.send_data(Data.create("poke"))

    tester = Tester()
    tester.set_test_mode_single(addon)
    started = time.monotonic()
    with pytest.raises(FatalRuntimeError) as info:
        tester.run()
    assert time.monotonic() - started < 5
    text = str(info.value)
    assert "Uncaught exception" in text and "boom in on_data" in text and "Traceback" in text
    assert isinstance(info.value.__cause__, RuntimeError)
    assert any(
        r.level_name == "ERROR" and r.msg.startswith("Uncaught exception: boom in on_data")
        for r in recorded_logs()
    )
    assert "PythonGlobalMainThread" not in {t.name for t in threading.enumerate()}


def test_cancelled_error_escaping_a_callback_is_fatal_too() -> None:
    class Cancels(Quiet):
        async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
            task = asyncio.create_task(asyncio.sleep(10))
            task.cancel()
            await task  # CancelledError escapes the callback

    addon = register_extension("tst_cancel", Cancels)

    class Tester(AsyncExtensionTester):
        async def on_start(self, ten_env: AsyncTenEnvTester) -> None:
            await ten_env.send_data(Data.create("poke"))

    tester = Tester()
    tester.set_test_mode_single(addon)
    with pytest.raises(FatalRuntimeError, match="CancelledError"):
        tester.run()


def test_exception_in_a_tester_callback_aborts_the_run() -> None:
    addon = register_extension("tst_tester_crash", Quiet)

    class Tester(AsyncExtensionTester):
        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            raise ValueError("tester bug")

    tester = Tester()
    tester.set_test_mode_single(addon)
    with pytest.raises(FatalRuntimeError, match="tester bug"):
        tester.run()


def test_unknown_addon_is_a_fatal_start_failure() -> None:
    tester = AsyncExtensionTester()
    tester.set_test_mode_single("no_such_addon_anywhere")
    with pytest.raises(GraphStartError, match="no_such_addon_anywhere"):
        tester.run()


def test_a_stuck_on_start_cannot_hang_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEN_STANDIN_TEARDOWN_GRACE_S", "0.5")

    class Stuck(AsyncExtension):
        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            await send_ready(ten_env)
            await asyncio.Event().wait()  # never returns: on_stop can never be delivered

    addon = register_extension("tst_stuck", Stuck)
    tester = StopWhenReady()
    tester.set_test_mode_single(addon)
    tester.set_timeout(0)
    with pytest.raises(FatalRuntimeError, match="on_start has not returned"):
        tester.run()


def test_multi_thread_mode_gives_each_instance_its_own_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: set[str] = set()

    class Ext(AsyncExtension):
        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            threads.add(threading.current_thread().name)
            await send_ready(ten_env)

    addon = register_extension("tst_multi", Ext)
    graph = {
        "nodes": [
            {"type": "extension", "name": "one", "addon": addon},
            {"type": "extension", "name": "two", "addon": addon},
            {"type": "extension", "name": "ten:test_extension", "addon": "ten:test_extension"},
        ],
        "connections": [
            {
                "extension": "ten:test_extension",
                "data": [{"name": "ready", "source": [{"extension": "one"}, {"extension": "two"}]}],
            }
        ],
    }

    class Tester(AsyncExtensionTester):
        count = 0

        async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
            type(self).count += 1
            if type(self).count == 2:
                ten_env.stop_test()

    monkeypatch.setenv("TEN_PYTHON_THREAD_MODE", "multi_thread")
    EXTENSION_LOOPS.reset_mode_cache()
    try:
        import json

        tester = Tester()
        tester.set_test_mode_graph(json.dumps(graph))
        assert tester.run() is None
    finally:
        monkeypatch.delenv("TEN_PYTHON_THREAD_MODE")
        EXTENSION_LOOPS.reset_mode_cache()
    assert threads == {"AsyncExtension-one", "AsyncExtension-two"}
