"""One extension instance in a graph: its lifecycle state machine (§4.2).

All methods here run on the app's runtime thread.  The adapter (see
``adapters.py``) runs the user callbacks on the right thread/loop and posts
the matching ``*_done`` back here.

State order: CREATED -> CONFIGURING -> CONFIGURED -> INITING -> INITED ->
STARTING -> STARTED -> STOPPING -> STOPPED -> DEINITING -> CLOSED.

Rules that matter to users:
* non-result messages are queued until init-done, then delivered in arrival
  order *before* on_start is scheduled;
* on_stop is not delivered until on_start has returned;
* a close requested during configure/init skips the remaining start steps;
* from DEINITING on, data/frames are dropped and cmds auto-answered ERROR.
"""

from __future__ import annotations

import json
import os
import time
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from ..cmd_result import CmdResult, StatusCode
from ..msg import MsgCore
from ..trigger_life_cycle_cmd import TriggerLifeCycleCmd
from . import logsink
from .envcore import NodeEnv, PropertyHost
from .envsubst import MissingEnvVar, substitute_env
from .fatal import GraphStartError
from .schema import SchemaStore, SchemaViolation, ValueSchema, build_schema_store
from .values import JsonError, TValue, deep_merge, from_json_text, from_py

if TYPE_CHECKING:
    from .adapters import Adapter
    from .app_runtime import AppRuntime
    from .engine import GraphEngine

DEFAULT_PATH_TIMEOUT_US = 180_000_000
DEFAULT_PATH_CHECK_INTERVAL_US = 10_000_000
DEINIT_DETAIL = "The destination extension is in its de-initialization phase."


class NodeState(IntEnum):
    CREATED = 0
    CONFIGURING = 1
    CONFIGURED = 2
    INITING = 3
    INITED = 4
    STARTING = 5
    STARTED = 6
    STOPPING = 7
    STOPPED = 8
    DEINITING = 9
    CLOSED = 10


class NodeProperties(PropertyHost):
    def __init__(self) -> None:
        super().__init__()
        self.schema: SchemaStore | None = None

    def schema_for(self, top_level_name: str) -> ValueSchema | None:
        # Writes are checked only when the path is exactly a declared top-level name.
        if self.schema is None:
            return None
        return self.schema.top_level_property(top_level_name)


