"""Logging methods shared by every ten_env flavour (§5.3, §8)."""

from __future__ import annotations

from typing import Any

from ._core import logsink
from .error import _TenError
from .log_level import LogLevel
from .log_option import DefaultLogOption, LogOption
from .value import Value


class TenEnvBase:
    _internal: Any

    def __init__(self, internal_obj: Any) -> None:
        self._internal = internal_obj

    def log_debug(
        self,
        msg: str,
        category: str | None = None,
        fields: Value | dict[str, Any] | None = None,
        option: LogOption = DefaultLogOption,
    ) -> _TenError | None:
        return self._log_internal(LogLevel.DEBUG, msg, category, fields, option)

    def log_info(
        self,
        msg: str,
        category: str | None = None,
        fields: Value | dict[str, Any] | None = None,
        option: LogOption = DefaultLogOption,
    ) -> _TenError | None:
        return self._log_internal(LogLevel.INFO, msg, category, fields, option)

    def log_warn(
        self,
        msg: str,
        category: str | None = None,
        fields: Value | dict[str, Any] | None = None,
        option: LogOption = DefaultLogOption,
    ) -> _TenError | None:
        return self._log_internal(LogLevel.WARN, msg, category, fields, option)

    def log_error(
        self,
        msg: str,
        category: str | None = None,
        fields: Value | dict[str, Any] | None = None,
        option: LogOption = DefaultLogOption,
    ) -> _TenError | None:
        return self._log_internal(LogLevel.ERROR, msg, category, fields, option)

    def log(
        self,
        level: LogLevel,
        msg: str,
        category: str | None = None,
        fields: Value | dict[str, Any] | None = None,
        option: LogOption = DefaultLogOption,
    ) -> _TenError | None:
        return self._log_internal(level, msg, category, fields, option)

    def _log_internal(
        self,
        level: LogLevel,
        msg: str,
        category: str | None,
        fields: Value | dict[str, Any] | None,
        option: LogOption,
    ) -> _TenError | None:
        # Frame 0 is this method; ``option.skip`` (2) walks up past the public
        # log_* method to the user's code, like the native binding.
        func_name, file_name, line_no = logsink.caller_info(option.skip)
        return self._internal.log(level, msg, category, fields, func_name, file_name, line_no)
