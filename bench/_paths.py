"""Import paths for the benches, the way tests/bin/start sets them up.

`setup()` creates the standalone-install layout
(`.ten/app/ten_packages/extension/xai_asr_python -> repo root`, plus the
benches' null extension), puts the package layout on `sys.path`, picks the
native `ten_runtime` when it is importable without `runtime/` and the
pure-Python stand-in otherwise, and returns which one it picked.
`BENCH_RUNTIME=standin|native` forces one (default `auto`). The choice is
written back to the environment, and `child_env()` keeps PYTHONPATH (the native
runtime's paths, as `source ~/.cache/ten-native/env.sh` sets them), so every
worker runs on the runtime its driver reports, or stops saying why.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / ".ten" / "app"
EXT_DIR = APP_DIR / "ten_packages" / "extension"
NULL_ADDON = "bench_null_asr"
NATIVE_DIRS = (
    APP_DIR / "ten_packages" / "system" / "ten_runtime_python" / "lib",
    APP_DIR / "ten_packages" / "system" / "ten_runtime_python" / "interface",
)

_runtime: str | None = None


def _link(name: str, target: Path) -> None:
    link = EXT_DIR / name
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    tmp = EXT_DIR / f".{name}.{os.getpid()}.tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)  # atomic: concurrent benches and test runs never see no link


def _null_package() -> Path:
    """The null extension's package: bench/null_ext's modules under a manifest that
    declares xai_asr_python's own `api`, so that the runtime does the same work for
    both (it adjusts and validates every frame against the declared schema) and
    frame_cost's `null` variant is the runtime's whole per-frame cost."""
    source = ROOT / "bench" / "null_ext"
    package = ROOT / ".ten" / "bench_null_asr"
    package.mkdir(parents=True, exist_ok=True)
    for module in source.glob("*.py"):
        link = package / module.name
        if not link.is_symlink():
            link.symlink_to(module)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["api"] = json.loads((ROOT / "manifest.json").read_text())["api"]
    text = json.dumps(manifest, indent=2) + "\n"
    target = package / "manifest.json"
    if not target.exists() or target.read_text() != text:
        tmp = package / f".manifest.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, target)  # atomic: concurrent benches never read half a file
    return package


def setup() -> str:
    """Prepare sys.path; returns "native" or "standin" (idempotent)."""
    global _runtime
    if _runtime is not None:
        return _runtime
    EXT_DIR.mkdir(parents=True, exist_ok=True)
    _link("xai_asr_python", ROOT)
    _link(NULL_ADDON, _null_package())
    # The checkout root goes last (as in tests/bin/start): it makes stt_server/ and
    # bench/ importable without its top-level modules (session, config, ...)
    # shadowing anything. `python -m` put it (or "") first: move it.
    root = str(ROOT)
    sys.path[:] = [p for p in sys.path if p not in ("", root, os.getcwd())]
    front = [str(APP_DIR), str(EXT_DIR), *(str(d) for d in NATIVE_DIRS)]
    sys.path[:0] = [p for p in front if p not in sys.path]
    sys.path.append(root)
    if "ten_runtime" in sys.modules:
        module_file = getattr(sys.modules["ten_runtime"], "__file__", "") or ""
        _runtime = "standin" if str(ROOT / "runtime") in module_file else "native"
        os.environ["BENCH_RUNTIME"] = _runtime
        return _runtime
    wanted = os.environ.get("BENCH_RUNTIME", "auto")
    if wanted not in ("auto", "native", "standin"):
        raise SystemExit(f"BENCH_RUNTIME must be auto, native or standin (got {wanted!r})")
    if wanted != "standin" and _native_importable():
        _runtime = "native"
    elif wanted == "native":
        raise SystemExit("BENCH_RUNTIME=native but the native ten_runtime is not importable")
    else:
        for name in [m for m in sys.modules if m == "ten_runtime" or m.startswith("ten_runtime.")]:
            del sys.modules[name]
        sys.path.insert(0, str(ROOT / "runtime"))
        _runtime = "standin"
    os.environ["BENCH_RUNTIME"] = _runtime  # workers inherit the choice, never guess again
    return _runtime


def _native_importable() -> bool:
    if importlib.util.find_spec("ten_runtime") is None:
        return False
    try:
        import ten_runtime

        return hasattr(ten_runtime, "AsyncExtensionTester")
    except Exception:
        return False


def runtime_label(runtime: str) -> str:
    if runtime == "native":
        import ten_runtime

        return f"native ten_runtime ({ten_runtime.__file__})"
    return "pure-Python stand-in (runtime/; native ten_runtime not importable)"


def child_env() -> dict[str, str]:
    """Environment for bench subprocesses started from the repository root."""
    env = dict(os.environ)
    # Each child runs setup() itself. PYTHONPATH stays (it is how the native
    # runtime is found), minus the checkout root, whose top-level modules
    # (session, config, ...) would shadow the package layout.
    kept = [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep)
        if p and Path(p).resolve() != ROOT
    ]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        env.pop("PYTHONPATH", None)
    return env
