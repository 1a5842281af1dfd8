"""The addon manager's native side: registered addons and resolution by name (§3.3).

Resolution order: already registered -> a pending ``_AddonManager._registry``
entry -> import ``ten_packages.extension.<name>`` -> import ``<name>`` -> fail.
An import that fails *inside* the package (a bug or a missing dependency) is
reported with its traceback instead of "not found".
"""

from __future__ import annotations

import importlib
import threading
import traceback
from dataclasses import dataclass
from typing import Any


class AddonNotFound(LookupError):
    pass


@dataclass
class AddonEntry:
    name: str
    addon: Any
    base_dir: str | None


_registered: dict[str, AddonEntry] = {}
_lock = threading.RLock()


def register_native(name: str, base_dir: str | None, addon: Any) -> bool:
    """Bind an Addon instance to ``name``; False if the name is already registered."""
    with _lock:
        if name in _registered:
            return False
        _registered[name] = AddonEntry(name, addon, base_dir)
        return True


def registered(name: str) -> AddonEntry | None:
    with _lock:
        return _registered.get(name)


def unregister_all() -> None:
    """Forget every registered addon (for the stand-in's own tests)."""
    with _lock:
        _registered.clear()


def _missing_module(exc: ModuleNotFoundError, module: str) -> bool:
    """True if the error says ``module`` (or one of its parents) does not exist."""
    missing = exc.name or ""
    return missing == module or module.startswith(missing + ".")


def resolve_addon(name: str) -> AddonEntry:
    from ..addon_manager import _AddonManager

    with _lock:
        entry = _registered.get(name)
        if entry is not None:
            return entry
        tried: list[str] = []
        if name not in _AddonManager._registry:
            for module in (f"ten_packages.extension.{name}", name):
                try:
                    importlib.import_module(module)
                except ModuleNotFoundError as exc:
                    if _missing_module(exc, module):
                        tried.append(module)
                        continue
                    raise AddonNotFound(
                        f"Importing '{module}' for addon '{name}' failed:\n{traceback.format_exc()}"
                    ) from exc
                except Exception as exc:
                    raise AddonNotFound(
                        f"Importing '{module}' for addon '{name}' failed:\n{traceback.format_exc()}"
                    ) from exc
                if name in _AddonManager._registry or name in _registered:
                    break
                tried.append(f"{module} (imported, but it registers no addon '{name}')")
        if name not in _registered and name in _AddonManager._registry:
            _AddonManager._register_addon(name, None)
        entry = _registered.get(name)
        if entry is None:
            raise AddonNotFound(
                f"Addon '{name}' is not found. Tried: {'; '.join(tried) or 'the registry'}. "
                "The addon name must equal the decorator argument, the manifest name and the "
                "graph node's 'addon', and the package's __init__.py must import the module "
                "that applies @register_addon_as_extension."
            )
        return entry
