from __future__ import annotations

from ten_runtime import Addon, TenEnv, register_addon_as_extension

from .extension import NullASRExtension


@register_addon_as_extension("bench_null_asr")
class NullASRExtensionAddon(Addon):
    def on_create_instance(self, ten_env: TenEnv, name: str, context: object) -> None:
        ten_env.on_create_instance_done(NullASRExtension(name), context)
