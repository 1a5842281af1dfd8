"""What the pure-Python stand-in adds beyond the ``ten_runtime`` contract.

Only tooling (the graph runner, the project's CLI, the stand-in's own tests)
should use this module; extensions and their tests use the contract API only,
so they run unchanged on the native runtime.

* ``IS_STANDIN``: True here; the native runtime has no ``ten_runtime.standin``.
* ``GraphRunner``: run one graph in-process (see ``runner.py``).
* ``FatalRuntimeError`` / ``GraphStartError``: raised where the native
  runtime would end the process.
* ``recorded_logs()`` / ``clear_recorded_logs()``: every ``log_*`` call.
"""

from __future__ import annotations

from .._core.fatal import FatalRuntimeError, GraphStartError
from .._core.logsink import LogRecord
from .._core.logsink import clear_recorded as clear_recorded_logs
from .._core.logsink import recorded as recorded_logs
from .runner import GraphRunner

IS_STANDIN = True

__all__ = [
    "IS_STANDIN",
    "FatalRuntimeError",
    "GraphRunner",
    "GraphStartError",
    "LogRecord",
    "clear_recorded_logs",
    "recorded_logs",
]
