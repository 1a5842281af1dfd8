"""The README's main job: `python3 examples/transcribe.py`, as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from asr_harness import ServerThread

from stt_server.textnorm import spoken_words

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, str(ROOT / "examples" / "transcribe.py")]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "XAI_API_KEY"}
    environ.update(env or {})
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=120, env=environ, cwd="/"
    )


def test_bundled_sample_is_transcribed_with_no_key() -> None:
    done = run("--fast")
    assert done.returncode == 0, done.stderr
    assert "local xAI-compatible server" in done.stderr
    text = done.stdout.lower()
    for word in ("good", "morning", "today", "flight", "boston", "york"):
        assert word in text, done.stdout
    finals = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(finals) >= 2  # one line per final, with its start time
    summary = done.stdout.splitlines()[-1]  # the summary closes the run
    assert "final(s)" in summary
    assert summary.startswith("-- 7.9 s of audio"), summary  # demo.wav is 7.9 s long
    assert "Traceback" not in done.stderr


def test_a_real_time_run_reports_ttfw_and_ttlw() -> None:
    """In real time, endpointing makes the text final before the closing finalize;
    the finalize still has its ttlw (it used to print "ttlw -")."""
    done = run(str(ROOT / "stt_server" / "audio" / "hello_world.wav"))  # 2.7 s of audio
    assert done.returncode == 0, done.stderr
    summary = done.stdout.splitlines()[-1]
    assert re.search(r"ttfw \d+ ms, ttlw \d+ ms", summary), summary
    assert "1 final(s)" in summary  # the empty final that closes the turn is not counted


def test_json_mode_prints_one_result_object_per_line_then_a_summary_record() -> None:
    done = run("--fast", "--json", str(ROOT / "stt_server" / "audio" / "hello_world.wav"))
    assert done.returncode == 0, done.stderr
    *results, last = [json.loads(line) for line in done.stdout.splitlines()]
    assert results and all({"text", "final", "start_ms"} <= set(r) for r in results)
    assert "hello" in " ".join(r["text"] for r in results if r["final"]).lower()
    # The run's summary closes the output, as one record of its own.
    assert set(last) == {"summary"}, last
    summary = last["summary"]
    assert summary["finals"] == sum(1 for r in results if r["final"] and r["text"])
    assert summary["audio_ms"] == 2690 and summary["errors"] == 0 and not summary["fatal"]
    assert {"text", "ttfw_ms", "ttlw_ms", "connections", "dropped_ms"} <= set(summary)


def test_help_shows_every_default_and_the_exit_codes() -> None:
    done = run("--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps to the terminal's width
    for default in (
        "stt_server/audio/demo.wav)",
        "(default: 1.0)",
        "(default: 3)",
        "(default: whisper)",
        "examples/property.json)",
        "(default: off)",
        "(default: none, the file's header gives the rate)",
    ):
        assert default in text, (default, done.stdout)
    assert "exit codes:" in done.stdout
    for code in ("0", "1", "2", "3", "4", "130"):
        assert re.search(rf"^  {code} +\S", done.stdout, re.MULTILINE), (code, done.stdout)


def test_missing_file_is_one_clear_line_and_a_failure() -> None:
    done = run("/no/such/audio.wav")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == ["error: no such file: /no/such/audio.wav"]


def test_unreadable_file_is_one_clear_line_and_a_failure(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_text("these are not samples")
    done = run(str(bogus))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a readable audio file" in lines[0], lines
    assert str(bogus) in lines[0] and "--rate" not in lines[0]


def test_a_directory_is_not_called_a_missing_file(tmp_path: Path) -> None:
    done = run(str(tmp_path))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path}: is a directory, not an audio file"
    ]


def test_an_mp3_file_is_transcribed(tmp_path: Path) -> None:
    import soundfile

    audio, rate = soundfile.read(ROOT / "stt_server" / "audio" / "numbers.wav")
    mp3 = tmp_path / "numbers.mp3"
    soundfile.write(mp3, audio, rate, format="MP3")
    done = run("--fast", str(mp3))
    assert done.returncode == 0, done.stderr
    assert "(whisper, offline)" in done.stderr
    heard = spoken_words(done.stdout.rsplit("\n-- ", 1)[0])
    hits = [w for w in "one two three four five six seven eight nine ten".split() if w in heard]
    assert len(hits) >= 8, done.stdout


def test_refused_key_is_one_clear_error_and_a_failure() -> None:
    with ServerThread(recognizer="marker", api_key="the-right-key") as srv:
        done = run("--fast", "--base-url", srv.url, env={"XAI_API_KEY": "a-wrong-key"})
        assert len(srv.connections) == 1  # refused once, not retried
    assert done.returncode != 0
    assert "fatal error" in done.stderr and "401" in done.stderr
    assert "a-wrong-key" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_server_gives_up_with_a_clear_error() -> None:
    # Nothing listens on port 9 of loopback: every connect is refused at once.
    done = run("--fast", "--base-url", "ws://127.0.0.1:9/v1/stt", "--max-retries", "2")
    assert done.returncode != 0
    assert "fatal error" in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------- no silent loss (#12)


def write_wav(path: Path, pcm: bytes, rate: int = 16000) -> Path:
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return path


def marker_file(tmp_path: Path, seconds: int) -> tuple[Path, int]:
    """A WAV of marker audio: 1 s sentences (0.5 s speech, 0.5 s silence)."""
    from stt_server import marker

    pattern = [(True, 50), (False, 50)] * seconds
    speech_frames = 50 * seconds
    return write_wav(tmp_path / "long.wav", marker.generate(pattern)), speech_frames


def indices(stdout: str) -> list[int]:
    words = []
    for line in stdout.splitlines():
        if line.startswith("["):
            words.extend(int(w) for w in line.split("]", 1)[1].split())
    return words


def test_a_file_longer_than_the_buffer_loses_nothing_with_fast(tmp_path: Path) -> None:
    # 70 s of audio pushed at once: more than the default 60 s outage buffer.
    path, _ = marker_file(tmp_path, 70)
    with ServerThread(recognizer="marker") as srv:
        done = run("--fast", "--base-url", srv.url, str(path))
    assert done.returncode == 0, done.stderr
    expected = [i for i in range(7000) if i % 100 < 50]
    assert indices(done.stdout) == expected  # every sentence, once
    summary = done.stdout.splitlines()[-1]
    assert "0 error(s)" in summary and "dropped" not in summary, summary


def test_lost_audio_is_counted_in_the_summary_and_fails_the_run(tmp_path: Path) -> None:
    # A graph that insists on a 1 s buffer, and a server whose first handshake hangs
    # for 3 s while the whole 5 s file is pushed: the oldest 4 s are dropped.
    path, _ = marker_file(tmp_path, 5)
    graph = json.loads((ROOT / "examples" / "property.json").read_text())
    nodes = graph["ten"]["predefined_graphs"][0]["graph"]["nodes"]
    stt = next(n for n in nodes if n["addon"] == "xai_asr_python")
    stt["property"]["buffer_max_ms"] = 1000
    graph_path = tmp_path / "graph.json"
    graph_path.write_text(json.dumps(graph))
    from stt_server import Fault

    with ServerThread(recognizer="marker") as srv:
        srv.set_fault(1, Fault(handshake_delay_ms=3000))
        done = run("--fast", "--base-url", srv.url, "--graph", str(graph_path), str(path))
    assert done.returncode != 0, done.stdout + done.stderr
    assert "dropped 4000 ms of audio" in done.stderr, done.stderr
    summary = done.stdout.splitlines()[-1]
    assert "4.0 s of audio dropped" in summary, summary
    assert "1 error(s)" in summary, summary
    assert "Traceback" not in done.stderr


def test_errors_say_what_happens_next(tmp_path: Path) -> None:
    # Connection 1 closes abnormally mid-file: the error says what follows (a retry, or
    # the turn transcribed again), and it does follow: nothing is lost.
    from stt_server import Close, Fault

    path, _ = marker_file(tmp_path, 5)
    with ServerThread(recognizer="marker") as srv:
        srv.set_fault(1, Fault(close=Close(code=1011, after_bytes=64_000)))
        done = run("--fast", "--base-url", srv.url, str(path))
    assert done.returncode == 0, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if "error" in ln and "1011" in ln]
    assert line.startswith("error: "), line
    assert "retrying in " in line or "re-transcribing the turn" in line, line
    assert "(retrying)" not in done.stderr
    assert indices(done.stdout) == [i for i in range(500) if i % 100 < 50]


# ------------------------------------------------- the server's keepalive (issue 23)


def test_a_fast_run_through_a_slow_server_prints_no_false_keepalive_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server reads audio at its recogniser's pace (whisper on a busy machine),
    so at --fast the client's pongs wait behind seconds of audio in the socket; its
    keepalive must not cut off the busy client (it printed an `error:` line for a
    connection the server itself dropped as a false alarm, and re-sent audio)."""
    from stt_server import server as server_module

    on_audio = server_module._ConnectionRunner._on_audio

    async def slowly(self: Any, data: bytes) -> None:
        await asyncio.sleep(0.004)
        await on_audio(self, data)

    monkeypatch.setattr(server_module._ConnectionRunner, "_on_audio", slowly)
    path, _ = marker_file(tmp_path, 30)
    with ServerThread(recognizer="marker", ping_interval=0.2, ping_timeout=0.5) as srv:
        done = run("--fast", "--base-url", srv.url, str(path))
        closes = [(c.close_code, c.close_reason) for c in srv.connections]
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr, done.stderr
    assert (1011, "keepalive ping timeout") not in closes, closes
    assert indices(done.stdout) == [i for i in range(3000) if i % 100 < 50]


