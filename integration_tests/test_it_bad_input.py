"""Bad input from every side: properties, messages from the graph, server frames.

- Property values of the wrong *type* are caught by the runtime's schema check
  against manifest.json at configure time. That is fatal for the process
  (contract 2.4 and 10.4), before the extension can say anything, so each
  such case runs in a subprocess: it must exit non-zero naming the field.
- Wrong *values* pass the schema and reach the extension: a FATAL `error`
  naming the field, never the key; the extension stays up, answers a
  finalize and a cmd, and never connects.
- Malformed messages from the graph are warned about and handled: no crash,
  no hang, no audio lost. Those that break the manifest's message schema are
  warned about and dropped by the runtime, before the extension sees them.
- Random server frames: the sans-I/O parser (protocol.parse_event) and the
  pure code behind it, driven by hypothesis; plus end-to-end sessions where
  the server sends junk frames at random moments.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from asr_harness import make_frame
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from it_support import (
    FATAL,
    FINALIZE_BOUND_S,
    FRAME_BYTES,
    SESSION_ID,
    ItTester,
    assert_exactly_once,
    assert_word_times,
    fast_props,
    final_indices,
    finals,
    indices_of,
    marker_server,
    run_it,
    speech_indices_of,
    turn_audio,
    wait_all_ended,
)

from stt_server import Fault, Malformed
from stt_server.faults import MALFORMED_KINDS
from xai_asr_python.protocol import (
    ConnectionTracker,
    IgnoredFrame,
    TranscriptCreated,
    TranscriptDone,
    TranscriptPartial,
    VendorError,
    parse_event,
)
from xai_asr_python.timeline import TICKS_PER_MS, ConnectionTimeline
from xai_asr_python.utterances import ResultAssembler

HERE = Path(__file__).resolve().parent
KEY = "sk-bad-input-0123456789"


def warnings_in(output: str, *fragments: str) -> list[str]:
    """The extension's WARN log lines (console handler) that mention every fragment."""
    lines = []
    for line in output.splitlines():
        if "[xai_asr_python]" not in line or not re.search(r"\bW\b|WARN", line):
            continue
        if all(f.lower() in line.lower() for f in fragments):
            lines.append(line)
    return lines


def log_output(capfd: pytest.CaptureFixture[str]) -> str:
    """The log lines as a user reads them. The stand-in writes them where the app's
    log config says (stdout, plain, for the fake app); a native build without TEN's
    Rust log system ignores that config and writes colored lines to stderr."""
    out, err = capfd.readouterr()
    return re.sub(r"\x1b\[[0-9;]*m", "", out + err)


# ---------------------------------------------------------------------- wrong types


def run_probe(properties: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HERE / "it_configure_probe.py"), json.dumps(properties)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def base_props(**overrides: Any) -> dict[str, Any]:
    # Nothing listens on port 9: the probe stops before any connection matters.
    props: dict[str, Any] = {"params": {"api_key": KEY, "base_url": "ws://127.0.0.1:9/v1/stt"}}
    params = overrides.pop("params", {})
    props.update(overrides)
    props["params"].update(params)
    return props


def test_the_configure_probe_runs_a_good_configuration() -> None:
    """The control for the cases below: a valid configuration runs to the end."""
    done = run_probe(base_props())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "RUN RETURNED None" in done.stdout


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"finalize_timeout_ms": "2000"}, "finalize_timeout_ms"),
        ({"finalize_timeout_ms": 1.5}, "finalize_timeout_ms"),
        ({"connect_timeout_ms": 2**40}, "connect_timeout_ms"),
        ({"dump": "yes"}, "dump"),
        ({"dump_path": 7}, "dump_path"),
        ({"params": {"sample_rate": "16000"}}, "sample_rate"),
        ({"params": {"interim_results": 1}}, "interim_results"),
        ({"params": {"api_key": 12345}}, "api_key"),
    ],
    ids=[
        "int-as-string",
        "int-as-float",
        "int-out-of-int32",
        "bool-as-string",
        "string-as-int",
        "param-int-as-string",
        "param-bool-as-int",
        "key-as-int",
    ],
)
def test_wrong_types_are_fatal_at_configure(overrides: dict[str, Any], field: str) -> None:
    done = run_probe(base_props(**overrides))
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"the run went on with a wrongly typed {field}: {output[-1500:]}"
    assert "RUN RETURNED" not in done.stdout
    assert field in output, output[-1500:]
    assert KEY not in output


