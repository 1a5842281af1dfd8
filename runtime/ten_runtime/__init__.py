"""Pure-Python stand-in for TEN Framework's ``ten_runtime`` Python package.

Used only where the native runtime cannot be installed.  It exposes exactly
the native package surface (see ``__all__``); anything extra lives under
``ten_runtime.standin`` (graph runner, CLI) and ``ten_runtime._core``.
"""

from .addon import Addon
from .addon_manager import _AddonManager, register_addon_as_extension
from .app import App
from .async_extension import AsyncExtension
from .async_ten_env import AsyncTenEnv
from .async_test import AsyncExtensionTester, AsyncTenEnvTester
from .audio_frame import AudioFrame, AudioFrameDataFmt
from .cmd import Cmd
from .cmd_result import CmdResult, StatusCode
from .data import Data
from .error import TenError, TenErrorCode
from .extension import Extension
from .loc import Loc
from .log_level import LogLevel
from .log_option import DefaultLogOption, LogOption
from .send_options import SendOptions
from .start_graph_cmd import StartGraphCmd
from .stop_graph_cmd import StopGraphCmd
from .ten_env import TenEnv
from .test import ExtensionTester, TenEnvTester
from .trigger_life_cycle_cmd import TriggerLifeCycleCmd
from .value import Value, ValueType
from .video_frame import PixelFmt, VideoFrame

__all__ = [
    "Addon",
    "App",
    "AsyncExtension",
    "AsyncExtensionTester",
    "AsyncTenEnv",
    "AsyncTenEnvTester",
    "AudioFrame",
    "AudioFrameDataFmt",
    "Cmd",
    "CmdResult",
    "Data",
    "DefaultLogOption",
    "Extension",
    "ExtensionTester",
    "Loc",
    "LogLevel",
    "LogOption",
    "PixelFmt",
    "SendOptions",
    "StartGraphCmd",
    "StatusCode",
    "StopGraphCmd",
    "TenEnv",
    "TenEnvTester",
    "TenError",
    "TenErrorCode",
    "TriggerLifeCycleCmd",
    "Value",
    "ValueType",
    "VideoFrame",
    "_AddonManager",
    "register_addon_as_extension",
]
