from ten_runtime import Addon, TenEnv, register_addon_as_extension

from .extension import XAIASRExtension


@register_addon_as_extension("xai_asr_python")
class XAIASRExtensionAddon(Addon):
    def on_create_instance(self, ten_env: TenEnv, name: str, context: object) -> None:
        ten_env.log_info(f"create instance {name}")
        ten_env.on_create_instance_done(XAIASRExtension(name), context)
