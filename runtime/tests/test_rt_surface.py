"""The package surface: names, factories, enums, error conventions (§1, §2, §6.8)."""

from __future__ import annotations

import pytest

import ten_runtime
from ten_runtime import (
    AudioFrame,
    AudioFrameDataFmt,
    Cmd,
    CmdResult,
    Data,
    DefaultLogOption,
    LogLevel,
    PixelFmt,
    SendOptions,
    StartGraphCmd,
    StatusCode,
    StopGraphCmd,
    TenError,
    TenErrorCode,
    TriggerLifeCycleCmd,
    Value,
    ValueType,
    VideoFrame,
)

EXPECTED_ALL = (
    "Addon, _AddonManager, register_addon_as_extension, App, Extension, AsyncExtension, TenEnv, "
    "TenErrorCode, AsyncTenEnv, SendOptions, Cmd, StatusCode, StartGraphCmd, StopGraphCmd, "
    "TriggerLifeCycleCmd, VideoFrame, AudioFrame, Data, CmdResult, PixelFmt, AudioFrameDataFmt, "
    "LogLevel, LogOption, DefaultLogOption, ExtensionTester, TenEnvTester, TenError, Value, "
    "ValueType, AsyncExtensionTester, AsyncTenEnvTester, Loc"
).split(", ")


def test_package_exposes_exactly_the_contract_names() -> None:
    assert sorted(ten_runtime.__all__) == sorted(EXPECTED_ALL)
    for name in EXPECTED_ALL:
        assert hasattr(ten_runtime, name), name


def test_msg_base_class_lives_in_ten_runtime_msg_only() -> None:
    from ten_runtime.msg import Msg

    assert "Msg" not in ten_runtime.__all__
    for cls in (Cmd, CmdResult, Data, AudioFrame, VideoFrame, StopGraphCmd):
        assert issubclass(cls, Msg)


@pytest.mark.parametrize(
    "construct",
    [
        lambda: Cmd("x"),
        lambda: Data("x"),
        lambda: AudioFrame("x"),
        lambda: VideoFrame("x"),
        lambda: CmdResult(0, Cmd.create("x")),
        lambda: TenError(1, "x"),
        lambda: StartGraphCmd(),
        lambda: StopGraphCmd(),
        lambda: TriggerLifeCycleCmd(),
    ],
)
def test_direct_construction_raises_not_implemented(construct) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotImplementedError):
        construct()


def test_enum_values_match_the_native_ones() -> None:
    assert [(m.name, m.value) for m in TenErrorCode] == [
        ("ErrorCodeGeneric", 1),
        ("ErrorCodeInvalidJSON", 2),
        ("ErrorCodeInvalidArgument", 3),
        ("ErrorCodeInvalidType", 4),
        ("ErrorCodeInvalidGraph", 5),
        ("ErrorCodeTenIsClosed", 6),
        ("ErrorCodeMsgNotConnected", 7),
        ("ErrorCodeTimeout", 8),
    ]
    assert (StatusCode.OK, StatusCode.ERROR) == (0, 1)
    assert (AudioFrameDataFmt.INTERLEAVE, AudioFrameDataFmt.NON_INTERLEAVE) == (1, 2)
    assert [m.value for m in PixelFmt] == list(range(1, 9))
    assert PixelFmt.RGBA == 2 and PixelFmt.NV12 == 8
    assert [(m.name, m.value) for m in LogLevel] == [
        ("INVALID", 0),
        ("DEBUG", 1),
        ("INFO", 2),
        ("WARN", 3),
        ("ERROR", 4),
    ]
    assert ValueType.NULL == 1 and ValueType.OBJECT == 8 and ValueType.JSON_STRING == 9


def test_ten_error_create_and_accessors() -> None:
    err = TenError.create(TenErrorCode.ErrorCodeGeneric, "boom")
    assert err.error_code() == 1
    assert err.error_message() == "boom"
    assert str(err) == "error_code: 1, error_message: boom"
    assert TenError.create(TenErrorCode.ErrorCodeTimeout).error_message() == ""
    kw = TenError.create(error_code=TenErrorCode.ErrorCodeInvalidJSON, error_message="bad")
    assert (kw.error_code(), kw.error_message()) == (2, "bad")


def test_ten_error_create_needs_an_enum_member_not_an_int() -> None:
    with pytest.raises(AttributeError):
        TenError.create(1, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TenErrorCode(100000)


def test_value_factories_and_tuple_getters() -> None:
    assert Value.from_int(3).get_int() == (3, None)
    assert Value.from_string("s").get_type() == ValueType.STRING
    value, err = Value.from_bool(True).get_int()
    assert value == 0 and err is not None and err.error_code() == 4
    assert "got BOOL" in err.error_message()
    nested = Value.from_python({"a": [1, 2.5, "x", None], "b": object()})
    obj, err = nested.get_object()
    assert err is None
    items, _ = obj["a"].get_array()
    assert [i.get_type() for i in items] == [
        ValueType.INT,
        ValueType.FLOAT,
        ValueType.STRING,
        ValueType.NULL,
    ]
    assert obj["b"].get_type() == ValueType.STRING  # unknown types are stringified


def test_option_defaults() -> None:
    assert SendOptions().wait_for_result is False
    assert SendOptions(wait_for_result=True).wait_for_result is True
    assert (DefaultLogOption.skip, DefaultLogOption.sync) == (2, False)


def test_standin_marker() -> None:
    from ten_runtime.standin import IS_STANDIN

    assert IS_STANDIN is True
