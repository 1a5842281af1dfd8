from ten_runtime import Addon, TenEnv, register_addon_as_extension

from .extension import TranscriptPrinter


@register_addon_as_extension("transcript_printer")
class TranscriptPrinterAddon(Addon):
    def on_create_instance(self, ten_env: TenEnv, name: str, context: object) -> None:
        ten_env.on_create_instance_done(TranscriptPrinter(name), context)
