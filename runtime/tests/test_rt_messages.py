"""Messages on their own: typed properties, buffers, clone, dests (§6)."""

from __future__ import annotations

import json

import pytest

from ten_runtime import (
    AudioFrame,
    AudioFrameDataFmt,
    Cmd,
    CmdResult,
    Data,
    Loc,
    PixelFmt,
    StartGraphCmd,
    StatusCode,
    StopGraphCmd,
    TriggerLifeCycleCmd,
    VideoFrame,
)


def test_json_numbers_keep_int_float_and_bool_apart() -> None:
    d = Data.create("d")
    assert (
        d.set_property_from_json(None, '{"i": 1, "f": 1.0, "neg": -3, "b": true, "n": null}')
        is None
    )
    assert d.get_property_int("i") == (1, None)
    assert d.get_property_int("neg") == (-3, None)
    assert d.get_property_float("f") == (1.0, None)
    value, err = d.get_property_float("i")  # JSON 1 is an integer, not a float
    assert value == 0.0 and err is not None and err.error_code() == 1
    value, err = d.get_property_int("f")
    assert value == 0 and err is not None and err.error_code() == 1
    value, err = d.get_property_bool("i")
    assert value is False and err is not None
    value, err = d.get_property_int("b")
    assert err is not None
    assert json.loads(d.get_property_to_json("n")[0]) is None


def test_string_getter_error_codes_and_missing_paths() -> None:
    d = Data.create("d")
    d.set_property_int("x", 5)
    value, err = d.get_property_string("x")
    assert value == "" and err is not None
    assert (err.error_code(), err.error_message()) == (3, "Value is not string.")
    value, err = d.get_property_string("missing.path")
    assert value == "" and err is not None
    assert err.error_code() == 100000
    assert err.error_message() == "Failed to find value: missing.path"
    text, err = d.get_property_to_json("nope")
    assert text == "" and err is not None and err.error_code() == 100000


def test_paths_create_intermediates_and_pad_arrays() -> None:
    d = Data.create("d")
    assert d.set_property_string("a.b[2].c", "deep") is None
    assert json.loads(d.get_property_to_json()[0]) == {"a": {"b": [None, None, {"c": "deep"}]}}
    assert d.get_property_string("a.b[2].c") == ("deep", None)
    assert d.get_property_to_json("a.b[5]")[1] is not None
    assert d.set_property_int("items[0]", 7) is None
    assert d.get_property_int("items[0]") == (7, None)


def test_get_property_to_json_is_pretty_printed_with_four_spaces() -> None:
    d = Data.create("d")
    d.set_property_from_json(None, json.dumps({"b": 1, "a": {"x": [1, 2]}}))
    text, err = d.get_property_to_json()
    assert err is None
    expected = "\n".join(
        [
            "{",
            '    "b": 1,',
            '    "a": {',
            '        "x": [',
            "            1,",
            "            2",
            "        ]",
            "    }",
            "}",
        ]
    )
    assert text == expected
    assert d.get_property_to_json("a.x[1]") == ("2", None)


def test_set_property_from_json_whole_replacement_and_invalid_json() -> None:
    d = Data.create("d")
    d.set_property_int("old", 1)
    assert d.set_property_from_json(None, '{"new": 2}') is None
    assert json.loads(d.get_property_to_json()[0]) == {"new": 2}
    assert d.set_property_from_json("", '{"newer": 3}') is None
    assert json.loads(d.get_property_to_json("")[0]) == {"newer": 3}
    err = d.set_property_from_json("k", "{not json")
    assert err is not None and err.error_code() == 2
    assert d.set_property_from_json("k", '"s"') is None
    assert d.get_property_string("k") == ("s", None)


