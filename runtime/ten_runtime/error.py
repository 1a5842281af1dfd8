"""Errors: ``TenErrorCode``, ``TenError`` and the runtime's own error objects.

The native package has a C base class (``_TenError``) and a thin Python
subclass (``TenError``).  Errors *produced by the runtime* are instances of the
base class only, so ``isinstance(err, TenError)`` is False for them (contract
quirk Q1).  The stand-in keeps that split: runtime code builds errors with
:func:`make_error`, which returns a ``_TenError``; users build them with
``TenError.create``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

# Error code used for "property path does not exist".  It is deliberately not a
# member of TenErrorCode (``TenErrorCode(100000)`` raises ValueError natively).
VALUE_NOT_FOUND = 100000

T = TypeVar("T", bound="TenError")


class TenErrorCode(IntEnum):
    ErrorCodeGeneric = 1
    ErrorCodeInvalidJSON = 2
    ErrorCodeInvalidArgument = 3
    ErrorCodeInvalidType = 4
    ErrorCodeInvalidGraph = 5
    ErrorCodeTenIsClosed = 6
    ErrorCodeMsgNotConnected = 7
    ErrorCodeTimeout = 8


class _TenError:
    """Stand-in for the native error base class."""

    __slots__ = ("_ten_code", "_ten_message")

    def __new__(cls, error_code: int = 0, error_message: str | None = None) -> _TenError:
        obj = object.__new__(cls)
        obj._ten_code = int(error_code)
        obj._ten_message = "" if error_message is None else str(error_message)
        return obj

    def error_code(self) -> int:
        return self._ten_code

    def error_message(self) -> str:
        return self._ten_message

    def __str__(self) -> str:
        return f"error_code: {self._ten_code}, error_message: {self._ten_message}"

    def __repr__(self) -> str:
        return f"<TenError {self}>"


class TenError(_TenError):
    __slots__ = ()

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("Use TenError.create instead.")

    @classmethod
    def create(cls: type[T], error_code: TenErrorCode, error_message: str | None = None) -> T:
        # Reads ``.value`` like the native wrapper: a bare int fails with
        # AttributeError, exactly as on the native runtime.
        return _TenError.__new__(cls, error_code.value, error_message)  # type: ignore[return-value]


def make_error(code: int, message: str | None = None) -> _TenError:
    """Build a runtime-produced error (an instance of the native base class)."""
    return _TenError.__new__(_TenError, int(code), message)


def copy_error(err: _TenError) -> _TenError:
    """A copy with the same code and message (what ``tester.run()`` returns)."""
    return make_error(err.error_code(), err.error_message())


def not_found(path: str | None) -> _TenError:
    return make_error(VALUE_NOT_FOUND, f"Failed to find value: {path or ''}")


def closed_error() -> _TenError:
    return make_error(TenErrorCode.ErrorCodeTenIsClosed, "The ten_env is closed.")
