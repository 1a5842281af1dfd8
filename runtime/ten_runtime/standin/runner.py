"""``GraphRunner``: run one TEN graph in this process (stand-in extra, §10 of the brief).

Input is either a graph JSON (``{"nodes": [...], "connections": [...]}``) or an
app ``property.json`` whose ``ten.predefined_graphs`` holds the graph (pick it
by name, else the ``auto_start`` one, else the only one).  For an app
property file, its other app settings (``ten.log``, path timeouts) apply too.

Addons are resolved like the native Python addon loader does: the file's
directory (the app base dir) and every ``search_paths`` entry go on
``sys.path``, then ``ten_packages.extension.<addon>`` or ``<addon>`` is
imported.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from .._core.app_runtime import AppRuntime
from .._core.engine import GraphEngine
from .._core.fatal import FatalRuntimeError, GraphStartError
from .._core.graph import GraphError, parse_graph
from .._core.node import NodeState

JOIN_TIMEOUT_S = 5.0
DEFAULT_STOP_TIMEOUT_S = 30.0


class GraphRunner:
    """Start a graph, wait for it to stop, or stop it (thread-safe, idempotent)."""

    def __init__(
        self,
        graph: dict[str, Any] | None = None,
        *,
        app_property: dict[str, Any] | None = None,
        graph_name: str | None = None,
        base_dir: str | None = None,
        search_paths: Sequence[str] = (),
    ) -> None:
        if (graph is None) == (graph_name is None):
            raise ValueError("give either a graph object or the name of a predefined graph")
        self._graph_obj = graph
        self.graph_name = graph_name
        # How errors and logs name the graph when it is not a predefined one.
        self.label = "graph"
        self.app_property = app_property
        self.base_dir = base_dir
        self.search_paths = [os.path.abspath(p) for p in search_paths]
        self._app: AppRuntime | None = None
        self._engine: GraphEngine | None = None
        self._start_lock = threading.Lock()
        self._stop_requested = False
        # A fatal error is raised once (from start/wait/stop), so that a
        # ``finally: runner.stop()`` after a failed start does not raise again.
        self._fatal_reported = False

    # -- construction ------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        path: str,
        graph_name: str | None = None,
        search_paths: Sequence[str] = (),
    ) -> GraphRunner:
        """Load a graph JSON or an app property.json (raises GraphStartError)."""
        path = os.path.abspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise GraphStartError(f"cannot read '{path}': {exc}") from None
        except ValueError as exc:
            raise GraphStartError(f"'{path}' is not valid JSON: {exc}") from None
        base_dir = os.path.dirname(path)
        if not isinstance(data, dict):
            raise GraphStartError(f"'{path}' must hold a JSON object")
        if "nodes" in data:
            if graph_name is not None:
                raise GraphStartError(
                    f"'{path}' is a single graph; --graph/graph_name applies to app property files"
                )
            runner = cls(data, base_dir=base_dir, search_paths=search_paths)
            runner.label = os.path.basename(path)
            return runner
        ten = data.get("ten")
        graphs = ten.get("predefined_graphs") if isinstance(ten, dict) else None
        if not isinstance(graphs, list) or not graphs:
            raise GraphStartError(
                f"'{path}' is neither a graph (no 'nodes') nor an app property.json with "
                "'ten.predefined_graphs'"
            )
        names = [g.get("name") for g in graphs if isinstance(g, dict)]
        if graph_name is None:
            auto = [g.get("name") for g in graphs if isinstance(g, dict) and g.get("auto_start")]
            if len(auto) == 1:
                graph_name = auto[0]
            elif len(graphs) == 1:
                graph_name = names[0]
            else:
                raise GraphStartError(
                    f"'{path}' defines several graphs ({', '.join(map(str, names))}); "
                    "choose one with graph_name / --graph"
                )
        elif graph_name not in names:
            raise GraphStartError(
                f"no predefined graph named '{graph_name}' in '{path}' "
                f"(available: {', '.join(map(str, names))})"
            )
        return cls(
            app_property=data,
            graph_name=graph_name,
            base_dir=base_dir,
            search_paths=search_paths,
        )

    # -- introspection -----------------------------------------------------------

    @property
    def graph_id(self) -> str | None:
        return self._engine.graph_id if self._engine is not None else None

    @property
    def node_names(self) -> list[str]:
        return list(self._engine.nodes) if self._engine is not None else []

    @property
    def fatal_error(self) -> FatalRuntimeError | None:
        return self._app.fatal_error if self._app is not None else None

    def is_running(self) -> bool:
        return self._app is not None and not self._app.closed_event.is_set()

    # -- start -------------------------------------------------------------------

    def _prepare_sys_path(self) -> None:
        for entry in [*self.search_paths, self.base_dir]:
            if entry and entry not in sys.path:
                sys.path.insert(0, entry)

    def start(self, timeout: float | None = None) -> None:
        """Start the graph; return once every node's on_start has returned.

        Raises GraphStartError (unknown addon, bad graph, missing env var,
        schema failure, ...) or FatalRuntimeError (an extension crashed).
        """
        with self._start_lock:
            if self._app is not None:
                raise RuntimeError("GraphRunner.start() may be called only once")
            self._prepare_sys_path()
            app = self._app = AppRuntime(
                "ten:standin_app",
                base_dir=self.base_dir,
                initial_properties=self.app_property if self.app_property is not None else {},
                close_when_graphs_end=True,
                auto_start_predefined=False,
            )
            app.on_running.append(self._start_graph)
            app.start_in_thread("ten-standin-app")
            if self._stop_requested:
                app.request_close()

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            engine = self._engine
            if engine is not None and engine.all_started.is_set():
                return
            if app.closed_event.wait(0.02):
                break
            if deadline is not None and time.monotonic() > deadline:
                pending = self._pending_nodes()
                self.stop()
                raise GraphStartError(
                    f"not every node started within {timeout}s (still starting: {pending})"
                )
        self._join()
        self._raise_fatal(always=True)
        raise GraphStartError("the graph stopped before every node had started")

    def _start_graph(self) -> None:
        app = self._app
        assert app is not None
        try:
            if self.graph_name is not None:
                graph_obj = app.predefined_graph(self.graph_name)
                if graph_obj is None:
                    raise GraphError(f"no predefined graph named '{self.graph_name}'")
            else:
                graph_obj = self._graph_obj
            graph = parse_graph(graph_obj)
        except GraphError as exc:
            app.fatal(GraphStartError(f"Invalid graph: {exc}"))
            return
        self._engine = app.start_graph(graph, name=self.graph_name or self.label)

    def _pending_nodes(self) -> str:
        engine = self._engine
        if engine is None:
            return "the graph is not created yet"
        return ", ".join(
            f"{n.name} ({n.state.name})"
            for n in engine.nodes.values()
            if n.state < NodeState.STARTED
        )

    # -- wait / stop ---------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """True once the graph has stopped; raises FatalRuntimeError if it crashed."""
        app = self._app
        if app is None:
            raise RuntimeError("GraphRunner.wait() before start()")
        if not app.closed_event.wait(timeout):
            return False
        self._join()
        self._raise_fatal(always=True)
        return True

    def request_stop(self) -> None:
        """Ask for a stop without waiting (safe from signal handlers)."""
        self._stop_requested = True
        if self._app is not None:
            self._app.request_close()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop the graph (on_stop/on_deinit on every node) and wait for it.

        Thread-safe and idempotent.  If teardown takes longer than ``timeout``
        the run is aborted and FatalRuntimeError is raised.
        """
        self.request_stop()
        app = self._app
        if app is None:
            return
        if not app.closed_event.wait(timeout):
            app.fatal(
                FatalRuntimeError(
                    f"The graph did not stop within {timeout}s; still running: "
                    f"{self._pending_close()}"
                )
            )
            app.closed_event.wait(JOIN_TIMEOUT_S)
        self._join()
        self._raise_fatal(always=False)

    def _raise_fatal(self, always: bool) -> None:
        """Raise the run's fatal error (``always``) or only if not raised before."""
        app = self._app
        if app is None or app.fatal_error is None:
            return
        if always or not self._fatal_reported:
            self._fatal_reported = True
            raise app.fatal_error

    def _pending_close(self) -> str:
        engine = self._engine
        if engine is None:
            return "unknown"
        return ", ".join(
            f"{n.name} ({n.state.name})"
            for n in engine.nodes.values()
            if n.state != NodeState.CLOSED
        )

    def _join(self) -> None:
        app = self._app
        if app is None:
            return
        if app.thread is not None and app.thread is not threading.current_thread():
            app.thread.join(JOIN_TIMEOUT_S)
        app.join_threads(JOIN_TIMEOUT_S)

    def __enter__(self) -> GraphRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._app is not None and not self._app.closed_event.is_set():
            self.stop()
