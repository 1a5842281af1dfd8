"""The objects behind ``ten_env._internal``: property access, sends, lifecycle, logs.

These are called from any thread (extension loops, tester loop, worker
threads).  Property stores are guarded by a lock; everything that touches
graph state (routing, paths, lifecycle) is posted to the app's runtime thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..error import TenErrorCode, _TenError, closed_error, make_error, not_found
from ..msg import Msg, MsgCore
from ..value import fields_to_python
from . import logsink
from .schema import SchemaViolation
from .values import JsonError, TValue, from_json_text, get_path, new_object, set_path

if TYPE_CHECKING:
    from .app_runtime import AppRuntime
    from .node import Node

ErrorHandler = Callable[[_TenError | None], None]
ResultHandler = Callable[[MsgCore | None, _TenError | None], None]


class PropertyHost:
    """A property store plus its lock (an extension's or an app's)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.store: TValue = new_object()

    def schema_for(self, top_level_name: str) -> Any:
        return None


class EnvCore:
    """Base of every env internal: logging and the closed flag."""

    instance_name: str | None = None

    def is_closed(self) -> bool:
        return False

    def log(
        self,
        level: int,
        msg: str,
        category: str | None,
        fields: Any,
        func_name: str | None,
        file_name: str | None,
        line_no: int,
    ) -> _TenError | None:
        if self.is_closed():
            return closed_error()
        try:
            py_fields = fields_to_python(fields)
        except (ValueError, TypeError) as exc:
            return make_error(TenErrorCode.ErrorCodeGeneric, f"failed to convert fields: {exc}")
        logsink.emit(
            logsink.LogRecord(
                int(level),
                str(msg),
                category,
                py_fields,
                func_name,
                file_name,
                line_no,
                self.instance_name,
            )
        )
        return None

    # -- property access (shared by extension and app envs) -----------------

    def _host_for(self, path: str) -> tuple[PropertyHost | None, str, bool]:
        """(host, path inside it, is_app_store) for a path with optional prefix."""
        return None, path, False

    def get_value(self, path: str | None) -> tuple[TValue | None, _TenError | None]:
        """A copy of the value at ``path`` (whole store for None/"")."""
        if self.is_closed():
            return None, closed_error()
        host, inner, _ = self._host_for(path or "")
        if host is None:
            return None, not_found(path)
        with host.lock:
            value = host.store if inner == "" else get_path(host.store, inner)
            if value is None:
                return None, not_found(path)
            return value.clone(), None

    def set_value(self, path: str, value: TValue) -> _TenError | None:
        if self.is_closed():
            return closed_error()
        if path == "":
            return make_error(TenErrorCode.ErrorCodeInvalidArgument, "path should not be empty.")
        host, inner, is_app = self._host_for(path)
        if is_app:
            return make_error(
                TenErrorCode.ErrorCodeGeneric,
                "Writing app properties from an extension is not allowed.",
            )
        if host is None or inner == "":
            return make_error(TenErrorCode.ErrorCodeInvalidArgument, "path should not be empty.")
        schema = host.schema_for(inner)
        if schema is not None:
            try:
                value = schema.check(value, inner)
            except SchemaViolation as exc:
                return make_error(TenErrorCode.ErrorCodeGeneric, str(exc))
        with host.lock:
            problem = set_path(host.store, inner, value)
        if problem is not None:
            return make_error(TenErrorCode.ErrorCodeInvalidArgument, problem)
        return None

    def set_json(self, path: str, json_str: str) -> _TenError | None:
        """Parse then set; invalid JSON is ``Err(2)`` here (wrappers may raise instead)."""
        try:
            value = from_json_text(json_str)
        except (JsonError, TypeError):
            return make_error(TenErrorCode.ErrorCodeInvalidJSON, str(json_str))
        return self.set_value(path, value)

    def exists(self, path: str) -> tuple[bool, _TenError | None]:
        if self.is_closed():
            return False, closed_error()
        host, inner, _ = self._host_for(path or "")
        if host is None:
            return False, None
        with host.lock:
            return (inner == "" or get_path(host.store, inner) is not None), None

    def init_property_from_json(self, json_str: str) -> _TenError | None:
        return make_error(TenErrorCode.ErrorCodeGeneric, "Invalid timing to init property.")

    # -- lifecycle / sends: only meaningful on some envs ---------------------

    def _unsupported(self, what: str) -> _TenError:
        return make_error(
            TenErrorCode.ErrorCodeGeneric, f"{what} is not supported on this ten_env."
        )

    def on_configure_done(self) -> None:
        self._warn_unsupported("on_configure_done")

    def on_init_done(self) -> None:
        self._warn_unsupported("on_init_done")

    def on_start_done(self) -> None:
        self._warn_unsupported("on_start_done")

    def on_stop_done(self) -> None:
        self._warn_unsupported("on_stop_done")

    def on_deinit_done(self) -> None:
        self._warn_unsupported("on_deinit_done")

    def on_create_instance_done(self, instance: Any, context: Any) -> None:
        self._warn_unsupported("on_create_instance_done")

    def _warn_unsupported(self, what: str) -> None:
        logsink.runtime_logger(self.instance_name)(
            3, f"{what}() is not valid on this ten_env; ignored."
        )

    def send(self, msg: Msg, on_error: ErrorHandler | None) -> _TenError | None:
        return self._unsupported("Sending messages")

    def send_cmd(self, cmd: Msg, on_result: ResultHandler | None, is_ex: bool) -> _TenError | None:
        return self._unsupported("Sending commands")

    def return_result(self, result: Msg, on_error: ErrorHandler | None) -> _TenError | None:
        return self._unsupported("Returning results")


