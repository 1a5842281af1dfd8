"""``App`` (§4.5): lifecycle, argument rejection, predefined graphs, ten.log output."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import StopWhenReady, register_extension, send_ready

from ten_runtime import App, AsyncExtension, AsyncTenEnv, TenEnv
from ten_runtime._core import logsink


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll a condition with a deadline (no event exists for file contents)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def read_events(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


class RecordingApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.property: dict[str, Any] | None = None
        self.initialized = threading.Event()

    def on_configure(self, ten_env: TenEnv) -> None:
        self.calls.append("on_configure")
        if self.property is not None:
            ten_env.init_property_from_json(json.dumps(self.property))
        ten_env.on_configure_done()

    def on_init(self, ten_env: TenEnv) -> None:
        self.calls.append("on_init")
        self.calls.append(f"prop:{ten_env.get_property_string('greeting')[0]}")
        ten_env.on_init_done()
        self.initialized.set()

    def on_deinit(self, ten_env: TenEnv) -> None:
        self.calls.append("on_deinit")
        ten_env.on_deinit_done()


def test_app_rejects_constructor_arguments() -> None:
    class WithArgs(App):
        def __init__(self, event: threading.Event) -> None:
            super().__init__()

    with pytest.raises(TypeError, match=r"Expect 0 argument\."):
        WithArgs(threading.Event())  # type: ignore[call-arg]


def test_app_lifecycle_run_in_background_close_from_another_thread() -> None:
    app = RecordingApp()
    app.property = {"greeting": "hi"}
    app.run(True)
    assert app.initialized.wait(5)
    closer = threading.Thread(target=app.close)
    closer.start()
    closer.join(5)
    app.wait()
    assert app.calls == ["on_configure", "on_init", "prop:hi", "on_deinit"]


def test_app_run_blocking_on_a_thread() -> None:
    app = RecordingApp()
    thread = threading.Thread(target=app.run, args=(False,))
    thread.start()
    assert app.initialized.wait(5)
    app.close()
    thread.join(5)
    assert not thread.is_alive()
    assert app.calls[-1] == "on_deinit"


def test_predefined_graphs_auto_start_inline_and_via_import_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "events.txt"
    monkeypatch.setenv("RT_EVENTS_FILE", str(events))
    app = RecordingApp()
    app.property = {
        "ten": {
            "predefined_graphs": [
                {
                    "name": "inline_graph",
                    "auto_start": True,
                    "graph": {
                        "nodes": [
                            {
                                "type": "extension",
                                "name": "inline_node",
                                "addon": "lifecycle_ext",
                                "property": {"events_file": str(events)},
                            }
                        ],
                        "connections": [],
                    },
                },
                {
                    "name": "imported_graph",
                    "auto_start": True,
                    "graph": {"import_uri": "fixtures/graphs/lifecycle_graph.json"},
                },
                {
                    "name": "not_started",
                    "auto_start": False,
                    "graph": {
                        "nodes": [{"type": "extension", "name": "idle", "addon": "lifecycle_ext"}]
                    },
                },
            ]
        }
    }
    app.run(True)
    assert wait_until(
        lambda: {"inline_node on_start", "imported_node on_start"} <= set(read_events(events))
    )
    app.close()
    app.wait()
    lines = read_events(events)
    for node in ("inline_node", "imported_node"):
        mine = [line.split(" ", 1)[1] for line in lines if line.startswith(node + " ")]
        assert mine == ["on_init", "on_start", "on_stop", "on_deinit"]
    assert not any(line.startswith("idle ") for line in lines)


def test_ten_log_console_handler_prints_extension_logs(capfd: pytest.CaptureFixture[str]) -> None:
    class Logs(AsyncExtension):
        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            ten_env.log_info("hello from the extension", category="key_point")
            ten_env.log_debug("debug is filtered out by the matcher")
            await send_ready(ten_env)

    addon = register_extension("app_logs", Logs)
    app = RecordingApp()
    app.property = {
        "ten": {
            "log": {
                "handlers": [
                    {
                        "matchers": [{"level": "info"}],
                        "formatter": {"type": "plain", "colored": False},
                        "emitter": {"type": "console", "config": {"stream": "stdout"}},
                    }
                ]
            }
        }
    }
    saved_handlers = logsink.handlers_snapshot()  # the config is process-wide
    app.run(True)
    try:
        assert app.initialized.wait(5)
        tester = StopWhenReady()
        tester.set_test_mode_single(addon)
        assert tester.run() is None
    finally:
        app.close()
        app.wait()
        logsink.restore_handlers(saved_handlers)
    out = capfd.readouterr().out
    lines = [line for line in out.splitlines() if "hello from the extension" in line]
    assert len(lines) == 1
    assert f" I key_point on_start@{__file__}:" in lines[0]
    assert lines[0].endswith(f"[{addon}] hello from the extension")
    assert "debug is filtered out" not in out
