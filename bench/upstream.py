"""Upstream's xai_asr_python, materialized at run time for a side-by-side bench.

None of upstream's code is in this repository. The driver extracts the
package from a local git clone or mirror of TEN-framework/ten-framework
(`BENCH_UPSTREAM_REPO`, default the mirror below; `BENCH_UPSTREAM_REV`,
default HEAD) into `.ten/` (git-ignored), under another addon name: upstream
registers "xai_asr_python", ours's name, and one process cannot hold two
addons of one name. Two lines change, both names: the
`register_addon_as_extension(...)` argument in addon.py and `name` in
manifest.json. Its tests/ are left out.

Upstream's extension is built on `ten_ai_base` (AsyncASRBaseExtension), which
the native app ships (`source ~/.cache/ten-native/env.sh` puts its interface
on PYTHONPATH). Without a mirror, or without ten_ai_base, `prepare()` returns
the reason and the bench skips the variant with that one line.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._paths import ROOT, link_extension

ADDON = "xai_asr_python_upstream"
DEFAULT_REPO = "/work/.mirror/TEN-framework+ten-framework/repo"
PACKAGE_PATH = "ai_agents/agents/ten_packages/extension/xai_asr_python"
_REGISTER = re.compile(r"""register_addon_as_extension\(\s*["']xai_asr_python["']\s*\)""")


@dataclass(frozen=True)
class Upstream:
    """A materialized upstream package, ready to load as addon `ADDON`."""

    repo: str
    commit: str
    version: str
    package_dir: Path

    def describe(self) -> str:
        return f"upstream xai_asr_python {self.version} at {self.commit[:9]} ({self.repo})"


def _git(repo: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, timeout=60)


def prepare() -> Upstream | str:
    """Extract and link upstream's package; returns it, or why it cannot run here."""
    repo = os.environ.get("BENCH_UPSTREAM_REPO", DEFAULT_REPO)
    rev = os.environ.get("BENCH_UPSTREAM_REV", "HEAD")
    if not Path(repo).exists():
        return f"no upstream repository at {repo} (set BENCH_UPSTREAM_REPO)"
    if importlib.util.find_spec("ten_ai_base") is None:
        return (
            "ten_ai_base (upstream's base class) is not importable "
            "(source ~/.cache/ten-native/env.sh)"
        )
    extracted = extract(repo, rev, ROOT / ".ten")
    if isinstance(extracted, Upstream):
        link_extension(ADDON, extracted.package_dir)
    return extracted


def extract(repo: str, rev: str, into: Path) -> Upstream | str:
    """Upstream's package at `rev`, renamed to `ADDON`, in `into/upstream-<commit>/`
    (extracted once per commit); or why it cannot be."""
    try:
        resolved = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"git failed on {repo}: {exc}"
    if resolved.returncode != 0:
        return f"no commit {rev!r} in {repo}"
    commit = resolved.stdout.decode().strip()
    package = into / f"upstream-{commit[:12]}" / ADDON
    if not (package / "manifest.json").exists():
        reason = _extract(repo, commit, package)
        if reason:
            return reason
    version = json.loads((package / "manifest.json").read_text()).get("version", "?")
    return Upstream(repo, commit, version, package)


def _extract(repo: str, commit: str, package: Path) -> str | None:
    archive = _git(repo, "archive", "--format=tar", commit, PACKAGE_PATH)
    if archive.returncode != 0:
        return f"{PACKAGE_PATH} not in {repo} at {commit[:9]}"
    staging = package.parent / f".{ADDON}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    prefix = PACKAGE_PATH + "/"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        for member in tar.getmembers():
            relative = member.name[len(prefix) :] if member.name.startswith(prefix) else ""
            if not member.isfile() or not relative or relative.startswith("tests/"):
                continue
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
    addon = staging / "addon.py"
    text, count = _REGISTER.subn(f'register_addon_as_extension("{ADDON}")', addon.read_text())
    if count != 1:
        shutil.rmtree(staging, ignore_errors=True)
        return f"upstream addon.py at {commit[:9]} does not register 'xai_asr_python' once"
    addon.write_text(text)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["name"] = ADDON
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    try:
        staging.rename(package)  # atomic; a concurrent run that got there first wins
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return None


# ---------------------------------------------------------------- in a worker


def properties(url: str) -> dict[str, Any]:
    """Upstream's properties for the local server, as `harness.ext_properties` sets
    ours: the same wire parameters (every key of upstream's params given, so its
    property.json's api_key from the environment and base_url never apply)."""
    from bench import harness

    ours = harness.ext_properties(url)
    return {
        "finalize_timeout_ms": ours["finalize_timeout_ms"],
        "params": {**ours["params"], "diarize": False, "multichannel": False, "channels": 1},
    }


# Upstream has no connection_status_changed: its first `metrics` message (the
# connect delay, sent from on_open) says it is connected.
DECODED = frozenset({"asr_finalize_end", "metrics", "error"})


async def wait_connected(tester: Any, timeout: float = 10.0) -> None:
    await tester.wait_for(
        "metrics", lambda p: "connect_delay" in (p.get("metrics") or {}), timeout=timeout
    )


class UpstreamProbe:
    """Counts the frames upstream's extension sent to the server (`send_audio`
    returned True), and how many it had sent when `finalize` began: upstream
    queues frames for a consumer task and runs finalize from on_data, so a frame
    still queued then reaches the server after `audio.done`. The wrappers call
    the originals; only this worker process's class is changed."""

    def __init__(self) -> None:
        self.sent = 0
        self.sent_at_finalize: list[int] = []

    def install(self) -> UpstreamProbe:
        module = importlib.import_module(f"ten_packages.extension.{ADDON}.extension")
        cls = module.XAIASRExtension
        probe = self
        send_audio = cls.send_audio
        finalize = cls.finalize

        async def probed_send_audio(self: Any, frame: Any, session_id: Any) -> bool:
            ok = await send_audio(self, frame, session_id)
            if ok:
                probe.sent += 1
            return bool(ok)

        async def probed_finalize(self: Any, session_id: Any) -> None:
            probe.sent_at_finalize.append(probe.sent)
            await finalize(self, session_id)

        cls.send_audio = probed_send_audio
        cls.finalize = probed_finalize
        return self
