from ten_runtime import Addon, TenEnv, register_addon_as_extension

from .extension import AudioFileSource


@register_addon_as_extension("audio_file_source")
class AudioFileSourceAddon(Addon):
    def on_create_instance(self, ten_env: TenEnv, name: str, context: object) -> None:
        ten_env.on_create_instance_done(AudioFileSource(name), context)