class NodeEnv(EnvCore):
    """The internal of an extension's (or the test extension's) ten_env."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.instance_name = node.name

    @property
    def app(self) -> AppRuntime:
        return self.node.app

    def is_closed(self) -> bool:
        return self.node.closed

    def _host_for(self, path: str) -> tuple[PropertyHost | None, str, bool]:
        if path.startswith("app:"):
            return self.node.app.props, path[len("app:") :], True
        if path.startswith("extension:"):
            return self.node.props, path[len("extension:") :], False
        return self.node.props, path, False

    def init_property_from_json(self, json_str: str) -> _TenError | None:
        if self.is_closed():
            return closed_error()
        if not isinstance(json_str, str):
            raise ValueError("json_str must be a str")
        # Only valid during on_configure; the text is parsed at configure-done.
        if not self.node.in_configure():
            return make_error(TenErrorCode.ErrorCodeGeneric, "Invalid timing to init property.")
        self.node.init_property_json = json_str
        return None

    # lifecycle (sync Extension / ExtensionTester call these)
    def on_configure_done(self) -> None:
        self.app.post(self.node.configure_done)

    def on_init_done(self) -> None:
        self.app.post(self.node.init_done)

    def on_start_done(self) -> None:
        self.app.post(self.node.start_done)

    def on_stop_done(self) -> None:
        self.app.post(self.node.stop_done)

    def on_deinit_done(self) -> None:
        self.app.post(self.node.deinit_done)

    # sends: the synchronous part (checks and ownership); routing happens on
    # the runtime thread, in the order calls were made.
    def send(self, msg: Msg, on_error: ErrorHandler | None) -> _TenError | None:
        if self.is_closed():
            return closed_error()
        core = msg._ten_take()
        if not self.app.post(self.node.engine.send_from, self.node, core, on_error, None, False):
            return closed_error()
        return None

    def send_cmd(self, cmd: Msg, on_result: ResultHandler | None, is_ex: bool) -> _TenError | None:
        if self.is_closed():
            return closed_error()
        core = cmd._ten_take()
        if not self.app.post(self.node.engine.send_from, self.node, core, None, on_result, is_ex):
            return closed_error()
        return None

    def return_result(self, result: Msg, on_error: ErrorHandler | None) -> _TenError | None:
        if self.is_closed():
            return closed_error()
        core = result._ten_take()
        if not self.app.post(self.node.engine.return_result_from, self.node, core, on_error):
            return closed_error()
        return None


class AppEnv(EnvCore):
    """The internal of an App's ten_env: the app property store and lifecycle."""

    def __init__(self, app: AppRuntime) -> None:
        self.app_runtime = app
        self.instance_name = None

    def is_closed(self) -> bool:
        return self.app_runtime.env_closed

    def _host_for(self, path: str) -> tuple[PropertyHost | None, str, bool]:
        if path.startswith("app:"):
            path = path[len("app:") :]
        return self.app_runtime.props, path, False

    def init_property_from_json(self, json_str: str) -> _TenError | None:
        if self.is_closed():
            return closed_error()
        if not isinstance(json_str, str):
            raise ValueError("json_str must be a str")
        if not self.app_runtime.in_configure():
            return make_error(TenErrorCode.ErrorCodeGeneric, "Invalid timing to init property.")
        self.app_runtime.init_property_json = json_str
        return None

    def on_configure_done(self) -> None:
        self.app_runtime.post(self.app_runtime.configure_done)

    def on_init_done(self) -> None:
        self.app_runtime.post(self.app_runtime.init_done)

    def on_deinit_done(self) -> None:
        self.app_runtime.post(self.app_runtime.deinit_done)


class AddonEnv(EnvCore):
    """The internal of the sync TenEnv an Addon gets: logging and on_create_instance_done."""

    def __init__(self, addon_name: str, on_done: Callable[[Any, Any], None]) -> None:
        self.instance_name = addon_name
        self._on_done = on_done

    def on_create_instance_done(self, instance: Any, context: Any) -> None:
        self._on_done(instance, context)
