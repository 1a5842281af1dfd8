"""The extension on TEN's ASR interface, under the TEN tester, against the local server.

Each test is one promise of shared/docs/ten-asr-interface.md or of issue #5,
checked from the graph's side (the messages the extension sends) and the
wire's side (what the server received).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from asr_harness import AsrTester, ServerThread, load_config, run_asr_test

from stt_server import Close, Fault, marker

SECRET = "sk-test-DO-NOT-LEAK-4f1c9a77"


def speech_turn(start_index: int, speech_frames: int = 40, silence_frames: int = 40) -> bytes:
    """Marker audio: a little silence, speech, then enough silence to endpoint."""
    return marker.generate(
        [(False, 5), (True, speech_frames), (False, silence_frames)], start_index=start_index
    )


def frames_in(pcm: bytes) -> int:
    return len(pcm) // 320


@pytest.fixture
def srv():
    with ServerThread(recognizer="marker") as server:
        yield server


def all_indices(srv: ServerThread) -> list[int]:
    return [i for rec in srv.connections for i in rec.marker_indices]


# --------------------------------------------------------------------------- lifecycle


def test_on_start_returns_at_once_and_stop_is_prompt_while_the_vendor_hangs(srv) -> None:
    # The server delays every handshake far beyond the test: if on_start waited
    # for the connection, on_stop (and so the end of run()) would wait too.
    srv.set_default_fault(Fault(handshake_delay_ms=20_000))
    props = load_config("basic", params={"base_url": srv.url})
    stop_asked: list[float] = []

    async def script(t: AsrTester) -> None:
        await srv.wait_for_connection(1)
        await t.send_audio(speech_turn(0))
        stop_asked.append(time.monotonic())

    run_asr_test(props, script)
    assert time.monotonic() - stop_asked[0] < 3.0


def test_auto_connect_false_waits_for_trigger_connect_and_keeps_earlier_audio(srv) -> None:
    props = load_config("basic", auto_connect=False, params={"base_url": srv.url})
    first = speech_turn(0)

    async def script(t: AsrTester) -> None:
        await t.send_audio(first)
        # Nothing may connect before the trigger. Round-trip a cmd to be sure
        # the frames were handled, then check the server saw no one.
        assert (await t.send_cmd("ping"))[0] == 0
        assert srv.connections == []
        await t.send_data("trigger_connect")
        await t.send_finalize("f1")
        await t.wait_for("asr_finalize_end", timeout=5)

    run_asr_test(props, script)
    # The audio sent before the trigger was buffered, not lost.
    assert all_indices(srv)[: frames_in(first)] == list(range(frames_in(first)))


# --------------------------------------------------------------------------- audio


def test_odd_sized_and_empty_frames_lose_and_misalign_nothing(srv) -> None:
    props = load_config("basic", params={"base_url": srv.url})
    pcm = speech_turn(0, speech_frames=60)

    async def script(t: AsrTester) -> None:
        await t.send_audio(b"")  # an empty frame: warned about, ignored
        await t.send_audio(pcm, chunk_bytes=333)  # odd sizes split samples
        await t.send_finalize("f1")
        await t.wait_for("asr_finalize_end", timeout=5)

    run_asr_test(props, script)
    (rec,) = srv.connections[:1]
    assert rec.marker_errors == 0
    assert rec.marker_indices == list(range(frames_in(pcm)))


def test_metadata_of_the_latest_frame_is_echoed_on_results(srv) -> None:
    props = load_config("basic", params={"base_url": srv.url})

    async def script(t: AsrTester) -> None:
        await t.send_audio(speech_turn(0), metadata={"session_id": "s-42", "user": "ann"})
        await t.send_finalize("f1", metadata={"session_id": "s-42"})
        result = await t.wait_for("asr_result", lambda r: r["final"], timeout=5)
        assert result["metadata"]["session_id"] == "s-42"
        assert result["metadata"]["asr_info"]["vendor"] == "xai"
        end = await t.wait_for("asr_finalize_end", timeout=5)
        assert end["metadata"]["session_id"] == "s-42"

    run_asr_test(props, script)


def test_metadata_that_changes_between_turns_is_echoed_from_the_change_on(srv) -> None:
    # Frames' metadata is read when an output needs it: a change must still show on
    # every output after it, and never on one before it.
    props = load_config("basic", params={"base_url": srv.url})

    async def script(t: AsrTester) -> None:
        for n, start in enumerate((0, 200)):
            await t.send_audio(speech_turn(start), metadata={"session_id": f"s-{n}"})
            await t.send_finalize(f"f{n}", metadata={"session_id": f"s-{n}"})
            await t.wait_for("asr_finalize_end", lambda e, n=n: e["finalize_id"] == f"f{n}")

    tester = run_asr_test(props, script)
    turn, results = 0, 0
    for m in tester.received:
        if m.name == "asr_result":
            assert m.payload["metadata"]["session_id"] == f"s-{turn}", m.payload
            results += 1
        if m.name == "asr_finalize_end":
            turn += 1
    assert turn == 2 and results >= 2


# --------------------------------------------------------------------------- finalize


def test_finalize_keeps_its_place_among_the_frames(srv) -> None:
    # Frames sent before the finalize belong to the turn it ends (connection 1),
    # frames sent right after it to the next turn (connection 2), even though
    # all of them are queued in the extension when the finalize arrives.
    props = load_config("basic", finalize_mode="audio_done", params={"base_url": srv.url})
    turn1 = speech_turn(0)
    turn2 = speech_turn(frames_in(turn1))

    async def script(t: AsrTester) -> None:
        await t.send_audio(turn1)
        await t.send_finalize("f1")
        await t.send_audio(turn2)
        await t.send_finalize("f2")
        await t.wait_for("asr_finalize_end", lambda e: e["finalize_id"] == "f2", timeout=8)

    run_asr_test(props, script)
    first, second = srv.connections[0], srv.connections[1]
    assert first.marker_indices == list(range(frames_in(turn1)))
    assert second.marker_indices[: frames_in(turn2)] == list(
        range(frames_in(turn1), frames_in(turn1) + frames_in(turn2))
    )
    assert first.audio_done_received


def test_each_finalize_is_answered_once_with_its_id_after_its_final(srv) -> None:
    props = load_config("basic", params={"base_url": srv.url})

    async def script(t: AsrTester) -> None:
        start = 0
        for n in range(3):
            pcm = speech_turn(start)
            start += frames_in(pcm)
            mark = t.mark()
            await t.send_audio(pcm)
            await t.send_finalize(f"f{n}")
            await t.wait_for("asr_finalize_end", lambda e, n=n: e["finalize_id"] == f"f{n}")
            names = [m.name for m in t.received[mark:]]
            final_at = next(
                i
                for i, m in enumerate(t.received[mark:])
                if m.name == "asr_result" and m.payload["final"] and m.payload["text"]
            )
            assert final_at < names.index("asr_finalize_end"), names
        ends = [e["finalize_id"] for e in t.messages("asr_finalize_end")]
        assert ends == ["f0", "f1", "f2"]

    run_asr_test(props, script)


def test_finalize_without_id_is_still_answered(srv) -> None:
    props = load_config("basic", params={"base_url": srv.url})

    async def script(t: AsrTester) -> None:
        await t.send_audio(speech_turn(0))
        await t.send_finalize(None)
        end = await t.wait_for("asr_finalize_end", timeout=5)
        assert end["finalize_id"] == ""

    run_asr_test(props, script)


def test_finalize_ends_on_time_when_the_vendor_never_answers(srv) -> None:
    srv.set_fault(1, Fault(ignore_audio_done=True))
    props = load_config("basic", finalize_timeout_ms=800, params={"base_url": srv.url})

    async def script(t: AsrTester) -> None:
        await t.send_audio(speech_turn(0))
        sent = time.monotonic()
        await t.send_finalize("f1")
        await t.wait_for("asr_finalize_end", timeout=5)
        assert time.monotonic() - sent < 0.8 + 0.6
        # And the session is not deaf afterwards: the next turn is transcribed.
        await t.send_audio(speech_turn(100))
        await t.send_finalize("f2")
        await t.wait_for("asr_result", lambda r: r["final"] and "140" in r["text"], timeout=5)

    run_asr_test(props, script)


# --------------------------------------------------------------------------- results


def test_result_fields_ids_and_language(srv) -> None:
    props = load_config("basic", params={"base_url": srv.url})

    async def script(t: AsrTester) -> None:
        for n, start in enumerate((0, 200)):
            # The speech, then an interim awaited before the turn ends: an interim still
            # queued when its final comes is superseded (on a loaded machine, all might be).
            mark = t.mark()
            await t.send_audio(marker.generate([(False, 5), (True, 120)], start_index=start))
            await t.wait_for("asr_result", lambda r: not r["final"], start=mark)
            await t.send_audio(marker.generate([(False, 40)], start_index=start + 125))
            await t.send_finalize(f"f{n}")
            await t.wait_for("asr_finalize_end", lambda e, n=n: e["finalize_id"] == f"f{n}")

    tester = run_asr_test(props, script)
    results = tester.messages("asr_result")
    assert [r["final"] for r in results].count(False) >= 2  # one a turn, at least
    for r in results:
        for key in ("id", "text", "final", "start_ms", "duration_ms", "language"):
            assert key in r, key
        assert isinstance(r["start_ms"], int) and isinstance(r["duration_ms"], int)
        assert r["language"] == "en-US"
        for w in r["words"]:
            assert set(w) >= {"word", "start_ms", "duration_ms", "stable"}
    # One id per turn segment: partials share the id of the final that closes them,
    # and every final has a fresh id.
    final_ids = [r["id"] for r in results if r["final"]]
    assert len(final_ids) == len(set(final_ids))
    segment: list[dict[str, Any]] = []
    for r in results:
        segment.append(r)
        if r["final"]:
            assert {s["id"] for s in segment} == {r["id"]}
            segment = []


def test_word_times_are_on_the_session_timeline_across_reconnects(srv) -> None:
    props = load_config("basic", params={"base_url": srv.url})
    turns = []
    start = 0
    for _ in range(3):
        pcm = speech_turn(start)
        turns.append(pcm)
        start += frames_in(pcm)

    async def script(t: AsrTester) -> None:
        for n, pcm in enumerate(turns):
            await t.send_audio(pcm)
            await t.send_finalize(f"f{n}")
            await t.wait_for("asr_finalize_end", lambda e, n=n: e["finalize_id"] == f"f{n}")

    tester = run_asr_test(props, script)
    words = [w for r in tester.messages("asr_result") if r["final"] for w in r["words"]]
    assert len(words) == 3 * 40
    for w in words:
        # Marker words are frame indices; frame k starts at k*10 ms of the audio sent.
        assert abs(w["start_ms"] - int(w["word"]) * 10) <= 10, w


# --------------------------------------------------------------------------- errors and status


def test_bad_key_is_one_fatal_error_and_no_retry() -> None:
    with ServerThread(recognizer="marker", api_key="the-right-key") as srv:
        props = load_config("fast_faults", params={"base_url": srv.url, "api_key": SECRET})

        async def script(t: AsrTester) -> None:
            error = await t.wait_for("error", timeout=5)
            assert error["code"] == -1000
            assert error["module"] == "asr"
            assert error["vendor_info"]["vendor"] == "xai"
            assert error["vendor_info"]["code"] == "401"
            assert SECRET not in json.dumps(error)
            # Finalize is still answered, without a connection.
            await t.send_finalize("f1")
            await t.wait_for("asr_finalize_end", timeout=3)

        tester = run_asr_test(props, script)
        assert len(srv.connections) == 1
        assert [e["code"] for e in tester.messages("error")] == [-1000]


def test_abnormal_close_is_a_non_fatal_error_and_transcription_resumes(srv) -> None:
    srv.set_fault(1, Fault(close=Close(code=1011, after_bytes=20 * 320)))
    props = load_config("fast_faults", params={"base_url": srv.url})

    async def script(t: AsrTester) -> None:
        await t.send_audio(speech_turn(0))
        error = await t.wait_for("error", timeout=5)
        assert error["code"] == 1000
        assert error["vendor_info"]["code"] == "1011"
        await t.send_audio(speech_turn(100))
        await t.send_finalize("f1")
        await t.wait_for("asr_result", lambda r: r["final"] and "140" in r["text"], timeout=5)

    run_asr_test(props, script)


def test_connection_status_changes_are_legal_and_carry_no_key(srv) -> None:
    srv.set_fault(2, Fault(close=Close(code=1001, after_bytes=10 * 320)))
    # A connection per turn (audio.done), so that both planned and failed ends happen.
    props = load_config(
        "fast_faults", finalize_mode="audio_done", params={"base_url": srv.url, "api_key": SECRET}
    )

    async def script(t: AsrTester) -> None:
        await t.send_audio(speech_turn(0))
        await t.send_finalize("f1")
        await t.wait_for("asr_finalize_end", timeout=5)
        await t.send_audio(speech_turn(100))
        await t.wait_for("error", timeout=5)
        await t.send_finalize("f2")
        await t.wait_for("asr_finalize_end", lambda e: e["finalize_id"] == "f2", timeout=5)

    tester = run_asr_test(props, script)
    changes = tester.messages("connection_status_changed")
    legal = {
        ("connecting", "connected"),
        ("disconnected", "connecting"),
        ("connected", "connecting"),
        ("connected", "disconnected"),
        ("connecting", "disconnected"),
    }
    assert changes[0]["last"] == "disconnected" and changes[0]["current"] == "connecting"
    for prev, change in itertools.pairwise(changes):
        assert change["last"] == prev["current"], (prev, change)
    for change in changes:
        assert (change["last"], change["current"]) in legal, change
        assert change["metadata"]["vendor_metadata"]["url"] == srv.url
        assert SECRET not in json.dumps(change)
    assert [c["current"] for c in changes].count("connected") >= 3


def test_the_key_never_reaches_logs_or_messages(srv, capfd) -> None:
    srv.set_fault(1, Fault(refuse_status=503))
    props = load_config("fast_faults", params={"base_url": srv.url, "api_key": SECRET})

    async def script(t: AsrTester) -> None:
        await t.send_audio(speech_turn(0))
        await t.wait_for("error", timeout=5)
        await t.send_finalize("f1")
        await t.wait_for("asr_finalize_end", timeout=5)

    tester = run_asr_test(props, script)
    out, err = capfd.readouterr()
    # The log goes to stdout (the stand-in, as the app's log config says) or to
    # stderr (a native build without TEN's Rust log system): read both.
    log = out + err
    assert "config:" in log  # the extension did log its (redacted) config
    assert SECRET not in log
    assert SECRET not in json.dumps([m.payload for m in tester.received])
    headers = srv.connections[0].headers
    assert SECRET not in json.dumps(headers)


# --------------------------------------------------------------------------- metrics and dump


def test_metrics_connect_delay_ttfw_ttlw_and_actual_send(srv) -> None:
    props = load_config("fast_faults", params={"base_url": srv.url})
    pcm = speech_turn(0)

    async def script(t: AsrTester) -> None:
        await t.send_audio(pcm, metadata={"session_id": "m-1"})
        await t.send_finalize("f1", metadata={"session_id": "m-1"})
        await t.wait_for("asr_finalize_end", timeout=5)
        await t.wait_for("metrics", lambda m: "actual_send" in m["metrics"], timeout=5)

    tester = run_asr_test(props, script)
    metrics = tester.messages("metrics")
    by_key = {k: m for m in metrics for k in m["metrics"]}
    for key in ("connect_delay", "ttfw", "ttlw", "actual_send"):
        assert key in by_key, f"no {key} metric in {metrics}"
        assert by_key[key]["module"] == "asr" and by_key[key]["vendor"] == "xai"
    assert by_key["ttfw"]["metadata"]["session_id"] == "m-1"
    assert by_key["ttlw"]["metadata"]["session_id"] == "m-1"
    assert 0 <= by_key["ttfw"]["metrics"]["ttfw"] < 5000
    assert 0 <= by_key["ttlw"]["metrics"]["ttlw"] < 2000
    sent_ms = max(m["metrics"]["actual_send"] for m in metrics if "actual_send" in m["metrics"])
    assert sent_ms == len(pcm) // 32  # 16 kHz, 16-bit mono: 32 bytes a ms
    vendor_metrics = by_key["actual_send"]["metrics"]["vendor_metrics"]
    assert vendor_metrics["connections_opened"] >= 1


def test_dump_holds_exactly_the_bytes_sent_to_the_vendor(srv, tmp_path: Path) -> None:
    props = load_config("basic", dump=True, dump_path=str(tmp_path), params={"base_url": srv.url})
    turn1, turn2 = speech_turn(0), speech_turn(100)

    async def script(t: AsrTester) -> None:
        await t.send_audio(turn1, chunk_bytes=333)
        await t.send_finalize("f1")
        await t.send_audio(turn2)
        await t.send_finalize("f2")
        await t.wait_for("asr_finalize_end", lambda e: e["finalize_id"] == "f2", timeout=8)

    run_asr_test(props, script)
    dumped = (tmp_path / "xai_asr_python_in.pcm").read_bytes()
    assert dumped == turn1 + turn2
    assert dumped == b"".join(bytes(rec.audio) for rec in srv.connections)


# --------------------------------------------------------------------------- commands


def test_update_configs_applies_at_the_next_connection(srv) -> None:
    props = load_config("basic", params={"base_url": srv.url})

    async def script(t: AsrTester) -> None:
        await srv.wait_for_connection(1)
        status, detail = await t.send_cmd("update_configs", {"params": {"language": "es"}})
        assert status == 0, detail
        status, detail = await t.send_cmd("update_configs", {"params": {"sample_rate": 12345}})
        assert status == 1 and "params.sample_rate" in detail, detail
        await t.send_audio(speech_turn(0))
        await t.send_finalize("f1")
        await t.wait_for("asr_finalize_end", timeout=5)
        await srv.wait_for_connection(2)

    run_asr_test(props, script)
    assert srv.connections[0].query["language"] == "en"
    assert srv.connections[1].query["language"] == "es"
    assert srv.connections[1].query["sample_rate"] == "16000"


def test_any_other_cmd_is_answered_ok(srv) -> None:
    props = load_config("basic", params={"base_url": srv.url})

    async def script(t: AsrTester) -> None:
        assert (await t.send_cmd("something_else", {"x": 1}))[0] == 0

    run_asr_test(props, script)


# --------------------------------------------------------------------------- configuration


def test_a_property_json_written_for_the_upstream_extension_works(srv) -> None:
    props = load_config("upstream_defaults")
    props["params"]["base_url"] = srv.url  # the only change: where the vendor is

    async def script(t: AsrTester) -> None:
        await t.send_audio(speech_turn(0))
        await t.send_finalize("f1")
        await t.wait_for("asr_result", lambda r: r["final"] and r["text"], timeout=5)
        await t.wait_for("asr_finalize_end", timeout=5)
        assert t.messages("error") == []

    run_asr_test(props, script)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"params": {"api_key": ""}}, "params.api_key"),
        ({"params": {"sample_rate": 12345}}, "params.sample_rate"),
        ({"params": {"encoding": "mp3"}}, "params.encoding"),
        ({"params": {"endpointing": 9000}}, "params.endpointing"),
        ({"params": {"base_url": "https://api.x.ai/v1/stt"}}, "params.base_url"),
        ({"params": {"multichannel": True, "channels": 1}}, "params.channels"),
        ({"finalize_timeout_ms": 5}, "finalize_timeout_ms"),
        ({"reconnect_max_attempts": 0}, "reconnect_max_attempts"),
    ],
)
def test_bad_property_values_give_a_fatal_error_naming_the_field(
    srv, override: dict[str, Any], field: str
) -> None:
    props = load_config("basic", params={"base_url": srv.url, "api_key": SECRET})
    params = override.pop("params", {})
    props.update(override)
    props["params"].update(params)

    async def script(t: AsrTester) -> None:
        error = await t.wait_for("error", timeout=5)
        assert error["code"] == -1000
        assert field in error["message"], error["message"]
        assert SECRET not in json.dumps(error)
        # The extension stays up: audio is ignored, finalize is answered.
        await t.send_audio(speech_turn(0))
        await t.send_finalize("f1")
        await t.wait_for("asr_finalize_end", timeout=3)

    run_asr_test(props, script)
    assert srv.connections == []


@pytest.mark.parametrize("fault", ["abort", 1011])
def test_no_word_is_lost_or_duplicated_when_the_connection_dies_mid_stream(srv, fault) -> None:
    # The audio keeps coming while the connection dies: what the server accepted
    # but never finalized is replayed to the next connection, nothing twice.
    srv.set_fault(1, Fault(close=Close(code=fault, after_bytes=120 * 320)))
    props = load_config("fast_faults", params={"base_url": srv.url})
    pcm = marker.generate([(True, 150), (False, 40), (True, 100), (False, 40)])

    async def script(t: AsrTester) -> None:
        await t.send_audio(pcm)
        # Finalize once the failure is known, so it strikes the connection that
        # takes new audio (a finalize racing ahead of the failure makes it a
        # draining connection's failure instead: see session.py, "Replay").
        await t.wait_for("error", timeout=5)
        await t.send_finalize("f1")
        await t.wait_for("asr_finalize_end", timeout=8)
        await t.wait_for("metrics", lambda m: "vendor_metrics" in m["metrics"], timeout=3)

    tester = run_asr_test(props, script)
    words = [
        int(w["word"]) for r in tester.messages("asr_result") if r["final"] for w in r["words"]
    ]
    spoken = list(range(150)) + list(range(190, 290))
    assert words == spoken
    assert len(tester.messages("error")) == 1
    metrics = [m["metrics"] for m in tester.messages("metrics") if "vendor_metrics" in m["metrics"]]
    assert metrics and metrics[-1]["vendor_metrics"]["replayed_audio_ms"] > 0