def long_recording(path: Path, seconds: float) -> tuple[Path, int]:
    """The repo's clips, each followed by 0.5 s of silence, over and over: a file of
    at least `seconds` (made in the test, never committed); returns it and the rounds."""
    import numpy as np
    import soundfile

    clips = [
        soundfile.read(clip, dtype="int16")[0]
        for clip in sorted((ROOT / "stt_server" / "audio").glob("*.wav"))
    ]
    gap = np.zeros(8000, dtype=np.int16)
    parts: list[Any] = []
    rounds = 0
    while sum(len(p) for p in parts) < seconds * 16000:
        parts += [x for clip in clips for x in (clip, gap)]
        rounds += 1
    soundfile.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return path, rounds


@pytest.mark.timeout(900)
@pytest.mark.skipif(
    not os.environ.get("MAIN_JOB_LONG"),
    reason="a 3-minute file through whisper takes minutes on 2 cores: MAIN_JOB_LONG=1 runs it",
)
def test_a_three_minute_file_at_fast_speed_with_whisper(tmp_path: Path) -> None:
    """The issue's case itself: the local whisper server, --fast, a 3-minute file."""
    path, rounds = long_recording(tmp_path / "three_minutes.wav", 180)
    environ = {k: v for k, v in os.environ.items() if k != "XAI_API_KEY"}
    done = subprocess.run(
        [*COMMAND, "--fast", str(path)],
        capture_output=True,
        text=True,
        timeout=900,
        env=environ,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr, done.stderr
    heard = spoken_words(done.stdout.rsplit("\n-- ", 1)[0])
    # Every round of every clip is there: one sentence each that whisper gets right.
    for word in ("weather", "morning", "york", "door", "thank"):
        assert heard.count(word) == rounds, (word, heard.count(word), rounds, done.stdout)
    summary = done.stdout.splitlines()[-1]
    assert "0 error(s)" in summary and "dropped" not in summary, summary


# --------------------------------------------------------- refused flags (issue 23)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--speed", "0"], "argument --speed: must be > 0 (got 0)"),
        (["--speed", "-1"], "argument --speed: must be > 0 (got -1)"),
        (["--speed", "nan"], "argument --speed: not a finite number"),
        (["--max-retries", "-1"], "argument --max-retries: must be >= 0 (got -1)"),
        (["--rate", "0"], "argument --rate: must be > 0 (got 0)"),
    ],
)
def test_bad_flags_are_refused_with_one_line(flags: list[str], says: str) -> None:
    done = run(*flags)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and says in line, line
    assert done.stdout == ""


