"""The app: one runtime thread (an asyncio loop) hosting graphs (§4.5, §9.1).

Everything that touches graph state runs on this thread; other threads
``post`` work to it.  The same class backs a user ``App``, each
``tester.run()`` (its private test app) and the stand-in's ``GraphRunner``.

Lifecycle: configure (user on_configure, then app properties are applied:
``ten.log``, path defaults, predefined graphs) -> init (user on_init) ->
running (auto-start graphs) -> closing (every graph stops) -> deinit (user
on_deinit) -> closed.  A fatal error aborts instead: no more user callbacks
run, the loop stops, and the owner raises the error from its blocking call.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import traceback
from collections.abc import Callable
from typing import Any

from ..cmd_result import CmdResult
from ..msg import MsgCore
from . import logsink
from .engine import GraphEngine
from .envcore import AppEnv, PropertyHost
from .fatal import FatalRuntimeError, GraphStartError
from .graph import GraphDef, GraphError, parse_graph
from .loops import LoopThread
from .node import Node
from .paths import CmdPath, apply_policy
from .values import TValue, from_json_text, from_py


class AppRuntime:
    def __init__(
        self,
        name: str,
        base_dir: str | None = None,
        user_app: Any = None,
        initial_properties: dict[str, Any] | None = None,
        close_when_graphs_end: bool = False,
        auto_start_predefined: bool = True,
    ) -> None:
        self.name = name
        self.base_dir = base_dir
        self.user_app = user_app
        self.initial_properties = initial_properties
        self.close_when_graphs_end = close_when_graphs_end
        self.auto_start_predefined = auto_start_predefined
        self.loop = asyncio.new_event_loop()
        self.props = PropertyHost()
        self.env_core = AppEnv(self)
        self.env_closed = False
        self.init_property_json: str | None = None
        self.uri = "localhost"
        self.path_defaults: dict[str, int] = {}
        self.predefined: dict[str, dict[str, Any]] = {}
        self.engines: dict[str, GraphEngine] = {}
        self.paths: dict[tuple[int, str], CmdPath] = {}
        self.state = "created"
        self.aborted = False
        self.fatal_error: FatalRuntimeError | None = None
        self.close_requested = False
        self.running_event = threading.Event()
        self.closed_event = threading.Event()
        # Threads that end after the app: joined by whoever waits for the app.
        self.loop_threads_to_join: list[LoopThread] = []
        self.worker_threads_to_join: list[threading.Thread] = []
        self.on_running: list[Callable[[], None]] = []
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.log = logsink.runtime_logger(None)
        self._user_env: Any = None

    # -- thread plumbing -------------------------------------------------------

    def post(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the runtime thread (FIFO per caller); False if gone."""
        try:
            self.loop.call_soon_threadsafe(self._guarded, fn, args)
            return True
        except RuntimeError:
            return False

    def _guarded(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a stand-in bug, or user code called inline
            self.fatal(
                FatalRuntimeError(
                    f"Internal error in the ten_runtime stand-in: {exc!r}\n{traceback.format_exc()}"
                )
            )

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, self._guarded, fn, args)

    def run(self) -> None:
        """Run the app on the calling thread until it has closed (blocking)."""
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._guarded, self._begin, ())
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()
                self.env_closed = True
                self.closed_event.set()

    def start_in_thread(self, thread_name: str, daemon: bool = True) -> threading.Thread:
        self.thread = threading.Thread(target=self.run, name=thread_name, daemon=daemon)
        self.thread.start()
        return self.thread

    def join_threads(self, timeout: float) -> None:
        """Join the extension loops and group workers this app let go of."""
        for loop_thread in self.loop_threads_to_join:
            loop_thread.join(timeout)
        for thread in self.worker_threads_to_join:
            if thread is not threading.current_thread():
                thread.join(timeout)

    # -- lifecycle -------------------------------------------------------------

    def _user_ten_env(self) -> Any:
        if self._user_env is None:
            from ..ten_env import TenEnv

            self._user_env = TenEnv(self.env_core)
        return self._user_env

    def _call_user(self, method_name: str) -> None:
        method = getattr(self.user_app, method_name)
        try:
            method(self._user_ten_env())
        except Exception as exc:
            self.fatal(
                FatalRuntimeError(
                    f"Uncaught exception in App.{method_name}: {exc!r}\n{traceback.format_exc()}"
                )
            )

    def in_configure(self) -> bool:
        return self.state == "configuring"

    def _begin(self) -> None:
        self.state = "configuring"
        if self.user_app is not None:
            self._call_user("on_configure")
        else:
            self.configure_done()

    def configure_done(self) -> None:
        if self.state != "configuring":
            return
        try:
            self._apply_properties()
        except FatalRuntimeError as exc:
            self.fatal(exc)
            return
        self.state = "initing"
        if self.user_app is not None:
            self._call_user("on_init")
        else:
            self.init_done()

    def init_done(self) -> None:
        if self.state != "initing":
            return
        self.state = "running"
        self.running_event.set()
        if self.auto_start_predefined:
            for name, item in self.predefined.items():
                if item.get("auto_start") is True:
                    self.start_predefined(name)
                    if self.aborted:
                        return
        for callback in self.on_running:
            callback()
            if self.aborted:
                return
        if self.close_requested:
            self._close()

    def request_close(self) -> None:
        """Thread-safe: stop every graph, then de-initialise the app."""
        self.close_requested = True
        self.post(self._close)

    def _close(self) -> None:
        if self.state in ("closing", "deiniting", "closed"):
            return
        if self.state != "running":
            self.close_requested = True  # handled once init is done
            return
        self.state = "closing"
        for engine in list(self.engines.values()):
            engine.close()
        self._maybe_deinit()

    def _maybe_deinit(self) -> None:
        if self.state != "closing" or self.engines:
            return
        self.state = "deiniting"
        if self.user_app is not None:
            self._call_user("on_deinit")
        else:
            self.deinit_done()

    def deinit_done(self) -> None:
        if self.state != "deiniting":
            return
        self.state = "closed"
        self.env_closed = True
        self.loop.stop()

    def fatal(self, error: FatalRuntimeError) -> None:
        """Thread-safe: the native runtime would end the process here."""
        with self._lock:
            if self.fatal_error is not None:
                return
            self.fatal_error = error
            self.aborted = True
        self.log(4, str(error).splitlines()[0] if str(error) else repr(error))
        if not self.post(self._abort):
            self.closed_event.set()

    def _abort(self) -> None:
        self.state = "closed"  # first, so engine-closed callbacks do not re-enter close
        for engine in list(self.engines.values()):
            engine.abort()
        self.engines.clear()
        self.paths.clear()
        self.env_closed = True
        self.state = "closed"
        self.loop.stop()

    # -- properties ------------------------------------------------------------

    def _apply_properties(self) -> None:
        if self.initial_properties is not None:
            store = from_py(self.initial_properties)
        elif self.init_property_json is not None:
            try:
                store = from_json_text(self.init_property_json)
            except ValueError as exc:
                raise FatalRuntimeError(f"Failed to load app property data: {exc}") from None
        else:
            store = self._load_property_file()
        if store.type != "object":
            raise FatalRuntimeError("Failed to load app property data: not a JSON object")
        with self.props.lock:
            self.props.store = store
        ten = store.data.get("ten")
        if ten is None or ten.type != "object":
            return
        from .values import to_py

        ten_py = to_py(ten)
        if isinstance(ten_py.get("uri"), str) and ten_py["uri"]:
            self.uri = ten_py["uri"]
        if "log" in ten_py:
            try:
                logsink.configure(ten_py["log"])
            except logsink.LogConfigError as exc:
                self.log(3, f"Ignoring an invalid ten.log section: {exc}")
        timeout = ten_py.get("path_timeout")
        if isinstance(timeout, int) and not isinstance(timeout, bool):
            self.path_defaults["in"] = self.path_defaults["out"] = timeout
        elif isinstance(timeout, dict):
            if isinstance(timeout.get("in_path"), int):
                self.path_defaults["in"] = timeout["in_path"]
            if isinstance(timeout.get("out_path"), int):
                self.path_defaults["out"] = timeout["out_path"]
        if isinstance(ten_py.get("path_check_interval"), int) and ten_py["path_check_interval"] > 0:
            self.path_defaults["interval"] = ten_py["path_check_interval"]
        graphs = ten_py.get("predefined_graphs") or []
        if not isinstance(graphs, list):
            raise GraphStartError("ten.predefined_graphs must be a list")
        for i, item in enumerate(graphs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise GraphStartError(f"ten.predefined_graphs[{i}] needs a 'name'")
            if item["name"] in self.predefined:
                raise GraphStartError(f"duplicate predefined graph name '{item['name']}'")
            self.predefined[item["name"]] = item

    def _load_property_file(self) -> TValue:
        """``<base_dir>/property.json`` when base_dir is an app (manifest type "app")."""
        if not self.base_dir:
            return from_py({})
        manifest = os.path.join(self.base_dir, "manifest.json")
        prop = os.path.join(self.base_dir, "property.json")
        try:
            with open(manifest, encoding="utf-8") as f:
                is_app = json.load(f).get("type") == "app"
        except (OSError, ValueError, AttributeError):
            is_app = False
        if not is_app or not os.path.isfile(prop):
            return from_py({})
        with open(prop, encoding="utf-8") as f:
            try:
                return from_json_text(f.read())
            except ValueError as exc:
                raise FatalRuntimeError(
                    f"Failed to load app property data ({prop}): {exc}"
                ) from None

    def predefined_graph(self, name: str) -> dict[str, Any] | None:
        """The graph object of a predefined graph (inline or via ``import_uri``)."""
        item = self.predefined.get(name)
        if item is None:
            return None
        graph = item.get("graph")
        if graph is None and "nodes" in item:
            graph = {"nodes": item["nodes"], "connections": item.get("connections", [])}
        if not isinstance(graph, dict):
            raise GraphError(f"predefined graph '{name}' has no 'graph'")
        if "import_uri" in graph:
            return load_graph_file(graph["import_uri"], self.base_dir)
        return graph

    # -- graphs ----------------------------------------------------------------

    def start_predefined(self, name: str) -> GraphEngine | None:
        try:
            graph_obj = self.predefined_graph(name)
            if graph_obj is None:
                raise GraphError(f"no predefined graph named '{name}'")
            graph = parse_graph(graph_obj)
        except GraphError as exc:
            self.fatal(GraphStartError(f"Invalid predefined graph '{name}': {exc}"))
            return None
        return self.start_graph(graph, name=name)

    def start_graph(
        self,
        graph: GraphDef,
        name: str | None = None,
        fatal_on_failure: bool = True,
        **engine_kwargs: Any,
    ) -> GraphEngine | None:
        engine = self.create_graph(graph, name, fatal_on_failure, **engine_kwargs)
        engine.start()
        if engine.start_error is not None:
            return None
        return engine

    def create_graph(
        self,
        graph: GraphDef,
        name: str | None = None,
        fatal_on_failure: bool = True,
        **engine_kwargs: Any,
    ) -> GraphEngine:
        """Register a graph without starting it (the caller calls ``start()``)."""
        engine = GraphEngine(self, graph, name=name, on_closed=self._engine_closed, **engine_kwargs)
        engine.fatal_on_failure = fatal_on_failure
        self.engines[engine.graph_id] = engine
        return engine

    def start_failed(
        self, engine: GraphEngine, message: str, cause: BaseException | None = None
    ) -> None:
        if engine.fatal_on_failure:
            error = GraphStartError(
                f"Failed to start graph '{engine.name or engine.graph_id}': {message}"
            )
            if cause is not None:
                error.__cause__ = cause
            self.fatal(error)
            return
        engine.start_error = message
        self.log(4, f"Failed to start graph '{engine.name or engine.graph_id}': {message}")
        engine.abort()
        engine.notify_start_result(message)

    def stop_graph(self, engine: GraphEngine) -> None:
        engine.close()

    def _engine_closed(self, engine: GraphEngine) -> None:
        self.engines.pop(engine.graph_id, None)
        for key, path in list(self.paths.items()):
            if path.sender.engine is engine or path.receiver.engine is engine:
                del self.paths[key]
        if self.close_when_graphs_end and not self.engines and self.state == "running":
            self._close()
            return
        self._maybe_deinit()

    # -- cmd paths ---------------------------------------------------------------

    def add_path(self, path: CmdPath) -> None:
        self.paths[(id(path.receiver), path.cmd_id)] = path

    def remove_path(self, path: CmdPath) -> None:
        key = (id(path.receiver), path.cmd_id)
        if self.paths.get(key) is path:
            del self.paths[key]

    def find_path(
        self, receiver: Node, cmd_id: str | None, parent_id: str | None
    ) -> CmdPath | None:
        for candidate in (cmd_id, parent_id):
            if candidate is None:
                continue
            path = self.paths.get((id(receiver), candidate))
            if path is not None and not path.done and not path.in_expired:
                return path
        return None

    def feed_result(self, path: CmdPath, core: MsgCore) -> None:
        group = path.group
        if group.handler is None:
            # Forwarded without a callback: pass the result further upstream
            # as if the forwarding node had returned it (§7.4).
            upstream = self.find_path(group.sender, path.cmd_id, path.parent_cmd_id)
            if upstream is None:
                return
            if core.is_final:
                upstream.done = True
                self.remove_path(upstream)
            self.feed_result(upstream, core)
            return
        problem = group.sender.check_msg(core, "in")
        if problem is not None:
            core.status = 1  # invalid results are forced to ERROR
            core.props.data["detail"] = TValue("string", problem)
        out = apply_policy(group, core)
        if out is not None:
            group.handler(out, None)

    def expire_paths(self, node: Node, now: float) -> None:
        for path in list(self.paths.values()):
            if path.receiver is node and now >= path.in_deadline:
                path.in_expired = True
            if path.sender is node and not path.done and now >= path.out_deadline:
                path.done = True
                self.remove_path(path)
                result = MsgCore("cmd_result", CmdResult, path.cmd_name)
                result.cmd_id = path.cmd_id
                result.status = 1
                result.props.data["detail"] = TValue("string", "Path timeout.")
                result.source = path.receiver.loc
                self.feed_result(path, result)


def load_graph_file(import_uri: str, base_dir: str | None) -> dict[str, Any]:
    """Load a graph JSON referenced by ``import_uri`` (relative to the app base dir)."""
    if not isinstance(import_uri, str) or not import_uri:
        raise GraphError("'import_uri' must be a non-empty string")
    uri = import_uri.replace("${app_base_dir}", base_dir or "")
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if uri.startswith(("http://", "https://")):
        raise GraphError(f"cannot load '{import_uri}': http(s) is not supported by the stand-in")
    path = uri if os.path.isabs(uri) else os.path.join(base_dir or os.getcwd(), uri)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise GraphError(f"cannot read graph file '{path}': {exc}") from None
    except ValueError as exc:
        raise GraphError(f"graph file '{path}' is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GraphError(f"graph file '{path}' must hold a JSON object")
    return data
