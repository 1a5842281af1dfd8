"""``Addon`` (§3.2): the factory the runtime asks for extension instances."""

from __future__ import annotations

from typing import Any

from .ten_env import TenEnv


class Addon:
    def on_create_instance(self, ten_env: TenEnv, name: str, context: Any) -> None:
        """Override: call ``ten_env.on_create_instance_done(MyExtension(name), context)``."""
        raise NotImplementedError(
            f"{type(self).__name__}.on_create_instance is not implemented; it must call "
            "ten_env.on_create_instance_done(instance, context)"
        )