def test_setters_validate_arguments() -> None:
    d = Data.create("d")
    with pytest.raises(ValueError):
        d.set_property_string(None, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Invalid buffer size\."):
        d.set_property_buf("b", b"")
    assert d.set_property_buf("b", b"\x01\x02") is None
    buf, err = d.get_property_buf("b")
    assert err is None and buf == bytearray(b"\x01\x02")
    assert d.set_property_bool("t", 2) is None
    assert d.get_property_bool("t") == (True, None)
    assert d.set_property_bool("f", -1) is None  # stored as value > 0
    assert d.get_property_bool("f") == (False, None)
    assert d.set_property_float("pi", 3) is None
    assert d.get_property_float("pi") == (3.0, None)


def test_data_buffer_lock_unlock_and_copy() -> None:
    d = Data.create("d")
    assert d.get_buf() == bytearray()  # never allocated: empty, not an error
    with pytest.raises(ValueError):
        d.alloc_buf(0)
    d.alloc_buf(4)
    view = d.lock_buf()
    view[:] = b"abcd"
    d.unlock_buf(view)
    copy = d.get_buf()
    assert copy == bytearray(b"abcd")
    copy[0] = 0
    assert d.get_buf() == bytearray(b"abcd")  # get_buf returns a copy
    with pytest.raises(SystemError):
        d.unlock_buf(memoryview(bytearray(4)))


def test_empty_frames_refuse_get_buf_and_report_bad_sizes() -> None:
    with pytest.raises(SystemError):
        AudioFrame.create("pcm_frame").get_buf()
    with pytest.raises(SystemError):
        VideoFrame.create("v").get_buf()
    with pytest.raises(ValueError, match=r"Invalid audio frame size\."):
        AudioFrame.create("a").alloc_buf(0)
    with pytest.raises(ValueError, match=r"Invalid video frame size\."):
        VideoFrame.create("v").alloc_buf(-1)
    with pytest.raises(RuntimeError):
        AudioFrame.create("a").unlock_buf(memoryview(bytearray(2)))


def test_audio_frame_fields_defaults_and_setters() -> None:
    f = AudioFrame.create("pcm_frame")
    assert (
        f.get_timestamp(),
        f.get_sample_rate(),
        f.get_bytes_per_sample(),
        f.get_samples_per_channel(),
        f.get_number_of_channels(),
        f.get_data_fmt(),
        f.get_line_size(),
        f.is_eof(),
    ) == (0, 0, 0, 0, 0, AudioFrameDataFmt.INTERLEAVE, 0, False)
    f.set_sample_rate(16000)
    f.set_bytes_per_sample(2)
    f.set_number_of_channels(1)
    f.set_samples_per_channel(160)
    f.set_data_fmt(AudioFrameDataFmt.NON_INTERLEAVE)
    f.set_timestamp(2**40)
    f.set_eof(True)
    assert f.get_sample_rate() == 16000 and f.get_data_fmt() == 2 and f.is_eof()
    assert f.get_timestamp() == 2**40
    with pytest.raises(ValueError):
        f.set_sample_rate(2**31)  # int32 field


def test_video_frame_defaults() -> None:
    v = VideoFrame.create("v")
    assert (v.get_width(), v.get_height(), v.get_pixel_fmt(), v.is_eof()) == (
        0,
        0,
        PixelFmt.RGBA,
        False,
    )
    v.set_width(640)
    v.set_pixel_fmt(PixelFmt.I420)
    assert (v.get_width(), v.get_pixel_fmt()) == (640, 6)


def test_clone_is_deep_and_gets_a_new_cmd_id() -> None:
    f = AudioFrame.create("pcm_frame")
    f.set_property_from_json("metadata", '{"session_id": "s1"}')
    f.alloc_buf(2)
    f.set_sample_rate(8000)
    g = f.clone()
    assert type(g) is AudioFrame
    g.set_property_string("metadata.session_id", "s2")
    view = g.lock_buf()
    view[:] = b"zz"
    g.unlock_buf(view)
    assert f.get_property_string("metadata.session_id") == ("s1", None)
    assert f.get_buf() == bytearray(2)
    assert g.get_sample_rate() == 8000

    cmd = Cmd.create("c")
    twin = cmd.clone()
    assert twin._core.cmd_id != cmd._core.cmd_id  # type: ignore[union-attr]
    assert twin._core.parent_cmd_id == cmd._core.cmd_id  # type: ignore[union-attr]
    assert type(StopGraphCmd.create().clone()) is StopGraphCmd


def test_cmd_result_defaults() -> None:
    cmd = Cmd.create("hello")
    result = CmdResult.create(StatusCode.ERROR, cmd)
    assert result.get_status_code() == StatusCode.ERROR
    assert result.is_final() is True
    assert result.is_completed() is False
    result.set_final(False)
    assert result.is_final() is False


def test_set_dests_validation_is_all_or_nothing() -> None:
    d = Data.create("d")
    assert d.set_dests([Loc("", "", "a")]) is None
    err = d.set_dests([Loc("", "", "b"), Loc(None, "", "c")])
    assert err is not None and (err.error_code(), err.error_message()) == (
        3,
        "App URI cannot be empty.",
    )
    err = d.set_dests([Loc("", None, "c")])
    assert err is not None
    assert err.error_message() == "Graph ID cannot be empty when extension name is provided."
    assert d._core.dests == [("", "", "a")]  # type: ignore[union-attr]
    assert d.set_dests([]) is None
    assert d.get_source() == Loc(None, None, None)


def test_system_cmd_setters() -> None:
    start = StartGraphCmd.create()
    assert start.set_predefined_graph_name("g") is True
    assert start.set_graph_from_json('{"nodes": []}') is True
    assert start.set_graph_from_json("{bad") is False
    assert start.set_sync_stop_before_deinit(True) is True
    assert StopGraphCmd.create().set_graph_id("abc") is True
    trigger = TriggerLifeCycleCmd.create()
    assert trigger.set_stage("start") is True
    assert trigger.set_stage("middle") is False
