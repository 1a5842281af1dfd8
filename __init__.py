# The TEN runtime imports `ten_packages.extension.xai_asr_python`; importing the
# addon module applies the decorator that registers the addon by name.
from . import addon  # noqa: F401
