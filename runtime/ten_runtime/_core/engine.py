"""A running graph: creates its nodes, routes messages, carries results (§7).

Runs entirely on the app's runtime thread; posting from other threads goes
through ``AppRuntime.post`` in call order, which gives per-sender FIFO.

Destination choice for an outgoing cmd/data/frame (§7.1):
1. explicit destinations (``set_dests``);
2. graph connections for (sender, kind, name) - fan-out gets clones;
3. single-test mode: the counterpart (this also *rewrites* 1 and 2);
4. otherwise Err(7) "Failed to find destination ...".
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..cmd_result import CmdResult, StatusCode
from ..error import TenErrorCode, _TenError, closed_error, make_error
from ..msg import MsgCore
from ..start_graph_cmd import StartGraphCmd
from ..stop_graph_cmd import StopGraphCmd
from . import logsink
from .graph import GraphDef, GraphError, parse_graph
from .node import Node, NodeState
from .paths import CmdPath, ResultGroup
from .values import TValue
from .workers import GroupWorker

if TYPE_CHECKING:
    from .app_runtime import AppRuntime

ErrorHandler = Callable[[_TenError | None], None]
ResultHandler = Callable[[MsgCore | None, _TenError | None], None]

CREATE_INSTANCE_TIMEOUT_S = 30.0
UNSPECIFIED_GROUP = "ten:unspecified_group"


class GraphEngine:
    def __init__(
        self,
        app: AppRuntime,
        graph: GraphDef,
        graph_id: str | None = None,
        name: str | None = None,
        single_test_pair: tuple[str, str] | None = None,
        node_factory: Callable[[GraphEngine, Any], Node | None] | None = None,
        on_closed: Callable[[GraphEngine], None] | None = None,
    ) -> None:
        self.app = app
        self.graph = graph
        self.graph_id = graph_id or str(uuid.uuid4())
        self.name = name
        # In single-test mode everything one side sends goes to the other (§11.5).
        self.single_test_pair = single_test_pair
        # Builds nodes the addon manager does not (the tester's test extension).
        self.node_factory = node_factory
        self.on_closed_callbacks: list[Callable[[GraphEngine], None]] = []
        if on_closed is not None:
            self.on_closed_callbacks.append(on_closed)
        self.nodes: dict[str, Node] = {}
        self.state = "creating"
        self.all_started = threading.Event()
        self.closed_event = threading.Event()
        self.workers: dict[str, GroupWorker] = {}
        self._pending_creations: dict[int, Any] = {}
        self._next_context = 1
        self._warned_unconnected: set[tuple[str, str]] = set()
        # A failed start is fatal for graphs the app starts itself; for a
        # StartGraphCmd from a node it is only reported back (start_error).
        self.fatal_on_failure = True
        self.start_error: str | None = None
        # Told once: None when every node is created and starting, else the error.
        self.start_listeners: list[Callable[[str | None], None]] = []
        self.log = logsink.runtime_logger(None)

    def __repr__(self) -> str:
        return f"<GraphEngine {self.name or self.graph_id} {self.state}>"

    def worker_for(self, group: str) -> GroupWorker:
        worker = self.workers.get(group)
        if worker is None:
            worker = self.workers[group] = GroupWorker(group)
        return worker

    # -- start ---------------------------------------------------------------

    def start(self) -> None:
        """Create every node (asking addons), then start them all independently."""
        from .addons import AddonNotFound, resolve_addon

        for node_def in self.graph.nodes:
            if self.node_factory is not None:
                node = self.node_factory(self, node_def)
                if node is not None:
                    self.nodes[node.name] = node
                    continue
            try:
                entry = resolve_addon(node_def.addon)
            except AddonNotFound as exc:
                self.app.start_failed(self, str(exc))
                return
            context = self._next_context
            self._next_context += 1
            self._pending_creations[context] = (node_def, entry)
            self._create_instance(context, node_def, entry)
            if self.app.aborted:
                return
        self.app.call_later(CREATE_INSTANCE_TIMEOUT_S, self._check_creation_timeout)
        self._maybe_begin()

    def _create_instance(self, context: int, node_def: Any, entry: Any) -> None:
        from ..ten_env import TenEnv
        from .envcore import AddonEnv

        def done(instance: Any, ctx: Any) -> None:
            self.app.post(self._instance_created, ctx, instance)

        env = TenEnv(AddonEnv(entry.name, done))
        try:
            entry.addon.on_create_instance(env, node_def.name, context)
        except Exception as exc:  # user code
            self.app.start_failed(
                self,
                f"Addon '{entry.name}' failed in on_create_instance for node '{node_def.name}': "
                f"{exc!r}",
                exc,
            )

    def _instance_created(self, context: Any, instance: Any) -> None:
        from ..async_extension import AsyncExtension
        from ..extension import Extension
        from .adapters import make_extension_adapter

        pending = self._pending_creations.pop(context, None)
        if pending is None:
            self.log(3, f"on_create_instance_done() with an unknown context {context!r}; ignored.")
            return
        node_def, entry = pending
        if not isinstance(instance, (AsyncExtension, Extension)):
            self.app.start_failed(
                self,
                f"Addon '{entry.name}' created {type(instance).__name__} for node "
                f"'{node_def.name}', which is not an Extension/AsyncExtension",
            )
            return
        node = Node(
            self,
            node_def.name,
            node_def.addon,
            entry.base_dir,
            node_def.property,
            node_def.extension_group or UNSPECIFIED_GROUP,
        )
        node.adapter = make_extension_adapter(node, instance)
        self.nodes[node.name] = node
        self._maybe_begin()

    def _check_creation_timeout(self) -> None:
        if self._pending_creations and self.state == "creating":
            names = ", ".join(sorted(d.name for d, _ in self._pending_creations.values()))
            self.app.start_failed(
                self,
                f"on_create_instance_done() was not called within {CREATE_INSTANCE_TIMEOUT_S:.0f}s "
                f"for node(s): {names}",
            )

    def _maybe_begin(self) -> None:
        if self.state != "creating" or self._pending_creations or self.app.aborted:
            return
        if len(self.nodes) != len(self.graph.nodes):
            return
        self.state = "running"
        for node in list(self.nodes.values()):
            node.begin()
        self.notify_start_result(None)

    def notify_start_result(self, error: str | None) -> None:
        listeners, self.start_listeners = self.start_listeners, []
        for listener in listeners:
            listener(error)

    def node_started(self, node: Node) -> None:
        if all(n.state >= NodeState.STARTED for n in self.nodes.values()):
            self.all_started.set()

    # -- close ---------------------------------------------------------------

    def close(self) -> None:
        if self.state in ("closing", "closed"):
            return
        was_creating = self.state == "creating"
        self.state = "closing"
        if was_creating:
            self._pending_creations.clear()
        for node in list(self.nodes.values()):
            node.request_close()
        self._maybe_closed()

    def node_closed(self, node: Node) -> None:
        self._maybe_closed()

    def _maybe_closed(self) -> None:
        if self.state != "closing":
            return
        if any(n.state != NodeState.CLOSED for n in self.nodes.values()):
            return
        self._set_closed()

    def _set_closed(self) -> None:
        self.state = "closed"
        for worker in self.workers.values():
            worker.stop()
            self.app.worker_threads_to_join.append(worker.thread)
        self.closed_event.set()
        for callback in self.on_closed_callbacks:
            callback(self)

    def abort(self) -> None:
        for node in list(self.nodes.values()):
            node.abort()
        self._pending_creations.clear()
        if self.state != "closed":
            self._set_closed()

    # -- routing -------------------------------------------------------------

    def counterpart(self, sender: Node) -> Node | None:
        if self.single_test_pair is None:
            return None
        a, b = self.single_test_pair
        other = b if sender.name == a else a if sender.name == b else None
        return self.nodes.get(other) if other else None

    def _resolve_receivers(
        self, sender: Node, core: MsgCore
    ) -> tuple[list[Node], _TenError | None]:
        if self.single_test_pair is not None:
            other = self.counterpart(sender)
            if other is not None:
                return [other], None
        if core.dests:
            receivers: list[Node] = []
            for app_uri, graph_id, ext_name in core.dests:
                if app_uri not in ("", self.app.uri):
                    return [], make_error(
                        TenErrorCode.ErrorCodeGeneric,
                        f"The app '{app_uri}' is not reachable: the stand-in runs a single app.",
                    )
                if ext_name is None:
                    return [], make_error(
                        TenErrorCode.ErrorCodeGeneric,
                        f"A '{core.kind}' message '{core.name}' cannot be sent to an app.",
                    )
                engine = (
                    self
                    if graph_id in ("", self.graph_id)
                    else self.app.engines.get(graph_id or "")
                )
                if engine is None:
                    return [], make_error(
                        TenErrorCode.ErrorCodeGeneric, f"Failed to find the graph '{graph_id}'."
                    )
                node = engine.nodes.get(ext_name)
                if node is None:
                    return [], make_error(
                        TenErrorCode.ErrorCodeGeneric,
                        f"Failed to find the destination extension '{ext_name}' in graph.",
                    )
                receivers.append(node)
            return receivers, None
        names = self.graph.routes.get((sender.name, core.kind, core.name), [])
        receivers = [self.nodes[n] for n in names if n in self.nodes]
        if receivers:
            return receivers, None
        return [], make_error(
            TenErrorCode.ErrorCodeMsgNotConnected,
            f"Failed to find destination of a '{core.kind}' message '{core.name}' from graph.",
        )

    def send_from(
        self,
        sender: Node,
        core: MsgCore,
        on_error: ErrorHandler | None,
        on_result: ResultHandler | None,
        is_ex: bool,
    ) -> None:
        """Route one outgoing cmd/data/frame (runtime thread)."""

        def fail(err: _TenError) -> None:
            if core.kind == "cmd":
                if on_result is not None:
                    on_result(None, err)
            elif on_error is not None:
                on_error(err)
            else:
                # Fire-and-forget: the failure is only logged (§5.2).
                key = (core.kind, core.name)
                if err.error_code() != TenErrorCode.ErrorCodeMsgNotConnected or (
                    key not in self._warned_unconnected
                ):
                    self._warned_unconnected.add(key)
                    sender.log(3, err.error_message())

        if self.app.aborted:
            return
        if sender.closed:
            fail(closed_error())
            return
        if core.locks:
            fail(
                make_error(
                    TenErrorCode.ErrorCodeGeneric,
                    "Locked resources are not allowed in messages sent from an extension.",
                )
            )
            return
        problem = sender.check_msg(core, "out")
        if problem is not None:
            fail(make_error(TenErrorCode.ErrorCodeGeneric, problem))
            return
        if core.kind == "cmd" and core.py_class in (StopGraphCmd, StartGraphCmd):
            # Addressed to the app (``set_dests([Loc("")])``), as native extensions do.
            if core.dests and all(d[2] is None for d in core.dests):
                self._handle_app_cmd(sender, core, on_result)
                return
        receivers, err = self._resolve_receivers(sender, core)
        if err is not None:
            fail(err)
            return

        core.source = sender.loc
        core.dests = []
        cores = [core] + [core.clone() for _ in receivers[1:]]
        if core.kind == "cmd":
            group = ResultGroup(sender, on_result, is_ex, len(receivers))
            for receiver, c in zip(receivers, cores, strict=True):
                self.app.add_path(CmdPath(sender, receiver, c, group))
        for receiver, c in zip(receivers, cores, strict=True):
            receiver.deliver(c)
        if core.kind != "cmd" and on_error is not None:
            on_error(None)

    # -- results -------------------------------------------------------------

    def return_result_from(
        self,
        responder: Node,
        core: MsgCore,
        on_error: ErrorHandler | None,
        internal: bool = False,
    ) -> None:
        """Carry a result back along the cmd's path (runtime thread)."""
        if self.app.aborted:
            return
        if responder.closed and not internal:
            if on_error is not None:
                on_error(closed_error())
            return
        if core.locks:
            if on_error is not None:
                on_error(
                    make_error(
                        TenErrorCode.ErrorCodeGeneric,
                        "Locked resources are not allowed in messages sent from an extension.",
                    )
                )
            return
        # By the cmd's own id only: a result made from a clone finds no path (§6.3).
        path = self.app.find_path(responder, core.cmd_id, None)
        if path is None:
            # Already answered finally, timed out, or never received: dropped silently.
            if on_error is not None:
                on_error(None)
            return
        if not internal:
            problem = responder.check_msg(core, "out")
            if problem is not None:
                if on_error is not None:
                    on_error(make_error(TenErrorCode.ErrorCodeGeneric, problem))
                return
        if core.is_final:
            path.done = True
            self.app.remove_path(path)
        core.source = responder.loc
        core.dests = []
        self.app.feed_result(path, core)
        if on_error is not None:
            on_error(None)

    # -- commands addressed to the app ----------------------------------------

    def _handle_app_cmd(self, sender: Node, core: MsgCore, on_result: ResultHandler | None) -> None:
        def answer(status: StatusCode, detail: str, props: dict[str, str] | None = None) -> None:
            if on_result is None:
                return
            result = MsgCore("cmd_result", CmdResult, core.name)
            result.cmd_id = core.cmd_id
            result.status = int(status)
            result.is_completed = True
            result.source = (self.app.uri, "", None)
            if detail:
                result.props.data["detail"] = TValue("string", detail)
            for key, value in (props or {}).items():
                result.props.data[key] = TValue("string", value)
            on_result(result, None)

        if core.py_class is StopGraphCmd:
            graph_id = core.extra.get("graph_id") or ""
            target = self if graph_id in ("", self.graph_id) else self.app.engines.get(graph_id)
            if target is None:
                answer(StatusCode.ERROR, f"Failed to find the graph '{graph_id}'.")
                return
            sender.log(2, f"Stopping graph {target.name or target.graph_id} on request.")
            answer(StatusCode.OK, "")
            self.app.stop_graph(target)
            return

        # StartGraphCmd
        name = core.extra.get("predefined_graph_name")
        try:
            if name:
                graph_obj = self.app.predefined_graph(name)
                if graph_obj is None:
                    raise GraphError(f"no predefined graph named '{name}'")
            elif "graph" in core.extra:
                graph_obj = core.extra["graph"]
            else:
                raise GraphError("the StartGraphCmd carries no graph")
            graph = parse_graph(graph_obj)
        except GraphError as exc:
            answer(StatusCode.ERROR, f"Invalid graph: {exc}")
            return
        # Natively the result comes once the new graph's extensions exist.
        holder: dict[str, GraphEngine] = {}

        def on_start_result(error: str | None) -> None:
            if error is not None:
                answer(StatusCode.ERROR, f"Failed to start the graph: {error}")
            else:
                answer(StatusCode.OK, "", {"graph_id": holder["engine"].graph_id})

        holder["engine"] = self.app.create_graph(graph, name=name, fatal_on_failure=False)
        holder["engine"].start_listeners.append(on_start_result)
        holder["engine"].start()
