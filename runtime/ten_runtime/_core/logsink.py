"""Where ``log_*`` calls go (§8).

Every call is (1) recorded in memory so tests can assert on it, (2) forwarded
to Python ``logging`` under ``ten.<category or 'default'>``, and (3) if an
app configured ``ten.log.handlers``, written by the matching handlers the way
the native log system writes it (plain or JSON lines to stdout/stderr/file).

The handler configuration is process-wide, as on the native runtime: the last
app that configured ``ten.log`` wins; apps without it leave it unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TextIO

_LEVEL_NAMES = {0: "INVALID", 1: "DEBUG", 2: "INFO", 3: "WARN", 4: "ERROR"}
_LEVEL_CHARS = {0: "V", 1: "D", 2: "I", 3: "W", 4: "E"}
_PY_LEVELS = {
    0: logging.DEBUG,
    1: logging.DEBUG,
    2: logging.INFO,
    3: logging.WARNING,
    4: logging.ERROR,
}
_MATCHER_LEVELS = {"debug": 1, "info": 2, "warn": 3, "error": 4}

_RESET, _RED, _YELLOW, _GREEN, _BLUE, _MAGENTA, _CYAN, _GRAY = (
    "\x1b[0m",
    "\x1b[31m",
    "\x1b[33m",
    "\x1b[32m",
    "\x1b[34m",
    "\x1b[35m",
    "\x1b[36m",
    "\x1b[37m",
)
_LEVEL_COLORS = {0: _CYAN, 1: _CYAN, 2: _GREEN, 3: _YELLOW, 4: _RED}

# Without this, records of level WARNING+ would reach logging's "last resort"
# handler and be printed to stderr, which a native run does not do.
logging.getLogger("ten").addHandler(logging.NullHandler())


@dataclass
class LogRecord:
    level: int
    msg: str
    category: str | None
    fields: Any
    func_name: str | None
    file_name: str | None
    line_no: int
    instance: str | None  # extension (or app/addon) name that logged
    created: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)
    tid: int = field(default_factory=threading.get_native_id)

    @property
    def level_name(self) -> str:
        return _LEVEL_NAMES.get(self.level, str(self.level))


_records: deque[LogRecord] = deque(maxlen=50_000)
_records_lock = threading.Lock()


def recorded() -> list[LogRecord]:
    with _records_lock:
        return list(_records)


def clear_recorded() -> None:
    with _records_lock:
        _records.clear()


# ---------------------------------------------------------------------------
# Handlers from ``ten.log``


@dataclass
class _Matcher:
    level: int  # 0 = off
    category: str | None


@dataclass
class _Handler:
    matchers: list[_Matcher]
    json_format: bool
    colored: bool
    stream_name: str | None  # "stdout" / "stderr" for console
    file_path: str | None

    def matches(self, record: LogRecord) -> bool:
        for m in self.matchers:
            if m.level == 0 or record.level < m.level:
                continue
            if m.category is not None and m.category != record.category:
                continue
            return True
        return False


class LogConfigError(ValueError):
    pass


def parse_log_config(ten_log: Any) -> list[_Handler]:
    if not isinstance(ten_log, dict):
        raise LogConfigError("ten.log must be an object")
    handlers_raw = ten_log.get("handlers", [])
    if not isinstance(handlers_raw, list):
        raise LogConfigError("ten.log.handlers must be a list")
    handlers: list[_Handler] = []
    for i, raw in enumerate(handlers_raw):
        if not isinstance(raw, dict):
            raise LogConfigError(f"ten.log.handlers[{i}] must be an object")
        matchers = []
        for m in raw.get("matchers") or []:
            level_text = str(m.get("level", "info")).lower()
            if level_text != "off" and level_text not in _MATCHER_LEVELS:
                raise LogConfigError(f"ten.log.handlers[{i}]: unknown level {level_text!r}")
            matchers.append(_Matcher(_MATCHER_LEVELS.get(level_text, 0), m.get("category")))
        formatter = raw.get("formatter") or {}
        emitter = raw.get("emitter") or {"type": "console"}
        config = emitter.get("config") or emitter
        stream_name = file_path = None
        if emitter.get("type", "console") == "console":
            stream_name = config.get("stream", "stdout")
            if stream_name not in ("stdout", "stderr"):
                raise LogConfigError(f"ten.log.handlers[{i}]: unknown stream {stream_name!r}")
        elif emitter.get("type") == "file":
            file_path = config.get("path")
            if not isinstance(file_path, str) or not file_path:
                raise LogConfigError(f"ten.log.handlers[{i}]: a file emitter needs a 'path'")
        # otlp and unknown emitters: records still go to Python logging only.
        handlers.append(
            _Handler(
                matchers,
                formatter.get("type", "plain") == "json",
                bool(formatter.get("colored", False)),
                stream_name,
                file_path,
            )
        )
    return handlers


_handlers: list[_Handler] = []
_handlers_lock = threading.Lock()
_write_lock = threading.Lock()


def configure(ten_log: Any) -> None:
    """Install the handlers of an app's ``ten.log`` section (process-wide)."""
    global _handlers
    handlers = parse_log_config(ten_log)
    with _handlers_lock:
        _handlers = handlers