def test_rate_with_a_file_that_has_a_header_is_refused_naming_both(tmp_path: Path) -> None:
    import soundfile

    audio, rate = soundfile.read(ROOT / "stt_server" / "audio" / "hello_world.wav")
    flac = tmp_path / "hello.flac"
    soundfile.write(flac, audio, rate, format="FLAC")
    done = run("--rate", "16000", str(flac))
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "--rate 16000" in line and str(flac) in line and "FLAC" in line, line


def test_max_retries_counts_the_retries_after_the_first_failure() -> None:
    done = run("--fast", "--base-url", "ws://127.0.0.1:9/v1/stt", "--max-retries", "1")
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("retrying in ") == 1, done.stderr  # one retry, then it gives up
    assert "fatal error" in done.stderr


# ---------------------------------------------------- a file that ends early (issue 23)


def test_a_cut_mp3_is_reported_once_and_fails_the_run(tmp_path: Path) -> None:
    import soundfile

    audio, rate = soundfile.read(ROOT / "stt_server" / "audio" / "demo.wav")
    mp3 = tmp_path / "demo.mp3"
    soundfile.write(mp3, audio, rate, format="MP3")
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(mp3.read_bytes()[:3000])  # the first 3 kB; its header says 7.9 s
    with ServerThread(recognizer="marker") as srv:
        done = run("--fast", "--base-url", srv.url, str(cut))
    assert done.returncode == 4, done.stdout + done.stderr
    assert "0.4 s of audio decoded, its header declares 7.9 s" in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {cut}: the file ends")
    # libmpg123's own warning is not printed (it was, twice); our words for it, once.
    assert "Xing stream size off" not in done.stderr
    assert done.stderr.count("length header (Xing) does not match") == 1, done.stderr