class Node:
    def __init__(
        self,
        engine: GraphEngine,
        name: str,
        addon_name: str,
        base_dir: str | None,
        graph_property: dict[str, Any],
        group: str,
        is_tester: bool = False,
    ) -> None:
        self.engine = engine
        self.app: AppRuntime = engine.app
        self.name = name
        self.addon_name = addon_name
        self.base_dir = base_dir
        self.graph_property = graph_property
        self.group = group
        self.is_tester = is_tester
        self.state = NodeState.CREATED
        self.close_requested = False
        self.closed = False  # env detached: every env call returns Err(6)
        self.queue: list[MsgCore] = []
        self.props = NodeProperties()
        self.init_property_json: str | None = None
        self.env = NodeEnv(self)
        self.adapter: Adapter | None = None
        self.log = logsink.runtime_logger(name)
        # §9.5 reserved keys
        self.out_path_timeout_s = DEFAULT_PATH_TIMEOUT_US / 1e6
        self.in_path_timeout_s = DEFAULT_PATH_TIMEOUT_US / 1e6
        self.path_check_interval_s = DEFAULT_PATH_CHECK_INTERVAL_US / 1e6
        self.manual_start = False
        self.manual_stop = False
        self.start_triggered = False
        self.stop_triggered = False
        self.waiting_stop_trigger = False
        self._path_timer: Any = None

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.state.name}>"

    @property
    def loc(self) -> tuple[str, str, str]:
        return (self.app.uri, self.engine.graph_id, self.name)

    def in_configure(self) -> bool:
        return self.state == NodeState.CONFIGURING

    # -- lifecycle ---------------------------------------------------------

    def begin(self) -> None:
        if self.close_requested:
            self._finish_close()
            return
        self.state = NodeState.CONFIGURING
        assert self.adapter is not None
        self.adapter.configure()

    def configure_done(self) -> None:
        if self.state != NodeState.CONFIGURING:
            self.log(3, f"on_configure_done() called in state {self.state.name}; ignored.")
            return
        self.state = NodeState.CONFIGURED
        if self.close_requested:
            self._enter_stop()
            return
        if not self.is_tester:
            try:
                self._load_properties()
            except GraphStartError as exc:
                self.app.fatal(exc)
                return
        self._arm_path_timer()
        self.state = NodeState.INITING
        assert self.adapter is not None
        self.adapter.init()

    def init_done(self) -> None:
        if self.state != NodeState.INITING:
            self.log(3, f"on_init_done() called in state {self.state.name}; ignored.")
            return
        self.state = NodeState.INITED
        queued, self.queue = self.queue, []
        for core in queued:
            self._admit(core)
        if self.close_requested:
            self._enter_stop()
            return
        if self.manual_start and not self.start_triggered:
            self.log(2, "Waiting for a TriggerLifeCycleCmd(start) before on_start.")
            return
        self._begin_start()

    def _begin_start(self) -> None:
        self.state = NodeState.STARTING
        assert self.adapter is not None
        self.adapter.start()

    def start_done(self) -> None:
        if self.state != NodeState.STARTING:
            self.log(3, f"on_start_done() called in state {self.state.name}; ignored.")
            return
        self.state = NodeState.STARTED
        self.engine.node_started(self)
        if self.close_requested:
            self._enter_stop()

    def request_close(self) -> None:
        if self.close_requested:
            return
        self.close_requested = True
        if self.state == NodeState.CREATED:
            self._finish_close()
        elif self.state == NodeState.STARTED or (
            self.state == NodeState.INITED and self.manual_start and not self.start_triggered
        ):
            self._enter_stop()
        # CONFIGURING / INITING / STARTING: the matching *_done handler stops.
        # In particular on_stop waits for on_start to return (§4.2 item 5).

    def _enter_stop(self) -> None:
        if self.manual_stop and not self.stop_triggered:
            self.waiting_stop_trigger = True
            self.log(2, "Waiting for a TriggerLifeCycleCmd(stop) before on_stop.")
            return
        self.waiting_stop_trigger = False
        self.state = NodeState.STOPPING
        assert self.adapter is not None
        self.adapter.stop()

    def stop_done(self) -> None:
        if self.state != NodeState.STOPPING:
            self.log(3, f"on_stop_done() called in state {self.state.name}; ignored.")
            return
        self.state = NodeState.STOPPED
        self.state = NodeState.DEINITING
        # Anything still queued (close came before init-done) gets the deinit treatment.
        queued, self.queue = self.queue, []
        for core in queued:
            self._admit(core)
        assert self.adapter is not None
        self.adapter.deinit()

    def deinit_done(self) -> None:
        if self.state != NodeState.DEINITING:
            self.log(3, f"on_deinit_done() called in state {self.state.name}; ignored.")
            return
        self._finish_close()

    def _finish_close(self) -> None:
        self.state = NodeState.CLOSED
        self.closed = True
        if self._path_timer is not None:
            self._path_timer.cancel()
            self._path_timer = None
        if self.adapter is not None:
            self.adapter.released()
        self.engine.node_closed(self)

    def abort(self) -> None:
        """Fatal error elsewhere: detach without running any more user code."""
        if self.state == NodeState.CLOSED:
            return
        self.state = NodeState.CLOSED
        self.closed = True
        if self._path_timer is not None:
            self._path_timer.cancel()
            self._path_timer = None
        if self.adapter is not None:
            self.adapter.released()

    # -- configure-done pipeline (§4.2 item 2) ------------------------------

    def _fatal(self, message: str) -> GraphStartError:
        self.log(4, message)
        return GraphStartError(f"[{self.name}] {message}")

    def _load_properties(self) -> None:
        # 1. defaults: init_property_from_json text, else property.json, else {}
        if self.init_property_json is not None:
            source, text = "init_property_from_json", self.init_property_json
        else:
            path = os.path.join(self.base_dir, "property.json") if self.base_dir else None
            if path and os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    source, text = path, f.read()
            else:
                source, text = "", "{}"
        try:
            store = from_json_text(text)
        except JsonError as exc:
            raise self._fatal(f"Failed to load extension property data ({source}): {exc}") from None
        if store.type != "object":
            raise self._fatal(f"Failed to load extension property data ({source}): not an object")

        # 2. deep-merge the graph node's property over it (§9.3)
        try:
            deep_merge(store, from_py(self.graph_property))
        except TypeError as exc:
            raise self._fatal(f"Invalid node property in the graph: {exc}") from None

        # 3. ${env:...} placeholders in every string leaf (§9.4)
        try:
            substitute_env(store, lambda m: self.log(3, m))
        except MissingEnvVar as exc:
            raise self._fatal(str(exc)) from None

        # 4. reserved `ten` keys (§9.5)
        self._apply_ten_namespace(store)

        # 5. schema store from manifest.json api (§10), with the conflict rule
        schema = self._load_schema()

        # 6. adjust, then validate the whole store (fatal on failure)
        if schema is not None and schema.property is not None:
            try:
                store = schema.property.check(store)
            except SchemaViolation as exc:
                raise self._fatal(f"Property store violates the manifest schema: {exc}") from None

        with self.props.lock:
            self.props.store = store
            self.props.schema = schema
        self.schema = schema

    def _load_manifest(self) -> dict[str, Any] | None:
        if not self.base_dir:
            return None
        path = os.path.join(self.base_dir, "manifest.json")
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError) as exc:
            raise self._fatal(f"Failed to load extension manifest data ({path}): {exc}") from None
        if not isinstance(manifest, dict):
            raise self._fatal(f"Failed to load extension manifest data ({path}): not an object")
        name = manifest.get("name")
        if name is not None and name != self.addon_name:
            self.log(
                3,
                f"manifest.json name '{name}' differs from the addon name '{self.addon_name}'; "
                "the native runtime would not find this addon.",
            )
        return manifest

    def _load_schema(self) -> SchemaStore | None:
        manifest = self._load_manifest()
        if manifest is None or self.base_dir is None:
            return None
        return build_schema_store(
            manifest, self.base_dir, self.app.base_dir, lambda m: self.log(3, f"{m}")
        )

    def _apply_ten_namespace(self, store: TValue) -> None:
        ten = store.data.get("ten")
        defaults = self.app.path_defaults
        out_us = defaults.get("out", DEFAULT_PATH_TIMEOUT_US)
        in_us = defaults.get("in", DEFAULT_PATH_TIMEOUT_US)
        interval_us = defaults.get("interval", DEFAULT_PATH_CHECK_INTERVAL_US)
        if ten is not None and ten.type == "object":
            timeout = ten.data.get("path_timeout")
            if timeout is not None:
                if timeout.is_int:
                    in_us = out_us = timeout.data
                elif timeout.type == "object":
                    if "in_path" in timeout.data and timeout.data["in_path"].is_int:
                        in_us = timeout.data["in_path"].data
                    if "out_path" in timeout.data and timeout.data["out_path"].is_int:
                        out_us = timeout.data["out_path"].data
            check = ten.data.get("path_check_interval")
            if check is not None and check.is_int and check.data > 0:
                interval_us = check.data
            manual = ten.data.get("manual_trigger_life_cycle")
            if manual is not None and manual.type == "array":
                for item in manual.data:
                    stage = item.data.get("stage") if item.type == "object" else None
                    if stage is not None and stage.data == "start":
                        self.manual_start = True
                    elif stage is not None and stage.data == "stop":
                        self.manual_stop = True
        # The in-path must outlive the out-path (native bumps it the same way).
        in_us = max(in_us, out_us + interval_us + 1_000_000)
        self.out_path_timeout_s = out_us / 1e6
        self.in_path_timeout_s = in_us / 1e6
        self.path_check_interval_s = interval_us / 1e6

    schema: SchemaStore | None = None

    # -- path timeouts (§7.6) -----------------------------------------------

    def _arm_path_timer(self) -> None:
        self._path_timer = self.app.call_later(self.path_check_interval_s, self._check_paths)

    def _check_paths(self) -> None:
        self._path_timer = None
        if self.closed:
            return
        self.app.expire_paths(self, time.monotonic())
        self._arm_path_timer()

    # -- message admission (§4.2) -------------------------------------------

    def deliver(self, core: MsgCore) -> None:
        if self.app.aborted:
            return
        if core.kind == "cmd" and core.py_class is TriggerLifeCycleCmd:
            self._on_trigger(core)
            return
        if self.state < NodeState.INITED:
            self.queue.append(core)
            return
        self._admit(core)

    def _admit(self, core: MsgCore) -> None:
        if self.state >= NodeState.DEINITING:
            if core.kind == "cmd":
                self.auto_result(core, StatusCode.ERROR, DEINIT_DETAIL)
            return
        problem = self.check_msg(core, "in")
        if problem is not None:
            # As natively (extension/msg_handling.c, ten_extension_validate_msg_schema
            # in extension/extension.c): a warning, and the message never reaches the
            # extension. A cmd is answered ERROR with the problem as its detail; data
            # and frames, which have no result, are dropped.
            self.log(3, f"See in {core.kind}::{core.name} with invalid schema: {problem}")
            if core.kind == "cmd":
                self.auto_result(core, StatusCode.ERROR, problem)
            return
        assert self.adapter is not None
        self.adapter.dispatch(core)

    def auto_result(self, cmd: MsgCore, status: StatusCode, detail: str) -> None:
        """Answer a cmd on this node's behalf (runtime-generated result)."""
        result = MsgCore("cmd_result", CmdResult, cmd.name)
        result.cmd_id = cmd.cmd_id
        result.parent_cmd_id = cmd.parent_cmd_id
        result.status = int(status)
        result.props.data["detail"] = TValue("string", detail)
        self.engine.return_result_from(self, result, None, internal=True)

    def _on_trigger(self, core: MsgCore) -> None:
        stage = core.extra.get("stage")
        if stage == "start":
            self.start_triggered = True
            if self.state == NodeState.INITED and not self.close_requested:
                self._begin_start()
        elif stage == "stop":
            self.stop_triggered = True
            if self.waiting_stop_trigger:
                self._enter_stop()
        self.auto_result(core, StatusCode.OK, "")

    # -- schema checks of messages (§10.4) -----------------------------------

    def check_msg(self, core: MsgCore, direction: str) -> str | None:
        """Adjust+validate a message against ``*_in``/``*_out``; returns the problem."""
        schema = self.schema
        if schema is None:
            return None
        if core.kind == "cmd_result":
            # A result is checked against the result schema of its cmd: the
            # responder's cmd_in (outgoing), the sender's cmd_out (incoming).
            cmd_dir = "in" if direction == "out" else "out"
            msg_schema = schema.msg_schema("cmd", cmd_dir, core.name)
            value_schema = msg_schema.result if msg_schema else None
        else:
            msg_schema = schema.msg_schema(core.kind, direction, core.name)
            value_schema = msg_schema.property if msg_schema else None
        if value_schema is None:
            return None
        try:
            core.props = value_schema.check(core.props)
        except SchemaViolation as exc:
            return str(exc)
        return None