def reset_configuration() -> None:
    global _handlers
    with _handlers_lock:
        _handlers = []


def handlers_snapshot() -> list[Any]:
    """The installed handlers, to put back later with :func:`restore_handlers`."""
    with _handlers_lock:
        return list(_handlers)


def restore_handlers(snapshot: list[Any]) -> None:
    global _handlers
    with _handlers_lock:
        _handlers = list(snapshot)


def _format_plain(record: LogRecord, colored: bool) -> str:
    stamp = datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat()
    target = record.category or "ten"
    where = ""
    if record.func_name and record.file_name:
        if colored:
            where = (
                f" {_MAGENTA}{record.func_name}{_RESET}"
                f"@{_BLUE}{record.file_name}:{record.line_no}{_RESET}"
            )
        else:
            where = f" {record.func_name}@{record.file_name}:{record.line_no}"
    text = f"[{record.instance}] {record.msg}" if record.instance else record.msg
    level_char = _LEVEL_CHARS.get(record.level, "I")
    if colored:
        color = _LEVEL_COLORS.get(record.level, _GREEN)
        return (
            f"{stamp} {record.pid}({record.tid}) {color}{level_char}{_RESET} "
            f"{_CYAN}{target}{_RESET}{where} {_GRAY}{text}{_RESET}"
        )
    return f"{stamp} {record.pid}({record.tid}) {level_char} {target}{where} {text}"


def _format_json(record: LogRecord) -> str:
    obj: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
        "level": record.level_name,
        "pid": record.pid,
        "tid": record.tid,
        "category": record.category,
        "func_name": record.func_name,
        "file_name": record.file_name,
        "line_no": record.line_no,
        "extension": record.instance,
        "message": record.msg,
    }
    if record.fields is not None:
        obj["fields"] = record.fields
    return json.dumps(obj, ensure_ascii=False, default=str)


def _stream(name: str) -> TextIO:
    # Looked up at write time so pytest's capsys/capfd replacements are honoured.
    return sys.stdout if name == "stdout" else sys.stderr


def emit(record: LogRecord) -> None:
    with _records_lock:
        _records.append(record)

    logger = logging.getLogger(f"ten.{record.category or 'default'}")
    py_level = _PY_LEVELS.get(record.level, logging.INFO)
    if logger.isEnabledFor(py_level):
        text = f"[{record.instance}] {record.msg}" if record.instance else record.msg
        py_record = logger.makeRecord(
            logger.name,
            py_level,
            record.file_name or "(unknown file)",
            record.line_no,
            text,
            (),
            None,
            record.func_name,
            {
                "ten_extension": record.instance,
                "ten_category": record.category,
                "ten_fields": record.fields,
            },
        )
        logger.handle(py_record)

    with _handlers_lock:
        handlers = list(_handlers)
    for handler in handlers:
        if not handler.matches(record):
            continue
        line = (
            _format_json(record) if handler.json_format else _format_plain(record, handler.colored)
        )
        with _write_lock:
            try:
                if handler.stream_name is not None:
                    stream = _stream(handler.stream_name)
                    stream.write(line + "\n")
                    stream.flush()
                elif handler.file_path is not None:
                    with open(handler.file_path, "a", encoding="utf-8") as f:
                        f.write(line + "\n")
            except (OSError, ValueError):
                pass  # a closed stream must never break the caller's log call


def caller_info(skip: int) -> tuple[str | None, str | None, int]:
    """(function, file, line) of the frame ``skip`` levels above our caller's caller."""
    frame = sys._getframe(1)
    try:
        for _ in range(skip):
            if frame.f_back is None:
                break
            frame = frame.f_back
        return frame.f_code.co_name, frame.f_code.co_filename, frame.f_lineno
    finally:
        del frame


def runtime_logger(instance: str | None) -> Callable[[int, str], None]:
    """A logger for messages the runtime itself emits (warnings, lifecycle)."""

    def log(level: int, msg: str) -> None:
        emit(LogRecord(level, msg, None, None, None, None, 0, instance))

    return log
