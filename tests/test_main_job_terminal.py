"""The main job on a terminal (issue 23): live partial text and a progress bar.

The command runs on a pseudo-terminal (python's pty module) against the local
server's marker recognizer, so results are exact and the run takes seconds.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import wave
from pathlib import Path

import pytest
from asr_harness import ServerThread

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, str(ROOT / "examples" / "transcribe.py")]
FINALS = [
    "[   0.00s] " + " ".join(str(i) for i in range(0, 50)),
    "[   1.00s] " + " ".join(str(i) for i in range(100, 150)),
    "[   2.00s] " + " ".join(str(i) for i in range(200, 250)),
]


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of marker audio: three 1 s sentences (0.5 s speech, 0.5 s silence)."""
    from stt_server import marker

    path = tmp_path_factory.mktemp("terminal") / "three.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(marker.generate([(True, 50), (False, 50)] * 3))
    return path


def on_terminal(*args: str, stdout_tty: bool, stderr_tty: bool) -> tuple[str, str, int]:
    """Run the command with stdout and/or stderr on a 120-column pseudo-terminal:
    (what the terminal got, what the other stream got through a pipe, the exit code)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k != "XAI_API_KEY"}
    process = subprocess.Popen(
        [*COMMAND, *args],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_tty else subprocess.PIPE,
        stderr=slave if stderr_tty else subprocess.PIPE,
        env=environ,
        cwd="/",
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal's other end closed: the command ended
                    break
                if not chunk:
                    break
                seen += chunk
            elif process.poll() is not None:
                break
        out, err = process.communicate(timeout=30)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    piped = (out if not stdout_tty else err) or b""
    return seen.decode("utf-8", "replace"), piped.decode(), process.returncode


def test_partial_text_is_live_when_stdout_is_a_terminal(sentences: Path) -> None:
    # The printer used to ask sys.stdout while the main job had it redirected (the
    # runtime's addon announcements): the answer was always "not a terminal".
    with ServerThread(recognizer="marker") as srv:
        terminal, stderr, code = on_terminal(
            "--speed", "2", "--base-url", srv.url, str(sentences), stdout_tty=True, stderr_tty=False
        )
    assert code == 0, terminal + stderr
    assert "\r\x1b[K  ... 0 1 2" in terminal, terminal  # interim text, rewritten in place
    for line in FINALS:
        assert f"\r\x1b[K{line}\r\n" in terminal, terminal  # each final replaces it
    assert "transcribed" not in terminal + stderr  # no progress bar: stderr is a pipe


def test_a_progress_bar_on_a_terminal_stderr_leaves_stdout_as_it_was(sentences: Path) -> None:
    with ServerThread(recognizer="marker") as srv:
        terminal, stdout, code = on_terminal(
            "--speed", "2", "--base-url", srv.url, str(sentences), stdout_tty=False, stderr_tty=True
        )
    assert code == 0, terminal + stdout
    # The bar: the audio transcribed and sent against the file's 3.0 s.
    assert re.search(r"\d+%\|.*\| \d\.\d/3\.0 s transcribed \[", terminal), terminal
    assert re.search(r"sent \d\.\d s", terminal), terminal
    assert re.search(r"\r +\r$", terminal), terminal  # erased at the end
    # stdout (a pipe) gets exactly what it gets without a terminal anywhere.
    lines = stdout.splitlines()
    assert lines[:3] == FINALS and len(lines) == 4 and lines[3].startswith("-- 3.0 s"), stdout


def test_lines_are_printed_above_the_bar_with_the_live_text_in_it(sentences: Path) -> None:
    with ServerThread(recognizer="marker") as srv:
        terminal, stderr, code = on_terminal(
            "--speed", "2", "--base-url", srv.url, str(sentences), stdout_tty=True, stderr_tty=True
        )
    assert code == 0, terminal + stderr
    for line in FINALS:
        # The bar is cleared (spaces, then back to the start) before each line.
        assert re.search(r"\r +\r" + re.escape(line) + r"\r\n", terminal), terminal
    assert "46 47 48 49" in terminal.split(FINALS[0])[0]  # the interim text, in the bar
    assert "\x1b[K  ..." not in terminal  # one live line only: the bar's
    assert re.search(r"\r +\r-- 3\.0 s of audio.* 0 error\(s\)\r\n$", terminal), terminal[-300:]


def test_no_bar_and_no_control_characters_when_piped(sentences: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "XAI_API_KEY"}
    with ServerThread(recognizer="marker") as srv:
        done = subprocess.run(
            [*COMMAND, "--fast", "--base-url", srv.url, str(sentences)],
            capture_output=True,
            text=True,
            timeout=60,
            env=environ,
        )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[:3] == FINALS
    assert "\r" not in done.stdout and "\x1b" not in done.stdout