def test_params_that_is_not_an_object_is_fatal_at_configure() -> None:
    done = run_probe({"params": "api_key=" + KEY})
    assert done.returncode != 0 and "params" in done.stdout + done.stderr


# ---------------------------------------------------------------------- wrong values

VALUE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("finalize-timeout-too-small", {"finalize_timeout_ms": 50}, "finalize_timeout_ms"),
    ("negative-timeout", {"connect_timeout_ms": -1}, "connect_timeout_ms"),
    ("endpointing-out-of-range", {"params": {"endpointing": 9000}}, "params.endpointing"),
    ("unknown-encoding", {"params": {"encoding": "opus"}}, "params.encoding"),
    ("unsupported-sample-rate", {"params": {"sample_rate": 12345}}, "params.sample_rate"),
    ("empty-key", {"params": {"api_key": ""}}, "params.api_key"),
    ("blank-key", {"params": {"api_key": "   "}}, "params.api_key"),
    ("http-url", {"params": {"base_url": "http://127.0.0.1:9/v1/stt"}}, "params.base_url"),
    ("url-without-host", {"params": {"base_url": "wss:///v1/stt"}}, "params.base_url"),
    # The key pasted into the URL field by mistake: the error must not echo it.
    ("key-in-url-field", {"params": {"base_url": KEY}}, "params.base_url"),
    (
        "multichannel-with-one-channel",
        {"params": {"multichannel": True, "channels": 1}},
        "params.channels",
    ),
    ("zero-channels", {"params": {"channels": 0}}, "params.channels"),
    (
        "max-delay-below-base",
        {"reconnect_base_delay_ms": 100, "reconnect_max_delay_ms": 10},
        "reconnect_max_delay_ms",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [(o, f) for _, o, f in VALUE_CASES],
    ids=[name for name, _, _ in VALUE_CASES],
)
def test_wrong_values_give_one_fatal_error_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with marker_server() as srv:
        props = fast_props(srv.url, params={"api_key": KEY})
        params = overrides.get("params", {})
        props.update({k: v for k, v in overrides.items() if k != "params"})
        props["params"].update(params)

        async def script(t: ItTester) -> None:
            error = await t.wait_for("error", timeout=5)
            assert error["code"] == FATAL and error["module"] == "asr", error
            assert error["vendor_info"]["vendor"] == "xai", error
            assert field in error["message"], error
            # Still up: audio is ignored, a finalize is answered, a cmd gets its result.
            await t.send_audio(turn_audio(0))
            end = await t.finalize("after-bad-config", bound_s=1.0)
            assert end["finalize_id"] == "after-bad-config"
            status, _ = await t.send_cmd("anything")
            assert status == 0

        tester = run_it(props, script)
        records = wait_all_ended(srv)
    assert records == [], "the extension connected with a configuration it rejected"
    assert len(tester.errors()) == 1
    everything = json.dumps([m.payload for m in tester.received])
    assert KEY not in everything, "the API key appears in a message to the graph"
    assert tester.messages("asr_result") == []


def test_missing_key_from_an_unset_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """property.json's `${env:XAI_API_KEY|}` with the variable unset: a FATAL
    error naming params.api_key, and no connection attempt."""
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    with marker_server() as srv:
        props = fast_props(srv.url)
        del props["params"]["api_key"]

        async def script(t: ItTester) -> None:
            error = await t.wait_for("error", timeout=5)
            assert error["code"] == FATAL and "params.api_key" in error["message"], error
            await t.finalize("f", bound_s=1.0)

        run_it(props, script)
        assert wait_all_ended(srv) == []


# ---------------------------------------------------------------------- graph messages


def odd_chunks(data: bytes, seed: int) -> list[bytes]:
    """`data` cut at odd offsets (sizes 1 to 999, all odd but the last)."""
    rng = random.Random(seed)
    chunks, pos = [], 0
    while pos < len(data):
        size = rng.choice([1, 3, 319, 321, 641, 999, rng.randrange(1, 1000, 2)])
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


