"""python -m stt_server: the listening line, a clean stop on SIGINT, help for every option."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import pytest
from server_support import ROOT, WAIT, expect_created, open_client

from stt_server.__main__ import build_parser


@pytest.mark.parametrize("recognizer", ["marker", "pocketsphinx"])
async def test_cli_prints_the_url_and_stops_cleanly_on_sigint(recognizer: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stt_server",
        "--port",
        "0",
        "--recognizer",
        recognizer,
        cwd=str(ROOT),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        match = re.fullmatch(r"listening on (ws://127\.0\.0\.1:(\d+)/v1/stt)\n", line)
        assert match, line
        assert int(match.group(2)) > 0
        async with open_client(match.group(1)) as ws:
            await expect_created(ws)
        process.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(process.communicate(), WAIT)
        assert process.returncode == 0
        assert stdout == b""  # exactly one line on stdout
        assert b"Traceback" not in stderr
        assert b"connection 1: open" in stderr  # the log line per connection
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_every_option_has_help() -> None:
    parser = build_parser()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert options
    for action in options:
        assert action.help and len(action.help) > 10, action.option_strings
