"""``register_addon_as_extension`` and ``_AddonManager`` (§3.1)."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from glob import glob
from typing import Any

from ._core import addons as _native
from .addon import Addon


class _AddonManager:
    # addon name -> handler that instantiates and registers the addon.  A
    # second import under the same name overwrites the entry (last wins).
    _registry: dict[str, Callable[[object], None]] = {}

    @classmethod
    def load_all_addons(cls) -> None:
        """Import every extension package of the app found above this file."""
        base_dir = cls._find_app_base_dir()
        manifest_path = os.path.join(base_dir, "manifest.json")
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        names = [
            d.get("name") for d in manifest.get("dependencies", []) if d.get("type") == "extension"
        ]
        for module in glob(os.path.join(base_dir, "ten_packages/extension/*")):
            module_name = os.path.basename(module)
            if os.path.isdir(module) and module_name in names:
                try:
                    importlib.import_module(f"ten_packages.extension.{module_name}")
                    print(f"Imported module: {module_name}")
                except ImportError as e:
                    print(f"Error importing module {module_name}: {e}")

    @classmethod
    def register_all_addons(cls, register_ctx: object) -> None:
        for name in list(cls._registry.keys()):
            handler = cls._registry.get(name)
            if handler:
                try:
                    handler(register_ctx)
                    print(f"Successfully registered addon '{name}'")
                except Exception as e:
                    print(f"Error during registration of addon '{name}': {e}")
        cls._registry.clear()

    @classmethod
    def _register_addon(cls, addon_name: str, register_ctx: object) -> None:
        handler = cls._registry.get(addon_name)
        if handler:
            try:
                handler(register_ctx)
                print(f"Successfully registered addon '{addon_name}'")
            except Exception as e:
                print(f"Error during registration of addon '{addon_name}': {e}")
        else:
            print(f"No register handler found for addon '{addon_name}'")

    @staticmethod
    def _set_register_handler(addon_name: str, register_handler: Callable[[object], None]) -> None:
        _AddonManager._registry[addon_name] = register_handler

    @staticmethod
    def _find_app_base_dir() -> str:
        current_dir = os.path.dirname(os.path.abspath(__file__))
        while current_dir != os.path.dirname(current_dir):
            manifest_path = os.path.join(current_dir, "manifest.json")
            if os.path.isfile(manifest_path):
                try:
                    with open(manifest_path, encoding="utf-8") as f:
                        if json.load(f).get("type") == "app":
                            return current_dir
                except ValueError:
                    pass
            current_dir = os.path.dirname(current_dir)
        raise FileNotFoundError("App base directory with a valid manifest.json not found.")


def register_addon_as_extension(
    name: str, base_dir: str | None = None
) -> Callable[[type[Addon]], type[Addon]]:
    def decorator(cls: type[Addon]) -> type[Addon]:
        if base_dir is None:
            try:
                # The directory of the file applying the decorator (addon.py).
                resolved: str | None = os.path.dirname(
                    os.path.abspath(sys._getframe(1).f_code.co_filename)
                )
            except (AttributeError, ValueError):
                resolved = None
        else:
            # Quirk Q14: the *dirname* of the argument (pass a file such as __file__).
            resolved = os.path.dirname(os.path.abspath(base_dir))

        def register_handler(register_ctx: Any) -> None:
            instance = cls()
            if not _native.register_native(name, resolved, instance):
                print(f"Addon '{name}' is already registered; skipping.")

        _AddonManager._set_register_handler(name, register_handler)
        return cls

    return decorator