def test_odd_sized_frames_lose_no_audio(capfd: pytest.CaptureFixture[str]) -> None:
    turns = [turn_audio(0), turn_audio(1000), turn_audio(2000)]
    with marker_server() as srv:

        async def script(t: ItTester) -> None:
            for i, audio in enumerate(turns):
                for chunk in odd_chunks(audio, seed=i):
                    await t.send_audio(chunk, chunk_bytes=len(chunk))
                await t.finalize(f"f{i}", bound_s=FINALIZE_BOUND_S)

        tester = run_it(fast_props(srv.url), script)
        records = wait_all_ended(srv)
    assert tester.errors() == []
    assert_exactly_once([i for a in turns for i in indices_of(a)], records)
    assert b"".join(bytes(r.audio) for r in records) == b"".join(turns)
    assert final_indices(finals(tester)) == [i for a in turns for i in speech_indices_of(a)]
    assert_word_times(finals(tester), bytes(tester.sent_audio))
    assert warnings_in(log_output(capfd), "pcm_frame"), "odd-sized frames were not warned about"


def test_garbage_from_the_graph_is_warned_about_and_loses_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Interleaved with a normal stream: a finalize without an id, metadata that
    is not an object (on a frame and on a finalize), empty frames, unknown data
    names and unknown cmds. Nothing crashes, nothing hangs, no audio is lost.

    Metadata that is not an object breaks the manifest's audio_frame_in/data_in
    schema: the runtime warns and drops that frame and that finalize before the
    extension sees them (native TEN does, and so does the stand-in). So their audio
    never reaches the server and that finalize is never answered. Everything else
    reaches the extension, which warns about it and loses nothing."""
    turns = [turn_audio(0), turn_audio(1000)]
    rejected_audio = turn_audio(5000)[:3200]  # marker frames of no turn: never to arrive
    with marker_server() as srv:

        async def send_empty_frame(t: ItTester) -> None:
            assert t.env is not None
            err = await t.env.send_audio_frame(make_frame(b"", {"session_id": SESSION_ID}, 16000))
            assert err is None

        async def script(t: ItTester) -> None:
            await send_empty_frame(t)  # a frame whose buffer was never allocated
            await t.send_audio(turns[0][:6400])
            await t.send_audio(rejected_audio, metadata="not an object")  # type: ignore[arg-type]
            await t.send_data("mystery_data", {"x": 1})
            await send_empty_frame(t)
            await t.send_audio(turns[0][6400:])
            status, _ = await t.send_cmd("mystery_cmd", {"y": 2})
            assert status == 0, "an unknown cmd must get an OK result"
            start = t.mark()
            await t.send_finalize(None, {"session_id": SESSION_ID})  # no finalize_id
            await t.wait_for("asr_finalize_end", timeout=FINALIZE_BOUND_S, start=start)
            await t.send_audio(turns[1])
            await t.send_data("asr_finalize", {"finalize_id": "f1", "metadata": [1, 2]})
            # Finalizes are answered in the order they arrive: had f1 arrived, its
            # end would come before f2's.
            await t.finalize("f2", bound_s=FINALIZE_BOUND_S)

        tester = run_it(fast_props(srv.url), script)
        records = wait_all_ended(srv)
    output = log_output(capfd)
    assert tester.errors() == []
    ends = [end["finalize_id"] for end in tester.messages("asr_finalize_end")]
    assert ends == ["", "f2"], "the rejected finalize f1 was answered, or another was not"
    # Every frame of the turns exactly once; none of the rejected frame's.
    assert_exactly_once([i for a in turns for i in indices_of(a)], records)
    assert final_indices(finals(tester)) == [i for a in turns for i in speech_indices_of(a)]
    # The last good metadata is what results carry.
    assert all(r["metadata"]["session_id"] == SESSION_ID for r in tester.messages("asr_result"))
    assert warnings_in(output, "finalize_id"), "a finalize without an id was not warned about"
    for rejected in ("audio_frame::pcm_frame", "data::asr_finalize"):
        assert warnings_in(output, rejected, "invalid schema", "metadata"), (
            f"the runtime dropped {rejected} without a warning"
        )
    assert warnings_in(output, "empty"), "an empty frame was not warned about"
    assert warnings_in(output, "mystery_data"), "an unknown data name was not warned about"


def test_unknown_cmd_is_answered_ok_and_warned_about(capfd: pytest.CaptureFixture[str]) -> None:
    with marker_server() as srv:

        async def script(t: ItTester) -> None:
            status, _ = await t.send_cmd("mystery_cmd", {"y": 2})
            assert status == 0

        run_it(fast_props(srv.url), script)
        wait_all_ended(srv)
    assert warnings_in(log_output(capfd), "mystery_cmd"), "an unknown cmd was not warned about"


def test_update_configs_with_bad_params_is_refused_without_the_key() -> None:
    with marker_server() as srv:

        async def script(t: ItTester) -> None:
            status, detail = await t.send_cmd(
                "update_configs", {"params": {"sample_rate": 12345, "base_url": KEY}}
            )
            assert status == 1 and "params." in detail, detail
            assert KEY not in detail
            # The session goes on with the old parameters.
            await t.send_audio(turn_audio(0))
            await t.finalize("f", bound_s=FINALIZE_BOUND_S)

        tester = run_it(fast_props(srv.url, params={"api_key": KEY}), script)
        records = wait_all_ended(srv)
    assert final_indices(finals(tester)) == speech_indices_of(turn_audio(0))
    assert all(r.query["sample_rate"] == "16000" for r in records)


# ---------------------------------------------------------------------- server frames

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NUMBERS = (
    st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70) | JSON_VALUES
)
WORDS = st.lists(
    st.fixed_dictionaries(
        {}, optional={"text": st.text(max_size=6) | JSON_VALUES, "start": NUMBERS, "end": NUMBERS}
    )
    | JSON_VALUES,
    max_size=6,
)
EVENTS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["transcript.created", "transcript.partial", "transcript.done", "error", "other"]
        )
        | JSON_VALUES
    },
    optional={
        "text": st.text(max_size=30) | JSON_VALUES,
        "words": WORDS,
        "is_final": st.booleans() | JSON_VALUES,
        "speech_final": st.booleans() | JSON_VALUES,
        "start": NUMBERS,
        "duration": NUMBERS,
        "channel_index": st.integers(-3, 10) | JSON_VALUES,
        "message": JSON_VALUES,
        "code": JSON_VALUES,
    },
)
# Partials that get through the parser's type checks, with times anywhere in
# the range JSON allows: what a confused server could send.
EXTREME = st.sampled_from([0, 0.0, -0.0, 1e-320, 0.5, 3.0, 1e15, 1e300, 1.7e308]) | st.floats(
    min_value=0, allow_nan=False, allow_infinity=False
)
PARTIALS = st.fixed_dictionaries(
    {
        "type": st.just("transcript.partial"),
        "text": st.text(alphabet="ab ", min_size=1, max_size=8),
        "is_final": st.booleans(),
        "speech_final": st.booleans(),
        "start": EXTREME,
        "duration": EXTREME,
        "words": st.lists(
            st.fixed_dictionaries(
                {"text": st.sampled_from(["a", "b"]), "start": EXTREME, "end": EXTREME}
            ),
            max_size=3,
        ),
    }
)
DONES = st.fixed_dictionaries(
    {
        "type": st.just("transcript.done"),
        "text": st.text(alphabet="ab ", max_size=8),
        "duration": EXTREME,
    }
)
FRAMES = st.one_of(
    PARTIALS.map(json.dumps),
    DONES.map(json.dumps),
    EVENTS.map(json.dumps),
    JSON_VALUES.map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=60),
)
EVENT_TYPES = (TranscriptCreated, TranscriptPartial, TranscriptDone, VendorError, IgnoredFrame)


def _finite_nonneg(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x >= 0


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FRAMES)
def test_parser_never_raises_and_yields_sane_events(frame: str | bytes) -> None:
    event = parse_event(frame)
    assert isinstance(event, EVENT_TYPES)
    if isinstance(event, TranscriptPartial):
        assert isinstance(event.text, str)
        assert _finite_nonneg(event.start_s) and _finite_nonneg(event.duration_s), event
        for w in event.words:
            assert isinstance(w.text, str) and w.text
            assert _finite_nonneg(w.start_s) and _finite_nonneg(w.end_s) and w.end_s >= w.start_s
        assert event.channel is None or (isinstance(event.channel, int) and event.channel >= 0)
    elif isinstance(event, TranscriptDone):
        assert isinstance(event.text, str)
        assert event.duration_s is None or _finite_nonneg(event.duration_s)
    elif isinstance(event, VendorError):
        assert isinstance(event.message, str)
        assert event.code is None or isinstance(event.code, str)
    elif isinstance(event, IgnoredFrame):
        assert isinstance(event.reason, str) and isinstance(event.preview, str)
        assert len(event.preview) <= 200


HUGE_PARTIAL = json.dumps(
    {
        "type": "transcript.partial",
        "text": "a",
        "is_final": True,
        "start": 1e308,
        "duration": 1e308,
        "words": [{"text": "a", "start": 1e308, "end": 1e308}],
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAMES, max_size=12))
@example([HUGE_PARTIAL])
def test_random_frames_through_the_pure_pipeline(frames: list[str | bytes]) -> None:
    """What a session does with each frame, without I/O: parse, track, assemble,
    map onto the user's timeline. Never raises; every span is on the audio sent."""
    tracker = ConnectionTracker()
    assembler = ResultAssembler()
    timeline = ConnectionTimeline(16000, 500 * TICKS_PER_MS)
    # 2 s sent, from user time 500 ms
    timeline.record_sent(500 * TICKS_PER_MS, 2000 * TICKS_PER_MS)
    results = []
    for frame in frames:
        event = parse_event(frame)
        tracker.receive(event)
        if isinstance(event, TranscriptPartial):
            results.append(assembler.on_partial(event))
        elif isinstance(event, TranscriptDone):
            results.append(assembler.on_done(event))
    results += assembler.salvage()
    for result in results:
        if result is None:
            continue
        assert math.isfinite(result.start_s) and math.isfinite(result.end_s), result
        spans = [timeline.span(result.start_s, result.end_s)]
        spans += [timeline.span(w.start_s, w.end_s) for w in result.words]
        for start_ms, duration_ms in spans:
            assert isinstance(start_ms, int) and isinstance(duration_ms, int)
            assert 500 <= start_ms and start_ms + duration_ms <= 2500 and duration_ms >= 0
    tracker.closed(None, None)


