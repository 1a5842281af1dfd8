"""pytest plugin that tests/bin/start loads (``-p``) when it runs on the native runtime.

runtime/ holds the pure-Python stand-in and the stand-in's own suite. On the
native runtime none of it may be collected: its tests import the stand-in's
internals, its conftest puts the stand-in on sys.path, and
runtime/ten_runtime/async_test.py clashes with the native module of that name.

pytest skips ignored paths only while it discovers tests. A path named on the
command line is collected even when ``--ignore`` covers it. So this plugin does
both jobs: it keeps discovery out of runtime/, and it refuses a command line
that names a path in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtime"


def _in_runtime_dir(path: Path) -> bool:
    resolved = path.resolve()  # through the .ten/app/... symlink back to the checkout
    return resolved == RUNTIME_DIR or RUNTIME_DIR in resolved.parents


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Runs before pytest loads the conftest.py files of the paths given.
    base = early_config.invocation_params.dir
    for arg in early_config.known_args_namespace.file_or_dir:
        if _in_runtime_dir(base / arg.split("::", 1)[0]):
            raise pytest.UsageError(
                f"{arg}: runtime/ is the pure-Python stand-in and its own tests; "
                "they do not run on the native ten_runtime"
            )


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    return True if _in_runtime_dir(collection_path) else None
