"""The long-lived TEN app that TEN extension test suites keep running.

On the native runtime a second `tester.run()` in one process aborts unless an
App is alive (contract section 4.5), so this is not optional decoration.
Both tests/ and integration_tests/ start it from their conftest.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

from ten_runtime import App, TenEnv

_LOG_CONFIG = {
    "ten": {
        "log": {
            "handlers": [
                {
                    "matchers": [{"level": "debug"}],
                    "formatter": {"type": "plain", "colored": False},
                    "emitter": {"type": "console", "config": {"stream": "stdout"}},
                }
            ]
        }
    }
}


class FakeApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.event: threading.Event | None = None

    def on_configure(self, ten_env: TenEnv) -> None:
        ten_env.init_property_from_json(json.dumps(_LOG_CONFIG))
        ten_env.on_configure_done()

    def on_init(self, ten_env: TenEnv) -> None:
        # Released here rather than in on_configure: the addon manager binds
        # to the app only after configure-done.
        assert self.event is not None
        self.event.set()
        ten_env.on_init_done()


class FakeAppCtx:
    def __init__(self, event: threading.Event) -> None:
        self.fake_app: FakeApp | None = None
        self.event = event


def _run_app(ctx: FakeAppCtx) -> None:
    app = FakeApp()  # a native App takes no constructor arguments
    app.event = ctx.event
    ctx.fake_app = app
    app.run(False)


def run_fake_app() -> Iterator[None]:
    """Generator for a session fixture: start the app, yield, close it."""
    event = threading.Event()
    ctx = FakeAppCtx(event)
    thread = threading.Thread(target=_run_app, args=(ctx,), name="FakeApp")
    thread.start()
    if not event.wait(timeout=10):
        raise RuntimeError("the TEN app did not reach on_init within 10 s")
    yield
    if ctx.fake_app is not None:
        ctx.fake_app.close()
    thread.join(timeout=10)