def test_the_job_sizes_its_deadlines_and_replay_to_the_file(tmp_path: Path) -> None:
    """On a loaded machine the local whisper server answers pings late and, at --fast,
    takes long to read the audio queued in the socket: with the live defaults the
    extension gave up healthy connections (an `error:` line, a second decode), and
    the 20 s replay window lost the rest of a 3-minute file without a word. The
    replay window holds the whole file; only the local server, which runs in the
    job's own process on loopback, gets the longer liveness and stall limits."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("transcribe_under_test", COMMAND[1])
    assert spec is not None and spec.loader is not None
    transcribe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(transcribe)
    args = transcribe._parser().parse_args(["--fast"])
    for local, liveness, stall in ((True, 10_000, 190_000), (False, None, None)):
        graph = json.loads((ROOT / "examples" / "property.json").read_text())
        transcribe._configure_graph(
            graph,
            args,
            tmp_path / "audio.pcm",
            180.0,
            "ws://127.0.0.1:1/v1/stt",
            "key",
            tmp_path / "summary.json",
            local_server=local,
        )
        [stt] = [n for n in transcribe._graph_nodes(graph) if n["addon"] == "xai_asr_python"]
        assert stt["property"].get("liveness_timeout_ms") == liveness, local
        assert stt["property"].get("stall_timeout_ms") == stall, local
        assert stt["property"]["replay_max_ms"] == 190_000
