"""Issue #12 on TEN's ASR interface: audio the extension could not transcribe is
reported to the graph (a NON_FATAL `error` per drop episode, the totals in
`metrics`), never lost without a word."""

from __future__ import annotations

from typing import Any

import pytest
from asr_harness import AsrTester, ServerThread, load_config, run_asr_test

from stt_server import Fault, marker


@pytest.fixture
def srv():
    with ServerThread(recognizer="marker") as server:
        yield server


def drop_errors(t: AsrTester) -> list[dict[str, Any]]:
    return [e for e in t.messages("error") if "dropped" in e["message"]]


def test_an_outage_longer_than_the_buffer_is_one_non_fatal_error_and_metrics(srv) -> None:
    srv.set_default_fault(Fault(refuse_status=503))  # an outage: every upgrade refused
    props = load_config(
        "fast_faults",
        params={"base_url": srv.url},
        buffer_max_ms=200,
        reconnect_max_attempts=1000,
    )

    async def script(t: AsrTester) -> None:
        await srv.wait_for_connection(2)  # refused, and retrying
        # 500 ms of speech, 10 ms a frame: the newest 200 ms are kept, 300 ms dropped.
        await t.send_audio(marker.generate([(True, 50)]), chunk_bytes=320)
        await t.send_finalize("f1")
        # Still in the outage: the finalize ends without a connection (the runtime
        # delivers it after every frame, so all 500 ms were pushed by then).
        await t.wait_for("asr_finalize_end", timeout=10)
        # The error precedes the turn's answer, and carries what was lost and why.
        names = [
            m.name
            for m in t.received
            if m.name == "asr_finalize_end"
            or (m.name == "error" and "dropped" in m.payload["message"])
        ]
        assert names == ["error", "asr_finalize_end"], names
        srv.set_default_fault(None)  # the outage ends: the kept 200 ms are transcribed
        await t.wait_for(
            "asr_result", lambda r: r["final"] and "49" in r["text"].split(), timeout=10
        )
        await t.wait_for(
            "metrics",
            lambda m: m["metrics"].get("vendor_metrics", {}).get("drop_episodes") == 1,
            timeout=5,
        )

    tester = run_asr_test(props, script)
    [error] = drop_errors(tester)
    assert error["code"] == 1000  # NON_FATAL
    assert "dropped 300 ms of audio" in error["message"]
    assert "buffer_max_ms" in error["message"]
    vendor_metrics = [
        m["metrics"]["vendor_metrics"]
        for m in tester.messages("metrics")
        if "vendor_metrics" in m["metrics"]
    ]
    assert vendor_metrics[-1]["dropped_audio_ms"] == 300
    assert vendor_metrics[-1]["drop_episodes"] == 1
    finals = [r for r in tester.messages("asr_result") if r["final"]]
    words = [int(w) for r in finals for w in r["text"].split()]
    assert words == list(range(30, 50))  # every frame transcribed once, or reported
