"""One ``tester.run()``: a private test app, the graph, the timeout, teardown (§11).

* single mode: a 2-node graph (``ten:test_extension`` + the addon, node name
  = addon name), no connections; everything one side sends reaches the other;
* graph mode: the user's graph, which must contain ``ten:test_extension``;
* the timeout (default 180 s, 0 disables) starts once the graph start is
  dispatched; on expiry the run stops with Err(8, "Test timeout.") unless an
  error was already recorded (first error wins) - also when it fires during a
  slow teardown after ``stop_test()``, as natively;
* teardown that never completes (e.g. an ``on_start`` that never returns, so
  ``on_stop`` can never be delivered) would hang the native runtime; here a
  watchdog aborts it with a FatalRuntimeError naming the stuck nodes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from ..error import TenErrorCode, _TenError, closed_error, copy_error, make_error
from .app_runtime import AppRuntime
from .envcore import NodeEnv
from .fatal import FatalRuntimeError
from .graph import TEST_EXTENSION, GraphDef, GraphError, NodeDef, parse_graph
from .node import Node, NodeState

DEFAULT_TIMEOUT_US = 180_000_000
# Extra time teardown may take beyond the test timeout before the watchdog
# declares it hung.  Overridable for slow machines or the stand-in's tests.
TEARDOWN_GRACE_ENV = "TEN_STANDIN_TEARDOWN_GRACE_S"
DEFAULT_TEARDOWN_GRACE_S = 30.0
JOIN_TIMEOUT_S = 5.0


class TesterEnvCore(NodeEnv):
    """The internal of the tester's env: the test extension's env plus stop_test."""

    def __init__(self, node: Node, run: TesterRun) -> None:
        super().__init__(node)
        self.run = run

    def stop_test(self, error: _TenError | None) -> _TenError | None:
        if self.is_closed():
            return closed_error()
        self.run.stop_test(error)
        return None


class TesterRun:
    def __init__(self, tester: Any, is_async: bool) -> None:
        self.tester = tester
        self.is_async = is_async
        self.mode: str | None = None
        self.addon_name: str | None = None
        self.property_json: str | None = None
        self.graph_json: str | None = None
        self.timeout_us = DEFAULT_TIMEOUT_US
        self.used = False
        self._lock = threading.Lock()
        self.error: _TenError | None = None
        self.app: AppRuntime | None = None
        self.adapter: Any = None
        self.close_requested_at: float | None = None
        self.timeout_deadline: float | None = None

    # -- configuration ---------------------------------------------------------

    def set_test_mode_single(self, addon_name: str, property_json_str: str | None) -> None:
        if property_json_str:
            try:
                prop = json.loads(property_json_str)
            except ValueError as exc:
                raise ValueError(f"set_test_mode_single: invalid property JSON: {exc}") from None
            if not isinstance(prop, dict):
                raise ValueError("set_test_mode_single: the property JSON must be an object")
        self.mode = "single"
        self.addon_name = addon_name
        self.property_json = property_json_str

    def set_test_mode_graph(self, graph_json: str) -> None:
        self.mode = "graph"
        self.graph_json = graph_json

    def set_timeout(self, timeout_us: int) -> None:
        if not isinstance(timeout_us, int) or timeout_us < 0:
            raise ValueError("timeout_us must be a non-negative int")
        self.timeout_us = timeout_us

    # -- run ---------------------------------------------------------------------

    def _build_graph(self) -> tuple[GraphDef, tuple[str, str] | None]:
        if self.mode == "single":
            assert self.addon_name is not None
            prop = json.loads(self.property_json) if self.property_json else {}
            graph = GraphDef(
                [
                    NodeDef(TEST_EXTENSION, TEST_EXTENSION, "test_extension_group_1"),
                    NodeDef(self.addon_name, self.addon_name, "test_extension_group_2", None, prop),
                ]
            )
            return graph, (TEST_EXTENSION, self.addon_name)
        if self.mode == "graph":
            try:
                graph = parse_graph(json.loads(self.graph_json or ""), allow_test_extension=True)
            except (ValueError, GraphError) as exc:
                raise FatalRuntimeError(f"set_test_mode_graph: invalid graph: {exc}") from None
            if graph.node(TEST_EXTENSION) is None:
                raise FatalRuntimeError(
                    f"set_test_mode_graph: the graph must contain a node named '{TEST_EXTENSION}' "
                    f"with addon '{TEST_EXTENSION}'"
                )
            return graph, None
        raise FatalRuntimeError("call set_test_mode_single() or set_test_mode_graph() before run()")

    def _make_test_node(self, engine: Any, node_def: NodeDef) -> Node | None:
        from .adapters import AsyncTesterAdapter, SyncTesterAdapter

        if node_def.name != TEST_EXTENSION:
            return None
        node = Node(
            engine,
            TEST_EXTENSION,
            TEST_EXTENSION,
            None,
            {},
            node_def.extension_group or "test_extension_group_1",
            is_tester=True,
        )
        core = TesterEnvCore(node, self)
        node.env = core
        adapter_cls = AsyncTesterAdapter if self.is_async else SyncTesterAdapter
        node.adapter = self.adapter = adapter_cls(node, self.tester, core)
        return node

    def run(self) -> _TenError | None:
        if self.used:
            raise RuntimeError("An extension tester is single-use: create a new one per run().")
        self.used = True
        graph, pair = self._build_graph()
        app = self.app = AppRuntime("ten:test_app", close_when_graphs_end=True)

        def on_running() -> None:
            app.start_graph(
                graph, name="test_graph", single_test_pair=pair, node_factory=self._make_test_node
            )
            if self.timeout_us > 0 and not app.aborted:
                timeout_s = self.timeout_us / 1e6
                self.timeout_deadline = time.monotonic() + timeout_s
                app.call_later(timeout_s, self._on_timeout)

        app.on_running.append(on_running)
        app.start_in_thread("ten-test-app")
        self._wait_for_teardown(app)

        if self.adapter is not None:
            self.adapter.stop_thread(JOIN_TIMEOUT_S)
        if app.thread is not None:
            app.thread.join(JOIN_TIMEOUT_S)
        app.join_threads(JOIN_TIMEOUT_S)
        if app.fatal_error is not None:
            raise app.fatal_error
        with self._lock:
            return copy_error(self.error) if self.error is not None else None

    def _wait_for_teardown(self, app: AppRuntime) -> None:
        grace = float(os.environ.get(TEARDOWN_GRACE_ENV, DEFAULT_TEARDOWN_GRACE_S))
        while not app.closed_event.wait(0.05):
            if self.close_requested_at is None:
                continue
            limit = self.close_requested_at + grace
            if self.timeout_deadline is not None:
                limit = max(limit, self.timeout_deadline + grace)
            if time.monotonic() > limit:
                app.fatal(FatalRuntimeError(self._describe_hang(app, grace)))
                app.closed_event.wait(JOIN_TIMEOUT_S)
                return

    def _describe_hang(self, app: AppRuntime, grace: float) -> str:
        stuck = []
        for engine in list(app.engines.values()):
            for node in list(engine.nodes.values()):
                if node.state == NodeState.CLOSED:
                    continue
                hint = {
                    NodeState.STARTING: "on_start has not returned (on_stop waits for it)",
                    NodeState.STOPPING: "on_stop has not returned",
                    NodeState.DEINITING: "on_deinit has not returned",
                    NodeState.CONFIGURING: "on_configure has not returned",
                    NodeState.INITING: "on_init has not returned",
                }.get(node.state, f"state {node.state.name}")
                stuck.append(f"'{node.name}': {hint}")
        return (
            f"Teardown did not finish {grace:.0f}s after the test was stopped "
            f"(the native runtime would hang here). Still running: {'; '.join(stuck) or 'unknown'}"
        )

    # -- stop ----------------------------------------------------------------------

    def stop_test(self, error: _TenError | None) -> None:
        with self._lock:
            if error is not None and self.error is None:
                self.error = copy_error(error)
            if self.close_requested_at is None:
                self.close_requested_at = time.monotonic()
        if self.app is not None:
            self.app.request_close()

    def _on_timeout(self) -> None:
        with self._lock:
            if self.error is None:
                self.error = make_error(TenErrorCode.ErrorCodeTimeout, "Test timeout.")
            if self.close_requested_at is None:
                self.close_requested_at = time.monotonic()
        assert self.app is not None
        self.app.request_close()