@pytest.mark.parametrize("seed", range(5))
def test_random_junk_frames_in_live_sessions(seed: int, caplog: pytest.LogCaptureFixture) -> None:
    """The server sends junk frames (random kinds, order and moment) on random
    connections; every session still transcribes every frame exactly once,
    with no error, and the junk is warned about."""
    rng = random.Random(seed)
    turns = [turn_audio(i * 1000, speech=rng.randrange(20, 80)) for i in range(3)]
    faults: dict[int, Fault] = {}
    for number in rng.sample(range(1, 5), rng.randrange(1, 4)):
        kinds = tuple(rng.choice(MALFORMED_KINDS) for _ in range(rng.randrange(1, 7)))
        when = rng.choice(["created", "bytes", "done"])
        trigger: dict[str, Any] = {
            "created": {},
            "bytes": {"after_bytes": rng.randrange(1, 20) * FRAME_BYTES},
            "done": {"on_audio_done": True},
        }[when]
        faults[number] = Fault(malformed=Malformed(kinds=kinds, **trigger))
    caplog.set_level(logging.WARNING)
    with marker_server() as srv:
        for number, fault in faults.items():
            srv.set_fault(number, fault)

        async def script(t: ItTester) -> None:
            for i, audio in enumerate(turns):
                await t.send_audio(audio, chunk_bytes=rng.choice([320, 640, 3200]))
                await t.finalize(f"f{i}", bound_s=FINALIZE_BOUND_S)

        tester = run_it(fast_props(srv.url), script)
        records = wait_all_ended(srv)
    assert tester.errors() == [], faults
    assert_exactly_once([i for a in turns for i in indices_of(a)], records)
    assert final_indices(finals(tester)) == [i for a in turns for i in speech_indices_of(a)]
    assert_word_times(finals(tester), bytes(tester.sent_audio))
    junk_read = sum(
        1
        for r in records
        for e in r.events_sent
        if e.get("_malformed") in ("not_json", "unknown_type", "binary")
    )
    warned = [
        rec
        for rec in caplog.records
        if rec.levelno == logging.WARNING and "ignored a frame" in rec.getMessage()
    ]
    if junk_read:
        assert warned, "junk frames from the server were not warned about"
    assert len(warned) <= junk_read
